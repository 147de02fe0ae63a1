import os
import pathlib

import pytest

# The repository's ../shared/data (real checkpoints), when present beside the clone.
REPO = pathlib.Path(__file__).resolve().parents[2]
SHARED = pathlib.Path(os.environ.get("CS_INIT_SHARED", REPO.parent / "shared")) / "data"


def shared_checkpoint(name):
    """A checkpoint of ../shared/data: skipped where absent, a failure under
    CS_INIT_REQUIRE_SHARED=1 (CI sets it), as in the Rust tests."""
    path = SHARED / "checkpoints" / name
    if not path.exists():
        message = f"{path} is absent (the real checkpoints live in ../shared/data beside the clone)"
        if os.environ.get("CS_INIT_REQUIRE_SHARED") == "1":
            pytest.fail(f"CS_INIT_REQUIRE_SHARED=1 but {message}")
        pytest.skip(message)
    return path
