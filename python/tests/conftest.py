import os
import pathlib

import pytest

# The repository's ../shared/data (real checkpoints), when present beside the clone.
REPO = pathlib.Path(__file__).resolve().parents[2]
SHARED = pathlib.Path(os.environ.get("CS_INIT_SHARED", REPO.parent / "shared")) / "data"


def shared_checkpoint(name):
    path = SHARED / "checkpoints" / name
    if not path.exists():
        pytest.skip(f"{path} is absent (the real checkpoints live in ../shared/data beside the clone)")
    return path
