"""cs_init.torch: the differentiable loss, the regularizer, and decorrelate_ against the
command's pipeline."""

import os
import signal
import threading
import time
import warnings

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

import cs_init  # noqa: E402
from cs_init.torch import (  # noqa: E402
    conv_similarity,
    conv_similarity_torch,
    conv_weight,
    decorrelate_,
    regularizer,
)

from conftest import shared_checkpoint  # noqa: E402
from literal import literal  # noqa: E402
from models import from_state_dict, resnet18  # noqa: E402

SHAPES = [
    (4, 3, 5),  # conv1d
    (3, 2, 3, 3),  # conv2d
    (4, 2, 2, 3),  # non-square
    (5, 1, 3, 3),  # depthwise / one channel
    (3, 2, 2, 2, 3),  # conv3d
    (4, 3, 1, 1),  # pointwise
]


def bits(t):
    return t.detach().cpu().contiguous().reshape(-1).view(torch.uint8)


def snapshot(model):
    """Every parameter's and buffer's bytes, and every requires_grad flag."""
    state = {k: bits(v).clone() for k, v in model.state_dict().items()}
    flags = {k: p.requires_grad for k, p in model.named_parameters()}
    return state, flags


def same_snapshot(a, b):
    return a[1] == b[1] and a[0].keys() == b[0].keys() and all(torch.equal(a[0][k], b[0][k]) for k in a[0])


@pytest.mark.parametrize("variant", cs_init.VARIANTS)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_value_and_gradient_equal_autograd_of_equation_10(variant, shape):
    w = torch.randn(shape, dtype=torch.float64, generator=torch.Generator().manual_seed(len(shape)))
    a = w.clone().requires_grad_()
    expected = literal(a, variant)
    expected.backward()
    for f in (conv_similarity, conv_similarity_torch):
        b = w.clone().requires_grad_()
        got = f(b, variant)
        assert got.dtype == torch.float64 and got.dim() == 0
        assert got.item() == pytest.approx(expected.item(), rel=1e-12), f.__name__
        got.backward()
        torch.testing.assert_close(b.grad, a.grad, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("variant", cs_init.VARIANTS)
def test_torch_formulation_equals_the_rust_one_in_f32(variant):
    g = torch.Generator().manual_seed(5)
    for shape in [(64, 32, 3, 3), (16, 8, 7), (8, 4, 3, 3, 3), (32, 1, 5, 5)]:
        w = torch.randn(shape, generator=g) * 0.1
        a, b = w.clone().requires_grad_(), w.clone().requires_grad_()
        rust, torch_ = conv_similarity(a, variant), conv_similarity_torch(b, variant)
        assert rust.item() == pytest.approx(torch_.item(), rel=2e-5)
        rust.backward()
        torch_.backward()
        torch.testing.assert_close(a.grad, b.grad, rtol=2e-4, atol=1e-7)


def test_groups_and_transposed_convs_in_the_regularizer():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(4, 6, 3, groups=2),
        nn.ConvTranspose2d(6, 8, 3, groups=2),
        nn.Conv1d(3, 5, 4),
        nn.ConvTranspose3d(2, 3, 2),
    ).double()
    expected = 0.0
    for m in model:
        w = m.weight.detach()
        if m.transposed:
            # Filter j of group g: the weight's [g-th block of inputs, j] slice.
            g, in_g, out_g = m.groups, w.shape[0] // m.groups, w.shape[1]
            w = torch.stack([w[gi * in_g:(gi + 1) * in_g, j] for gi in range(g) for j in range(out_g)])
        assert torch.equal(conv_weight(m).detach(), w)
        expected += literal(w).item()
    reg = regularizer(model)
    assert reg.item() == pytest.approx(expected, rel=1e-12)
    reg.backward()
    assert all(m.weight.grad is not None for m in model)


def test_a_training_step_with_the_regularizer_lowers_l_cs():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 16, 3), nn.ReLU(), nn.Conv2d(16, 16, 3), nn.Flatten(), nn.LazyLinear(10))
    x, y = torch.randn(8, 3, 12, 12), torch.randint(0, 10, (8,))
    model(x)
    opt = torch.optim.SGD(model.parameters(), lr=1e-2)
    before = regularizer(model).item()
    # The paper's Algorithm 2: the task loss plus lambda times L_CS, a few steps.
    for _ in range(5):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y) + 1e-1 * regularizer(model)
        loss.backward()
        opt.step()
    assert regularizer(model).item() < before


def test_half_precision_weights():
    w = torch.randn(8, 4, 3, 3, generator=torch.Generator().manual_seed(1))
    for dtype in (torch.bfloat16, torch.float16):
        a = w.to(dtype).requires_grad_()
        loss = conv_similarity(a)
        loss.backward()
        assert loss.dtype == dtype and a.grad.dtype == dtype
        ref = cs_init.conv_similarity(w.to(dtype).float().numpy())
        assert loss.float().item() == pytest.approx(ref, rel=1e-2)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_formulation_equals_the_cpu_one():
    w = torch.randn(32, 16, 3, 3, dtype=torch.float64)
    for variant in cs_init.VARIANTS:
        a, b = w.clone().requires_grad_(), w.cuda().requires_grad_()
        ca, cb = conv_similarity(a, variant), conv_similarity(b, variant)
        assert cb.item() == pytest.approx(ca.item(), rel=1e-12)
        ca.backward()
        cb.backward()
        torch.testing.assert_close(b.grad.cpu(), a.grad, rtol=1e-9, atol=1e-12)


