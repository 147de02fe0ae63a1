"""The numpy core: no torch needed."""

import json

import numpy as np
import pytest

import cs_init


def brute(w, variant="paper"):
    """Equation 10 in numpy for 1-D kernels: every pair's full cross-correlation."""
    s, c, _ = w.shape
    total = 0.0
    adjacent = variant.startswith("adjacent")
    same = "same-channel" in variant
    for i in range(s):
        for j in range(i + 1, s):
            if adjacent and j != i + 1:
                continue
            for c1 in range(c):
                for c2 in range(c):
                    if same and c1 != c2:
                        continue
                    total += float((np.correlate(w[j, c2], w[i, c1], mode="full") ** 2).sum())
    return total


@pytest.mark.parametrize("variant", cs_init.VARIANTS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_value_and_gradient_on_1d_kernels(variant, dtype):
    rng = np.random.default_rng(1)
    w = rng.standard_normal((5, 3, 4)).astype(dtype)
    expected = brute(w.astype(np.float64), variant)
    rtol = 1e-12 if dtype == np.float64 else 1e-5
    assert cs_init.conv_similarity(w, variant) == pytest.approx(expected, rel=rtol)
    loss, grad = cs_init.conv_similarity_grad(w, variant)
    assert loss == pytest.approx(expected, rel=rtol)
    assert grad.shape == w.shape and grad.dtype == w.dtype
    if dtype == np.float64:
        # Central differences of the exact loss.
        eps = 1e-6
        for index in [(0, 0, 0), (2, 1, 3), (4, 2, 1)]:
            plus, minus = w.copy(), w.copy()
            plus[index] += eps
            minus[index] -= eps
            numeric = (brute(plus, variant) - brute(minus, variant)) / (2 * eps)
            assert grad[index] == pytest.approx(numeric, rel=1e-5, abs=1e-6)


def test_hand_computed():
    # K0 = [1, 2], K1 = [3, 4]: K0 (*) K1 = [4, 11, 6], squares sum to 173 (src/similarity/literal.rs).
    w = np.array([[[1.0, 2.0]], [[3.0, 4.0]]])
    for variant in cs_init.VARIANTS:
        assert cs_init.conv_similarity(w, variant) == 173.0


def test_non_contiguous_and_underscore_variant():
    rng = np.random.default_rng(2)
    w = rng.standard_normal((3, 3, 4, 6))
    view = w.transpose(1, 0, 2, 3)  # not contiguous
    assert cs_init.conv_similarity(view, "same_channel") == pytest.approx(
        cs_init.conv_similarity(np.ascontiguousarray(view), "same-channel"), rel=1e-15
    )


def test_bad_arrays_and_variants():
    with pytest.raises(TypeError, match="float32 or float64"):
        cs_init.conv_similarity(np.ones((2, 2, 3), dtype=np.int64))
    with pytest.raises(ValueError, match="rank 3, 4 or 5"):
        cs_init.conv_similarity(np.ones((2, 3)))
    with pytest.raises(cs_init.SettingsError, match="unknown variant 'diagonal'"):
        cs_init.conv_similarity(np.ones((2, 2, 3)), "diagonal")
    with pytest.raises(ValueError, match="zero"):
        cs_init.conv_similarity(np.ones((2, 0, 3)))


def test_run_builtin_writes_checkpoint_and_report(tmp_path):
    out = tmp_path / "r18.safetensors"
    report = cs_init.run("resnet18", out, iters=3, probe=False, progress=False)
    assert report.checkpoint == out and out.exists()
    assert report.totals["optimized"] == 20 and report.totals["diverged"] == 0
    assert report.totals["loss_after"] < report.totals["loss_before"]
    on_disk = (tmp_path / "r18.report.json").read_text()
    assert report.to_json() == on_disk
    assert json.loads(on_disk)["settings"]["iterations"] == 3
    assert "<table>" in report._repr_html_() and "layer1.0.conv1.weight" in report._repr_html_()
    assert report.layers[0]["name"] == report["layers"][0]["name"]
    (path, size, sha256), = report.files
    assert path == out and size == out.stat().st_size and len(sha256) == 64


def test_run_refuses_bad_settings_with_the_command_lines_message(tmp_path):
    with pytest.raises(cs_init.SettingsError) as e:
        cs_init.run("resnet18", tmp_path / "x.safetensors", lr=-1)
    assert str(e.value) == "lr: must be a finite number of at least 0, got -1"
    assert e.value.field == "lr" and isinstance(e.value, ValueError)
    with pytest.raises(cs_init.SettingsError, match="momentum: applies to the sgd optimizer only"):
        cs_init.run("resnet18", tmp_path / "x.safetensors", momentum=0.9)
    with pytest.raises(cs_init.SettingsError, match="lr: must be a finite number of at least 0, got NaN"):
        cs_init.run("resnet18", tmp_path / "x.safetensors", lr=float("nan"))
    with pytest.raises(cs_init.SettingsError, match="include: '\\(' is not a valid regex"):
        cs_init.run("resnet18", tmp_path / "x.safetensors", include="(")
    with pytest.raises(cs_init.SettingsError, match="^iters: invalid value"):
        cs_init.run("resnet18", tmp_path / "x.safetensors", iters=-3)
    with pytest.raises(TypeError, match="unexpected keyword argument 'iterations'"):
        cs_init.run("resnet18", tmp_path / "x.safetensors", iterations=3)
    assert list(tmp_path.iterdir()) == []


def test_run_errors(tmp_path):
    with pytest.raises(cs_init.CheckpointError) as e:
        cs_init.run(tmp_path / "missing.safetensors", progress=False)
    assert isinstance(e.value, OSError)
    out = tmp_path / "a.safetensors"
    cs_init.run("resnet18", out, iters=0, probe=False, progress=False)
    with pytest.raises(cs_init.OutputError):
        cs_init.run("resnet18", out, iters=0, probe=False, progress=False)
    cs_init.run("resnet18", out, iters=0, probe=False, progress=False, force=True)


def test_a_callback_stops_the_run_and_nothing_is_written(tmp_path):
    events = []

    class Stop(Exception):
        pass

    def progress(event):
        events.append(event)
        if event["event"] == "layer_finished" and len([e for e in events if e["event"] == "layer_finished"]) == 3:
            raise Stop

    with pytest.raises(Stop):
        cs_init.run("resnet18", tmp_path / "x.safetensors", iters=2, probe=False, progress=progress)
    assert list(tmp_path.iterdir()) == []
    started = [e for e in events if e["event"] == "layer_started"]
    assert started[0]["position"] == 1 and started[0]["count"] == 20
    assert events[-1]["layer"]["status"] == "optimized"


def test_default_settings_are_the_command_lines():
    d = cs_init.default_settings()
    assert d["iters"] == 200 and d["lr"] == 1e-3 and d["optimizer"] == "adam"
    assert d["variant"] == "paper" and d["probe"] is True and d["seed"] == 0


def test_import_does_not_import_torch():
    import subprocess
    import sys

    code = "import cs_init, sys; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_run_on_a_real_pytorch_checkpoint(tmp_path):
    from conftest import shared_checkpoint

    th = shared_checkpoint("resnet20-cifar10-12fca82f.th")
    report = cs_init.run(th, tmp_path / "r20.safetensors", iters=5, probe=False, progress=False, threads=1)
    assert report.totals["optimized"] == 19 and report.totals["loss_after"] < report.totals["loss_before"]
    assert any("module." in note for note in report.input_notes)


def test_run_regenerates_a_committed_checkpoint_byte_for_byte(tmp_path):
    # checkpoints/README.md: cs-init builtin:cnn1 --seed 0 --iters 500 --lr 0.001
    from conftest import REPO

    committed = REPO / "checkpoints" / "cnn1.cs.safetensors"
    if not committed.exists():
        pytest.skip("the repository's checkpoints/ is absent")
    out = tmp_path / "cnn1.cs.safetensors"
    cs_init.run("builtin:cnn1", out, seed=0, iters=500, lr=0.001, progress=False)
    assert out.read_bytes() == committed.read_bytes()
