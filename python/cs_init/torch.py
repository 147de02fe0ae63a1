"""cs-init for PyTorch models (``pip install cs-init[torch]``).

- :func:`decorrelate_`: the command's per-layer work on every conv of a model, in place, all or
  nothing.
- :func:`conv_similarity` / :class:`ConvSimilarity`: L_CS of a weight as a differentiable scalar
  (the library's fused loss and gradient on CPU, an exact linear-time torch formulation on other
  devices); :func:`regularizer` sums it over a model's convs.

Tensors reach the library as numpy arrays and raw bytes; nothing links against libtorch.
"""

import re
import warnings
from functools import lru_cache

import torch
from torch import nn
from torch.nn.modules.conv import _ConvNd

from . import _native
from ._errors import ModelError, NoConvLayersError, WeightTypeError
from ._progress import Progress
from ._report import Report
from ._settings import check_threads, settings_json

__all__ = ["decorrelate_", "conv_similarity", "ConvSimilarity", "regularizer", "conv_weight"]

# The dtype names of a safetensors header, as safetensors.torch writes them.
_DTYPES = {
    torch.float64: "F64",
    torch.float32: "F32",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.int64: "I64",
    torch.int32: "I32",
    torch.int16: "I16",
    torch.int8: "I8",
    torch.uint8: "U8",
    torch.bool: "BOOL",
    torch.complex64: "C64",
}
for _name, _st in (("float8_e4m3fn", "F8_E4M3"), ("float8_e5m2", "F8_E5M2"), ("uint16", "U16"),
                   ("uint32", "U32"), ("uint64", "U64")):
    if hasattr(torch, _name):
        _DTYPES[getattr(torch, _name)] = _st
_FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


# --- the differentiable loss -------------------------------------------------------------------


def _variant(variant):
    if not isinstance(variant, str):
        raise TypeError(f"variant must be a str, got {type(variant).__name__}")
    variant = variant.replace("_", "-")
    if variant not in _native.variants():
        # The library's message, as a SettingsError.
        _native.check_settings('{"variant": "%s"}' % variant.replace('"', ""))
    return variant


