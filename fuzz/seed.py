"""Writes the seed corpora of the fuzz targets into fuzz/corpus/<target>/ (not committed).

    python3 fuzz/seed.py

Seeds come from real files: the shared checkpoints of ../shared/data/checkpoints (used when
present; never copied into the repository, only into the ignored corpus directory), the small
PyTorch files of tests/fixtures/pytorch (written by torch.save), and small files built here in
the layouts the tests use. Large real files are cut down to what the targets' -max_len (64 KiB)
lets libFuzzer read: a safetensors file becomes a miniature with the same names, dtypes, ranks
and metadata but every dimension at most 2; a legacy PyTorch file keeps its pickles and the
start of its storages. Only the Python standard library is used.
"""

import hashlib
import io
import json
import os
import pickletools
import struct
import zipfile

FUZZ = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(FUZZ)
SHARED = os.path.join(REPO, "..", "shared", "data", "checkpoints")
FIXTURES = os.path.join(REPO, "tests", "fixtures", "pytorch")
MAX_LEN = 64 * 1024

DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2,
               "I8": 1, "U8": 1, "BOOL": 1, "U16": 2, "U32": 4, "U64": 8}


def write(target, data, name=None):
    if isinstance(data, str):
        data = data.encode()
    data = data[:MAX_LEN]
    directory = os.path.join(FUZZ, "corpus", target)
    os.makedirs(directory, exist_ok=True)
    name = name or hashlib.sha1(data).hexdigest()
    with open(os.path.join(directory, name), "wb") as f:
        f.write(data)


def shared(name):
    path = os.path.join(SHARED, name)
    if os.path.isfile(path):
        with open(path, "rb") as f:
            return f.read()
    print(f"note: {path} is absent; seeding without it")
    return None


def fixtures():
    if not os.path.isdir(FIXTURES):
        return []
    out = []
    for name in sorted(os.listdir(FIXTURES)):
        if name.endswith((".pth", ".ckpt")):
            with open(os.path.join(FIXTURES, name), "rb") as f:
                out.append((name, f.read()))
    return out


# --- safetensors -------------------------------------------------------------------------------

def safetensors(tensors, metadata=None):
    """tensors: [(name, dtype, shape, bytes)] in data order."""
    header, offset = {}, 0
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, dtype, shape, data in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(t[3] for t in tensors)


def parse_safetensors(data):
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    metadata = header.pop("__metadata__", None)
    body = data[8 + n:]
    entries = sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0])
    return metadata, [(k, v["dtype"], v["shape"], body[v["data_offsets"][0]:v["data_offsets"][1]])
                      for k, v in entries]


def miniature(data):
    """Same names, dtypes, ranks and metadata, every dimension at most 2."""
    metadata, tensors = parse_safetensors(data)
    small = []
    for name, dtype, shape, body in tensors:
        shape = [min(d, 2) for d in shape]
        n = 1
        for d in shape:
            n *= d
        small.append((name, dtype, shape, body[:n * DTYPE_BYTES[dtype]]))
    return metadata, small


def small_network():
    f32 = lambda n, start=0.0: b"".join(struct.pack("<f", start + i) for i in range(n))
    return [
        ("conv1.weight", "F32", [4, 3, 3, 3], f32(108)),
        ("bn1.weight", "F32", [4], f32(4, 1.0)),
        ("bn1.num_batches_tracked", "I64", [], struct.pack("<q", 0)),
        ("dw.weight", "F16", [4, 1, 3, 3], b"\x00\x3c" * 36),
        ("proj.weight", "BF16", [8, 4, 1, 1], b"\x80\x3f" * 32),
        ("fc.weight", "F64", [2, 8], struct.pack("<16d", *range(16))),
        ("empty", "F32", [0, 3], b""),
    ]


def seed_safetensors():
    write("safetensors", safetensors(small_network(), {"format": "pt"}))
    write("safetensors", safetensors(small_network()[:2]))
    write("safetensors", safetensors([]))
    for name in ["resnet20-cifar10.safetensors", "tinygrad-mnist-cnn.safetensors"]:
        data = shared(name)
        if data is None:
            continue
        metadata, small = miniature(data)
        write("safetensors", safetensors(small, metadata))
        # The real header with the start of the real data: the header paths at full size.
        (n,) = struct.unpack("<Q", data[:8])
        write("safetensors", data[:8 + n + 1024])


# --- sharded -----------------------------------------------------------------------------------

def frame_sharded(index_text, shards):
    out = struct.pack("<H", len(index_text)) + index_text
    for shard in shards:
        out += struct.pack("<I", len(shard)) + shard
    return out


