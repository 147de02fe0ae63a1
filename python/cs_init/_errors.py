"""The exceptions of cs_init. Every one is a :class:`cs_init.Error`; those a Python user expects as
``ValueError``, ``TypeError`` or ``OSError`` are those too."""


class Error(Exception):
    """Base class of every error cs-init raises."""


class SettingsError(Error, ValueError):
    """A setting makes no sense (the command line's exit code 2). ``field`` names it."""

    field = None


class CheckpointError(Error, OSError):
    """The input cannot be found or read, or an output cannot be written."""


class OutputError(Error, OSError):
    """The outputs would replace the input, each other, or existing files (``force=False``)."""


class NoConvLayersError(Error, ValueError):
    """Nothing to optimize: no conv weight passes the selection rules."""


class ModelError(Error, ValueError):
    """A model cs_init.torch cannot work on as it is (uninitialized lazy conv, meta tensors,
    a parametrized or weight-normed conv that is selected)."""


class WeightTypeError(Error, TypeError):
    """A conv weight of a dtype cs-init does not compute with (integer, quantized, complex)."""


class DeviceError(Error):
    """The compute device cannot be used."""


class ComputeError(Error):
    """A computation failed inside the library."""


class StoppedError(Error):
    """The run was stopped (a progress callback asked for it); nothing was written."""


__all__ = [
    "Error",
    "SettingsError",
    "CheckpointError",
    "OutputError",
    "NoConvLayersError",
    "ModelError",
    "WeightTypeError",
    "DeviceError",
    "ComputeError",
    "StoppedError",
]