@lru_cache(maxsize=64)
def _shift_table(kernel):
    """The ``[P*P, H]`` 0/1 matrix taking a Gram (or outer-product) matrix to its half-shift
    diagonal sums, and the half shifts' weights (1 for the zero shift, 2 otherwise), as lists:
    the library's ShiftTable."""
    k = (1,) * (3 - len(kernel)) + tuple(kernel)
    positions = k[0] * k[1] * k[2]
    full = (2 * k[0] - 1) * (2 * k[1] - 1) * (2 * k[2] - 1)
    half = (full + 1) // 2

    def coords(flat):
        return (flat // (k[1] * k[2]), (flat // k[2]) % k[1], flat % k[2])

    rows, cols = [], []
    for p in range(positions):
        a = coords(p)
        for q in range(p, positions):
            b = coords(q)
            index = 0
            for d in range(3):
                index = index * (2 * k[d] - 1) + (b[d] - a[d])
            rows.append(p * positions + q)
            cols.append(index)
    weights = [1.0] + [2.0] * (half - 1)
    return positions, half, rows, cols, weights


def conv_similarity_torch(weight, variant="paper"):
    """L_CS of ``weight`` (``[out, in/groups, k...]``) in plain torch ops, on any device and
    dtype: linear in the kernel pairs and exact (the library's portable formulation: per filter,
    the summed autocorrelation read off the Gram matrix of its channel planes)."""
    variant = _variant(variant)
    if weight.dim() not in (3, 4, 5):
        raise ValueError(f"a conv weight has rank 3, 4 or 5, got shape {tuple(weight.shape)}")
    s, c = weight.shape[0], weight.shape[1]
    positions, half, rows, cols, weights = _shift_table(tuple(weight.shape[2:]))
    diagonals = torch.zeros(positions * positions, half, dtype=weight.dtype, device=weight.device)
    diagonals[rows, cols] = 1
    shift_weights = torch.tensor(weights, dtype=weight.dtype, device=weight.device)
    if variant in ("same-channel", "adjacent-same-channel"):
        planes = weight.reshape(s * c, positions)
        outer = planes.unsqueeze(2) * planes.unsqueeze(1)
        r = (outer.reshape(s * c, positions * positions) @ diagonals).reshape(s, c, half)
    else:
        w = weight.reshape(s, c, positions)
        gram = w.transpose(1, 2) @ w
        r = gram.reshape(s, positions * positions) @ diagonals
    if variant.startswith("adjacent"):
        if s < 2:
            return r.sum() * 0
        return (r[:-1] * r[1:] * shift_weights).sum()
    total = r.sum(0)
    return ((total * total * shift_weights).sum() - (r * r * shift_weights).sum()) * 0.5


class ConvSimilarity(torch.autograd.Function):
    """L_CS of a CPU weight with the library's fused engine: the forward computes the loss (and
    the gradient, when the weight requires one), the backward scales that gradient. f16/bf16
    weights are computed in f32, the gradient returned in the weight's dtype."""

    @staticmethod
    def forward(ctx, weight, variant="paper"):
        variant = _variant(variant)
        w = weight.detach()
        if w.device.type != "cpu":
            raise ValueError("ConvSimilarity runs on CPU tensors; use conv_similarity()")
        if w.dtype not in (torch.float32, torch.float64):
            w = w.float()
        need = ctx.needs_input_grad[0]
        loss, grad = _native.conv_similarity(w.contiguous().numpy(), variant, need)
        if need:
            ctx.save_for_backward(torch.from_numpy(grad).to(weight.dtype))
        return torch.tensor(loss, dtype=weight.dtype)

    @staticmethod
    def backward(ctx, grad_output):
        (grad,) = ctx.saved_tensors
        return grad * grad_output, None


def conv_similarity(weight, variant="paper"):
    """L_CS of a conv weight (``[out, in/groups, k...]``) as a differentiable 0-d tensor: the
    library's fused loss and gradient for CPU tensors, :func:`conv_similarity_torch` (exact,
    linear-time torch ops) on other devices."""
    if not isinstance(weight, torch.Tensor):
        raise TypeError(f"conv_similarity takes a torch.Tensor, got {type(weight).__name__}")
    if weight.dtype not in _FLOATS:
        raise WeightTypeError(f"conv_similarity takes a floating-point weight, got {weight.dtype}")
    if weight.device.type == "cpu":
        if weight.dim() not in (3, 4, 5):
            raise ValueError(f"a conv weight has rank 3, 4 or 5, got shape {tuple(weight.shape)}")
        return ConvSimilarity.apply(weight, variant)
    return conv_similarity_torch(weight, variant)


def conv_weight(module, weight=None):
    """The weight of a conv module with its filters along the first axis, ``[out, in/groups,
    k...]``: the weight itself for a Conv, and for a ConvTranspose (``[in, out/groups, k...]``,
    its feature maps indexed by the second axis) each group's two first axes swapped.
    Differentiable (a view or a permuted copy)."""
    w = module.weight if weight is None else weight
    if not module.transposed:
        return w
    g = module.groups
    cin, out_g = w.shape[0], w.shape[1]
    k = tuple(w.shape[2:])
    return w.reshape(g, cin // g, out_g, *k).transpose(1, 2).reshape(g * out_g, cin // g, *k)


def _from_conv_weight(module, w):
    """The inverse of :func:`conv_weight`."""
    if not module.transposed:
        return w
    g = module.groups
    out, cin_g = w.shape[0], w.shape[1]
    k = tuple(w.shape[2:])
    return w.reshape(g, out // g, cin_g, *k).transpose(1, 2).reshape(g * cin_g, out // g, *k)


def _convs(model):
    if not isinstance(model, nn.Module):
        raise TypeError(f"expected a torch.nn.Module, got {type(model).__name__}")
    return [(name, m) for name, m in model.named_modules() if isinstance(m, _ConvNd)]


def regularizer(model, variant="paper"):
    """The sum of L_CS over every conv of ``model`` (ConvTranspose filters on their own axis), a
    differentiable scalar: add ``lambda * regularizer(model)`` to the loss (the paper's
    Algorithm 2)."""
    convs = _convs(model)
    if not convs:
        raise NoConvLayersError(f"{type(model).__name__}: no conv module")
    total = None
    for name, m in convs:
        if isinstance(m.weight, nn.parameter.UninitializedParameter):
            raise ModelError(f"conv '{name}' is an uninitialized lazy module: run a forward first")
        loss = conv_similarity(conv_weight(m), variant)
        total = loss if total is None else total + loss.to(total.device)
    return total


# --- decorrelate_ ------------------------------------------------------------------------------


def _parametrized(m):
    if torch.nn.utils.parametrize.is_parametrized(m, "weight"):
        return "parametrized (torch.nn.utils.parametrize / parametrizations.weight_norm)"
    if hasattr(m, "weight_g") and hasattr(m, "weight_v"):
        return "weight-normed (torch.nn.utils.weight_norm)"
    if hasattr(m, "weight_orig"):
        return "spectral-normed or pruned (weight_orig)"
    return None


def _selected(name, include, exclude):
    """Whether the selection keywords pick ``name`` (Python's re; the library decides the rest)."""
    as_list = lambda p: [] if p is None else [p] if isinstance(p, str) else list(p)
    inc, exc = as_list(include), as_list(exclude)
    if inc and not any(re.search(p, name) for p in inc):
        return False
    return not any(re.search(p, name) for p in exc)


def decorrelate_(
    model,
    iters=200,
    lr=1e-3,
    optimizer="adam",
    variant="paper",
    keep_norm=False,
    include=None,
    exclude=None,
    skip_pointwise=False,
    seed=0,
    probe=True,
    threads=None,
    progress=None,
    **settings,
):
    """Minimizes L_CS of every conv weight of ``model`` in place, as the ``cs-init`` command does
    each conv tensor of the model's state dict, and returns the run's :class:`cs_init.Report`.

    Every ``nn.Conv1d/2d/3d`` (any groups, depthwise) and ``nn.ConvTranspose1d/2d/3d`` (its
    filters along its second axis, within each group) is selected by the command's rules
    (``include``/``exclude`` regexes on the state-dict name, ``skip_pointwise``, single-filter
    convs left alone). Each weight is optimized in its own dtype (f16/bf16/f32/f64, through f32
    as the command does) and written back to its own device and memory layout.

    All or nothing: every new weight is computed first, then copied into the model under
    ``torch.no_grad()``. An exception or KeyboardInterrupt (Ctrl-C stops within a layer) leaves
    the model bit for bit as it was. A layer that diverges keeps its input weights while the
    others are updated, as the command's exit code 3 does; the report names it and a
    RuntimeWarning is issued. Other parameters, buffers, ``requires_grad`` flags and hooks are
    untouched. Further keywords are the command's other settings (``momentum``,
    ``probe_batch``, ``probe_size``, ``probe_noise``, ``probe_padding``, ``probe_images``,
    ``probe_sample``, ``kernel_cosine_sample``); ``threads`` the CPU threads (default all);
    ``progress`` a callback, ``False``, or ``None`` for a tqdm bar when tqdm is installed.
    """
    convs = _convs(model)
    for key in ("layout", "key", "strip_prefix", "max_shard_size"):
        if key in settings:
            raise TypeError(f"decorrelate_() got an unexpected keyword argument '{key}'")
    keywords = dict(
        iters=iters,
        lr=lr,
        optimizer=optimizer,
        variant=variant,
        keep_norm=keep_norm,
        include=include,
        exclude=exclude,
        skip_pointwise=skip_pointwise,
        seed=seed,
        probe=probe,
        **settings,
    )
    text = settings_json("decorrelate_", keywords)
    check_threads(threads)
    if not convs:
        raise NoConvLayersError(f"{type(model).__name__}: no conv module (nn.Conv1d/2d/3d, nn.ConvTranspose1d/2d/3d)")

    state = model.state_dict(keep_vars=True)
    weight_key = {}  # module -> its weight's state-dict key
    for name, m in convs:
        key = f"{name}.weight" if name else "weight"
        if isinstance(m.weight, nn.parameter.UninitializedParameter):
            raise ModelError(f"conv '{name}' is an uninitialized lazy module (LazyConv): run a forward pass first")
        why = _parametrized(m)
        if why is not None:
            if _selected(key, include, exclude):
                raise ModelError(
                    f"conv '{name}' has a {why} weight, whose effective weight cannot be written "
                    f"back: remove the parametrization first, or leave it out with exclude=[{re.escape(key)!r}]"
                )
            continue
        w = m.weight
        if w is None:
            continue
        if w.is_meta:
            raise ModelError(f"conv '{name}': its weight is on the meta device (no values): materialize the model first (to_empty + init, or load_state_dict(assign=True))")
        if w.is_quantized or w.dtype not in _FLOATS:
            raise WeightTypeError(
                f"conv '{name}': weight of dtype {w.dtype}; cs-init optimizes float16, bfloat16, float32 and float64 weights"
            )
        if key in state and state[key] is w:
            weight_key[m] = key
    if not weight_key:
        raise NoConvLayersError(f"{type(model).__name__}: no conv weight cs-init can optimize")

    tensors, weights, places = [], [], {}
    by_key = {key: m for m, key in weight_key.items()}
    for key, t in state.items():
        if not isinstance(t, torch.Tensor):
            continue
        dtype = _DTYPES.get(t.dtype, "U8")
        m = by_key.get(key)
        if m is None:
            tensors.append((key, dtype, list(t.shape)))
            continue
        with torch.no_grad():
            w = conv_weight(m, t.detach()).to("cpu").contiguous()
        index = len(tensors)
        tensors.append((key, dtype, list(w.shape)))
        weights.append((index, w.reshape(-1).view(torch.uint8).numpy()))
        places[index] = (m, w.shape)

    bar = Progress(progress)
    try:
        report_text, written = _native.decorrelate(
            tensors,
            weights,
            text,
            threads=threads,
            progress=bar if bar.active() else None,
            command_line=_command_line(keywords),
            input_label=type(model).__name__,
        )
    finally:
        bar.close()
    del weights

    # Every new weight, in the parameter's dtype, shape and device, before anything is changed.
    updates = []
    for index, data in written:
        m, shape = places[index]
        p = m.weight
        new = torch.from_numpy(data).view(p.dtype).reshape(shape)
        new = _from_conv_weight(m, new).to(p.device)
        updates.append((p, new))
    backups = []
    try:
        with torch.no_grad():
            for p, new in updates:
                backups.append((p, p.detach().clone()))
                p.copy_(new)
    except BaseException:
        with torch.no_grad():
            for p, old in backups:
                p.copy_(old)
        raise
    report = Report(report_text)
    if report.diverged:
        warnings.warn(
            f"{len(report.diverged)} conv layer(s) diverged and kept their input weights: "
            f"{', '.join(report.diverged)} (lower lr?)",
            RuntimeWarning,
            stacklevel=2,
        )
    return report


def _command_line(keywords):
    parts = [f"{k}={v!r}" for k, v in keywords.items() if v is not None]
    return f"cs_init.torch.decorrelate_(model, {', '.join(parts)})"