def sharded(tensors, metadata, parts):
    """Splits tensors into `parts` shards named as Hugging Face names them."""
    names = [f"model-{i + 1:05}-of-{parts:05}.safetensors" for i in range(parts)]
    groups = [tensors[i::parts] for i in range(parts)]
    weight_map = {t[0]: names[i] for i, group in enumerate(groups) for t in group}
    total = sum(len(t[3]) for t in tensors)
    index = json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2)
    shards = [safetensors(group, metadata) for group in groups]
    return frame_sharded(index.encode(), shards)


def seed_sharded():
    write("sharded", sharded(small_network(), None, 2))
    write("sharded", sharded(small_network(), {"format": "pt"}, 3))
    write("sharded", frame_sharded(b'{"weight_map": {}}', []))
    write("sharded", frame_sharded(b'{"metadata": null, "weight_map": {"a": "../x"}}', []))
    for name in ["resnet20-cifar10.safetensors", "tinygrad-mnist-cnn.safetensors"]:
        data = shared(name)
        if data is not None:
            metadata, small = miniature(data)
            write("sharded", sharded(small, metadata, 2))


# --- PyTorch -----------------------------------------------------------------------------------

def pickle_end(data, start):
    """Where the pickle starting at `start` ends (just after its STOP)."""
    end = start
    for op, _, pos in pickletools.genops(io.BytesIO(data[start:])):
        end = start + pos + 1
        if op.name == "STOP":
            break
    return end


def after_legacy_header(data):
    """A legacy file without its first three pickles: the pickle target's input."""
    pos = 0
    for _ in range(3):
        pos = pickle_end(data, pos)
    return data[pos:]


def deflated(zip_bytes):
    """The same archive with every entry deflated."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(zip_bytes)) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info))
    return out.getvalue()


def seed_pytorch():
    for name, data in fixtures():
        write("pytorch", data, name)
        if data.startswith(b"PK\x03\x04"):
            write("pytorch", deflated(data), "deflated-" + name)
            with zipfile.ZipFile(io.BytesIO(data)) as z:
                pkl = next(n for n in z.namelist() if n.endswith("/data.pkl"))
                write("pickle", z.read(pkl), "data.pkl-" + name)
        else:
            write("pickle", after_legacy_header(data), name)
    for name in ["resnet20-cifar10-12fca82f.th", "resnet56-cifar10-4bfd9763.th"]:
        data = shared(name)
        if data is not None:
            write("pytorch", data, name)
            write("pickle", after_legacy_header(data), name)


# --- text targets ------------------------------------------------------------------------------

def seed_text():
    commit = "0123456789abcdef0123456789abcdef01234567"
    for s in ["hf://timm/resnet18.a1_in1k", "hf://o/n@v1.0/sub/model.safetensors",
              f"hf://owner/net@main\n{commit}\n", f"hf://owner/net@{commit}",
              "hf://owner/sharded/model.safetensors.index.json\n" + commit,
              "hf://o/n@main\n../../../etc", "hf://o/n/../x", "model.safetensors"]:
        write("hub", s)
    for s in ["5GB", "500MiB", "1.5kb", "123", " 2 TB ", "16x16", "32X8", "7", "auto", "cpu",
              "cuda", "cuda:1", "metal", "0x3"]:
        write("cli_numbers", s)
    full = {
        "iters": 100, "lr": 0.01, "optimizer": "sgd", "momentum": 0.9, "variant": "paper",
        "keep_norm": True, "include": ["conv"], "exclude": ["^fc", "downsample\\.0"],
        "skip_pointwise": False, "layout": "hwio", "key": "state_dict", "strip_prefix": "model.",
        "seed": 7, "probe": True, "probe_batch": 4, "probe_size": "32x32",
        "probe_images": "images/", "probe_padding": "valid", "max_shard_size": "500MiB",
    }
    for s in ["{}", json.dumps(full), '{"lr": -1}', '{"momentum": 0.9}', '{"include": ["("]}',
              '{"probe": false, "probe_batch": 0}', '{"probe_size": "0x3"}',
              '{"max_shard_size": "5 parsecs"}', '{"variant": "diagonal"}', '{"iters": 1e3}']:
        write("settings", s)


def main():
    seed_safetensors()
    seed_sharded()
    seed_pytorch()
    seed_text()
    for target in sorted(os.listdir(os.path.join(FUZZ, "corpus"))):
        files = os.listdir(os.path.join(FUZZ, "corpus", target))
        size = sum(os.path.getsize(os.path.join(FUZZ, "corpus", target, f)) for f in files)
        print(f"corpus/{target}: {len(files)} files, {size} bytes")


if __name__ == "__main__":
    main()
