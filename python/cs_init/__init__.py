"""cs-init: minimize the Convolutional Similarity L_CS of every conv layer of a network.

The core needs numpy only:

- :func:`conv_similarity` / :func:`conv_similarity_grad`: L_CS of one conv weight and its gradient
  (the library's fused engine, exact, linear in the kernel pairs).
- :func:`run`: the ``cs-init`` command's pipeline on a checkpoint (a path, ``hf://...`` or a
  built-in architecture such as ``"resnet18"``), returning its :class:`Report`.

``cs_init.torch`` (``pip install cs-init[torch]``) works on PyTorch models in place:
``decorrelate_(model)``, the differentiable ``conv_similarity`` and ``regularizer(model)``.
"""

import os

import numpy as _np

from . import _errors, _native
from ._errors import (
    CheckpointError,
    ComputeError,
    DeviceError,
    Error,
    ModelError,
    NoConvLayersError,
    OutputError,
    SettingsError,
    StoppedError,
    WeightTypeError,
)
from ._progress import Progress as _Progress
from ._report import Report
from ._settings import check_threads as _check_threads
from ._settings import default_settings
from ._settings import settings_json as _settings_json

__version__ = _native.__version__

VARIANTS = tuple(_native.variants())


def _array(array):
    a = _np.asarray(array)
    if a.dtype not in (_np.float32, _np.float64):
        raise TypeError(
            f"conv_similarity takes float32 or float64 arrays, got {a.dtype} "
            "(convert with .astype(np.float32))"
        )
    if a.ndim not in (3, 4, 5):
        raise ValueError(
            f"a conv weight has rank 3, 4 or 5 ([out, in/groups, k...]), got shape {a.shape}"
        )
    return _np.ascontiguousarray(a)


def _variant(variant):
    if not isinstance(variant, str):
        raise TypeError(f"variant must be a str, got {type(variant).__name__}")
    return variant.replace("_", "-")


def conv_similarity(array, variant="paper"):
    """L_CS of a conv weight ``[out, in/groups, k...]`` (1 to 3 spatial dimensions), a float32 or
    float64 array, as a Python float (computed by the library's fused engine)."""
    loss, _ = _native.conv_similarity(_array(array), _variant(variant), False)
    return loss


def conv_similarity_grad(array, variant="paper"):
    """``(loss, gradient)``: L_CS of a conv weight and its gradient, an array of the weight's
    shape and dtype."""
    loss, grad = _native.conv_similarity(_array(array), _variant(variant), True)
    return loss, grad


def _command_line(name, args, settings):
    parts = [repr(a) for a in args] + [f"{k}={v!r}" for k, v in settings.items()]
    return f"{name}({', '.join(parts)})"


def run(
    input,
    output=None,
    *,
    report=None,
    plot=None,
    force=False,
    threads=None,
    progress=None,
    cache_only=False,
    **settings,
):
    """Runs the ``cs-init`` command's pipeline on ``input`` and returns its :class:`Report`.

    ``input``: a safetensors file, a sharded checkpoint's index or folder, a PyTorch file, an
    ``hf://owner/repo`` reference, or a built-in architecture name (``"resnet18"``...).
    ``output``: the checkpoint to write (default ``<stem>.cs.safetensors`` beside the input).
    ``report``/``plot``: the report and loss-curve plot paths. ``settings``: the command's options
    as keywords (``iters=200, lr=1e-3, optimizer="adam", variant="paper", keep_norm=False, include,
    exclude, skip_pointwise, layout, key, strip_prefix, seed, probe, probe_batch, probe_size,
    probe_images, probe_noise, probe_padding, probe_sample, kernel_cosine_sample,
    max_shard_size``), with its defaults and checks. The work runs with the GIL released; Ctrl-C
    stops it within a layer, writing nothing.
    """
    text = _settings_json("run", settings)
    _check_threads(threads)
    bar = _Progress(progress)
    fspath = lambda p: None if p is None else os.fspath(p)
    try:
        out = _native.run(
            os.fspath(input),
            text,
            output=fspath(output),
            report=fspath(report),
            plot=fspath(plot),
            force=bool(force),
            threads=threads,
            progress=bar if bar.active() else None,
            command_line=_command_line("cs_init.run", [os.fspath(input)], settings),
            cache_only=bool(cache_only),
        )
    finally:
        bar.close()
    return Report(
        out["report"],
        checkpoint=out["checkpoint"],
        report_path=out["report_path"],
        plot_path=out["plot_path"],
        files=out["files"],
    )


# The exception classes are _errors' own list, so that a new one is exported where it is defined.
__all__ = [
    *_errors.__all__,
    "Report",
    "VARIANTS",
    "conv_similarity",
    "conv_similarity_grad",
    "default_settings",
    "run",
]