# --- decorrelate_ against the command's pipeline ------------------------------------------------

TIMING = {"metrics_seconds", "probe_seconds", "seconds", "optimize_seconds", "total_seconds", "peak_memory_bytes"}


def figures(report):
    layers = [{k: v for k, v in l.items() if k not in TIMING} for l in report["layers"]]
    totals = {k: v for k, v in report["totals"].items() if k not in TIMING}
    settings = {k: v for k, v in report["settings"].items()}
    return layers, totals, settings


def compare_with_the_pipeline(model, tmp_path, **settings):
    from safetensors.torch import load_file, save_file

    path = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    report = decorrelate_(model, progress=False, **settings)
    command = cs_init.run(path, tmp_path / "out.safetensors", progress=False, **settings)
    out = load_file(str(tmp_path / "out.safetensors"))
    state = model.state_dict()
    assert state.keys() == out.keys()
    for key, value in state.items():
        assert torch.equal(bits(value), bits(out[key])), key
    assert figures(report) == figures(command)
    return report


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_resnet18_bit_identical_to_the_command(tmp_path, dtype):
    model = resnet18().to(dtype)
    before = model.state_dict()["layer1.0.conv1.weight"].clone()
    report = compare_with_the_pipeline(model, tmp_path)
    assert report.totals["optimized"] == 20 and report.totals["diverged"] == 0
    assert report.totals["loss_after"] < report.totals["loss_before"]
    assert report.totals["feature_cosine_before"] is not None
    assert not torch.equal(before, model.state_dict()["layer1.0.conv1.weight"])
    assert model.conv1.weight.dtype == dtype and model.conv1.weight.requires_grad


def test_trained_resnet20_bit_identical_to_the_command(tmp_path):
    from safetensors.torch import load_file

    model = from_state_dict(load_file(str(shared_checkpoint("resnet20-cifar10.safetensors"))))
    report = compare_with_the_pipeline(model, tmp_path, iters=50, skip_pointwise=True, seed=3)
    assert report.totals["optimized"] == 19


def test_other_parameters_buffers_flags_and_hooks_are_untouched():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.Conv2d(8, 8, 3, bias=False), nn.Linear(4, 4))
    model[0].bias.requires_grad_(False)
    calls = []
    model[0].register_forward_hook(lambda *a: calls.append(1))
    before = snapshot(model)
    decorrelate_(model, iters=5, progress=False)
    after = snapshot(model)
    changed = {k for k in before[0] if not torch.equal(before[0][k], after[0][k])}
    assert changed == {"0.weight", "2.weight"}
    assert before[1] == after[1]
    model[0](torch.randn(1, 3, 8, 8))
    assert calls == [1]


def test_transposed_convs_use_their_filter_axis():
    torch.manual_seed(1)
    t = nn.ConvTranspose2d(6, 8, 3, groups=2)
    c = nn.Conv2d(6, 8, 3, groups=2)
    with torch.no_grad():
        c.weight.copy_(conv_weight(t))
    before = regularizer(t).item()
    rt = decorrelate_(nn.Sequential(t), iters=20, probe=False, progress=False)
    rc = decorrelate_(nn.Sequential(c), iters=20, probe=False, progress=False)
    assert torch.equal(bits(conv_weight(t)), bits(c.weight))
    assert regularizer(t).item() < before
    assert rt.layers[0]["shape"] == [8, 3, 3, 3] and rt.totals["loss_after"] == rc.totals["loss_after"]


def test_channels_last_and_non_contiguous_weights():
    torch.manual_seed(2)
    reference = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Conv2d(8, 8, 3))
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Conv2d(8, 8, 3))
    model.load_state_dict(reference.state_dict())
    model[0].to(memory_format=torch.channels_last)
    # A non-contiguous weight: a transposed view of a parameter's storage.
    model[1].weight = nn.Parameter(model[1].weight.detach().transpose(0, 1).contiguous().transpose(0, 1))
    assert not model[1].weight.is_contiguous()
    assert model[0].weight.is_contiguous(memory_format=torch.channels_last)
    decorrelate_(reference, iters=10, progress=False)
    decorrelate_(model, iters=10, progress=False)
    for a, b in zip(reference, model):
        assert torch.equal(bits(a.weight), bits(b.weight))
    assert model[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert not model[1].weight.is_contiguous()


class Stop(Exception):
    pass


@pytest.mark.parametrize("exception", [Stop, KeyboardInterrupt])
def test_all_or_nothing_when_a_callback_raises(exception):
    model = resnet18()
    before = snapshot(model)
    finished = []

    def progress(event):
        if event["event"] == "layer_finished":
            finished.append(event["name"])
            if len(finished) == 5:
                raise exception

    with pytest.raises(exception):
        decorrelate_(model, iters=5, probe=False, progress=progress)
    assert len(finished) == 5
    assert same_snapshot(before, snapshot(model))


def test_ctrl_c_stops_within_a_layer_and_changes_nothing():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(64, 256, 5), nn.Conv2d(256, 256, 5))
    before = snapshot(model)
    timer = threading.Timer(0.5, lambda: os.kill(os.getpid(), signal.SIGINT))
    start = time.monotonic()
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        decorrelate_(model, iters=1_000_000, probe=False, progress=False)
    assert time.monotonic() - start < 5
    assert same_snapshot(before, snapshot(model))


