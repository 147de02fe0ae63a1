"""Keyword settings to the library's ``RunSettings`` (JSON), checked by its one rule."""

import json
import math
import os

from . import _native
from ._errors import SettingsError

_NAMES = frozenset(_native.setting_names())
_LISTS = ("include", "exclude")
_NON_NEGATIVE = ("lr", "momentum")


def _rust_float(x):
    if math.isnan(x):
        return "NaN"
    return "inf" if x > 0 else "-inf"


def _value(key, value):
    if key in _LISTS:
        if isinstance(value, (str, bytes, os.PathLike)):
            value = [value]
        return [os.fsdecode(v) if isinstance(v, (bytes, os.PathLike)) else v for v in value]
    if key == "variant" and isinstance(value, str):
        return value.replace("_", "-")
    if key == "probe_size":
        if isinstance(value, (tuple, list)) and len(value) == 2:
            return f"{int(value[0])}x{int(value[1])}"
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
    if key == "probe_images" and isinstance(value, (bytes, os.PathLike)):
        return os.fsdecode(value)
    if key in _NON_NEGATIVE and isinstance(value, float) and not math.isfinite(value):
        error = SettingsError(
            f"{key}: must be a finite number of at least 0, got {_rust_float(value)}"
        )
        error.field = key
        raise error
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()  # numpy and torch scalars
    return value


def settings_json(caller, settings):
    """The JSON object of ``settings`` (keywords of ``caller``); ``None`` means the default.
    An unknown keyword is a TypeError, as for any Python function."""
    out = {}
    for key, value in settings.items():
        if key not in _NAMES:
            raise TypeError(f"{caller}() got an unexpected keyword argument '{key}'")
        if value is None:
            continue
        out[key] = _value(key, value)
    text = json.dumps(out, allow_nan=False)
    _native.check_settings(text)
    return text


def default_settings():
    """Every setting with the command line's default, keyed by its keyword."""
    return json.loads(_native.default_settings())


def check_threads(threads):
    """``threads``: ``None`` (every core) or a positive int, the same rule for every entry point."""
    if threads is not None and (not isinstance(threads, int) or isinstance(threads, bool) or threads < 1):
        raise ValueError(f"threads must be a positive int, got {threads!r}")
