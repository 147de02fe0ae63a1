"""decorrelate_ against the command's pipeline, and the regularizer against PyTorch.

    python python/benches/bench.py [--models resnet18,resnet50,convnext_tiny] [--repeats 3]
                                   [--cli path/to/cs-init]

1. For each torchvision model (seed 0, f32): ``decorrelate_(model)`` and the command's pipeline
   on the same state dict saved with safetensors (``cs_init.run``, and the ``cs-init`` binary
   too with ``--cli``), alternating, ``--repeats`` times each, default settings. Prints the
   medians of the reports' ``optimize_seconds`` (the optimizer's time, summed over layers) and of
   the wall-clock time of each call.
2. The regularizer's forward+backward over ResNet-18's convs (``cs_init.torch.regularizer``)
   against the hand-written grouped-conv formulation (benches/pytorch_similarity.py's), medians
   of ``--repeats`` x 5 calls.

Prints one JSON object. docs/benchmarks.md has the figures and the machine.
"""

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time

import torch
import torch.nn.functional as F
import torchvision
from safetensors.torch import save_file

import cs_init
from cs_init.torch import conv_weight, decorrelate_, regularizer

CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


def grouped_conv_similarity(w):
    s, c, *k = w.shape
    planes = s * c
    r = CONV[len(k)](
        w.reshape(1, planes, *k), w.reshape(planes, 1, *k), padding=[d - 1 for d in k], groups=planes
    )
    r = r.reshape(s, c, -1).sum(1)
    t = r.sum(0)
    return 0.5 * ((t * t).sum() - (r * r).sum())


def model(name):
    torch.manual_seed(0)
    return getattr(torchvision.models, name)()


def pipeline(name, repeats, cli):
    rows = {"decorrelate_": [], "run": [], "cli": []}
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, f"{name}.safetensors")
        save_file({k: v.contiguous() for k, v in model(name).state_dict().items()}, path)
        for _ in range(repeats):
            m = model(name)
            start = time.perf_counter()
            report = decorrelate_(m, progress=False)
            rows["decorrelate_"].append((report.totals["optimize_seconds"], time.perf_counter() - start))
            start = time.perf_counter()
            report = cs_init.run(path, os.path.join(tmp, "out.safetensors"), force=True, progress=False)
            rows["run"].append((report.totals["optimize_seconds"], time.perf_counter() - start))
            if cli:
                start = time.perf_counter()
                subprocess.run(
                    [cli, path, "-o", os.path.join(tmp, "cli.safetensors"), "--force", "--quiet"], check=True
                )
                wall = time.perf_counter() - start
                with open(os.path.join(tmp, "cli.report.json")) as f:
                    rows["cli"].append((json.load(f)["totals"]["optimize_seconds"], wall))
    return {
        k: {
            "optimize_seconds": statistics.median(r[0] for r in v),
            "wall_seconds": statistics.median(r[1] for r in v),
            "runs": v,
        }
        for k, v in rows.items()
        if v
    }


def regularizer_bench(repeats):
    m = model("resnet18")
    convs = [mod for mod in m.modules() if isinstance(mod, torch.nn.Conv2d)]

    def ours():
        m.zero_grad(set_to_none=True)
        regularizer(m).backward()

    def reference():
        m.zero_grad(set_to_none=True)
        sum(grouped_conv_similarity(conv_weight(c)) for c in convs).backward()

    out = {}
    for label, f in (("cs_init.torch.regularizer", ours), ("grouped_conv", reference)):
        f()  # warm-up
        times = []
        for _ in range(repeats * 5):
            start = time.perf_counter()
            f()
            times.append(time.perf_counter() - start)
        out[label] = statistics.median(times)
    out["speedup"] = out["grouped_conv"] / out["cs_init.torch.regularizer"]
    return out


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", default="resnet18,resnet50,convnext_tiny")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cli", help="the cs-init binary, timed too")
    args = parser.parse_args()
    result = {"torch": torch.__version__, "threads": torch.get_num_threads(), "cs_init": cs_init.__version__}
    result["pipeline"] = {name: pipeline(name, args.repeats, args.cli) for name in args.models.split(",") if name}
    result["regularizer"] = regularizer_bench(args.repeats)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