def test_a_diverged_layer_keeps_its_weights_as_the_command_does():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Conv2d(8, 8, 3))
    before = snapshot(model)
    with pytest.warns(RuntimeWarning, match="diverged"):
        report = decorrelate_(model, iters=50, lr=1e30, optimizer="sgd", probe=False, progress=False)
    assert report.totals["diverged"] == 2 and report.diverged == ["0.weight", "1.weight"]
    assert same_snapshot(before, snapshot(model))


def test_bad_input_raises_clear_exceptions():
    with pytest.raises(TypeError, match="torch.nn.Module"):
        decorrelate_(torch.randn(3, 3, 3, 3))
    with pytest.raises(cs_init.NoConvLayersError, match="no conv"):
        decorrelate_(nn.Sequential(nn.Linear(3, 3)))
    with pytest.raises(cs_init.ModelError, match="lazy"):
        decorrelate_(nn.Sequential(nn.LazyConv2d(4, 3)))
    with torch.device("meta"):
        meta = nn.Sequential(nn.Conv2d(3, 4, 3))
    with pytest.raises(cs_init.ModelError, match="meta"):
        decorrelate_(meta)
    ints = nn.Conv2d(3, 4, 3)
    ints.weight = nn.Parameter(torch.ones(4, 3, 3, 3, dtype=torch.int32), requires_grad=False)
    with pytest.raises(cs_init.WeightTypeError) as e:
        decorrelate_(ints)
    assert isinstance(e.value, TypeError) and "torch.int32" in str(e.value)
    model = nn.Sequential(nn.Conv2d(3, 4, 3))
    with pytest.raises(TypeError, match="unexpected keyword argument 'iterations'"):
        decorrelate_(model, iterations=3)
    with pytest.raises(TypeError, match="unexpected keyword argument 'layout'"):
        decorrelate_(model, layout="hwio")
    with pytest.raises(cs_init.SettingsError) as e:
        decorrelate_(model, lr=-1)
    assert str(e.value) == "lr: must be a finite number of at least 0, got -1"
    with pytest.raises(cs_init.SettingsError, match="unknown variant"):
        decorrelate_(model, variant="diagonal")
    with pytest.raises(cs_init.SettingsError, match="probe_batch: must be at least 1"):
        decorrelate_(model, probe_batch=0)


def test_parametrized_convs_are_refused_by_name_unless_excluded():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Conv2d(8, 8, 3))
    nn.utils.parametrizations.weight_norm(model[1])
    before = snapshot(model)
    with pytest.raises(cs_init.ModelError, match="conv '1' has a parametrized"):
        decorrelate_(model, iters=3, progress=False)
    assert same_snapshot(before, snapshot(model))
    report = decorrelate_(model, iters=3, progress=False, exclude=[r"^1\."])
    assert [l["name"] for l in report.layers] == ["0.weight"]
    legacy = nn.Sequential(nn.Conv2d(3, 8, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        nn.utils.weight_norm(legacy[0])
    with pytest.raises(cs_init.ModelError, match="weight-normed"):
        decorrelate_(legacy, iters=3, progress=False)


def test_progress_callback_events():
    events = []
    decorrelate_(nn.Sequential(nn.Conv2d(3, 8, 3), nn.Conv2d(8, 1, 3)), iters=3, progress=events.append)
    kinds = [e["event"] for e in events]
    assert kinds[0] == "layer_started" and kinds.count("layer_finished") == 2
    assert events[0]["count"] == 1 and events[0]["iterations"] == 3
    skipped = [e["layer"] for e in events if e["event"] == "layer_finished" and e["layer"]["status"] == "skipped"]
    assert skipped[0]["name"] == "1.weight" and "single filter" in skipped[0]["reason"]


def test_threads_and_a_tqdm_bar_give_the_same_weights(capsys):
    pytest.importorskip("tqdm")
    torch.manual_seed(3)
    a = nn.Sequential(nn.Conv2d(3, 16, 3), nn.Conv2d(16, 16, 3))
    b = nn.Sequential(nn.Conv2d(3, 16, 3), nn.Conv2d(16, 16, 3))
    b.load_state_dict(a.state_dict())
    decorrelate_(a, iters=20, threads=1, progress=False)
    decorrelate_(b, iters=20, progress=True)
    for x, y in zip(a, b):
        assert torch.equal(bits(x.weight), bits(y.weight))
    assert "2/2" in capsys.readouterr().err
    with pytest.raises(ValueError, match="threads"):
        decorrelate_(a, threads=0)
