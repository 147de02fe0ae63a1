"""The wheel's `cs-init` console script against the Rust binary built from the same sources: the same
command line, byte for byte (stdout, stderr, exit code, output files)."""

import json
import os
import pathlib
import subprocess
import sys

import pytest

# The console script pip installed beside this interpreter.
SCRIPT = pathlib.Path(sys.executable).parent / "cs-init"


@pytest.fixture(scope="module")
def binary():
    """The Rust binary (CS_INIT_BINARY): skipped where unset, a failure under
    CS_INIT_REQUIRE_BINARY=1 (python/ci.sh sets both)."""
    path = os.environ.get("CS_INIT_BINARY")
    if not path:
        message = "CS_INIT_BINARY (the cargo-built cs-init to compare with) is unset"
        if os.environ.get("CS_INIT_REQUIRE_BINARY") == "1":
            pytest.fail(f"CS_INIT_REQUIRE_BINARY=1 but {message}")
        pytest.skip(message)
    assert pathlib.Path(path).is_file(), f"CS_INIT_BINARY={path} is not a file"
    return path


def command(program, *args, cwd):
    return subprocess.run(
        [str(program), *args], cwd=cwd, capture_output=True, timeout=600, check=False
    )


def both(binary, tmp_path, *args):
    """Runs the binary and the script with `args` in two fresh directories; returns both results
    and the directories."""
    results = []
    for name, program in (("binary", binary), ("script", SCRIPT)):
        directory = tmp_path / name
        directory.mkdir()
        results.append((command(program, *args, cwd=directory), directory))
    return results


def test_the_script_is_installed():
    assert SCRIPT.is_file(), f"pip did not install the console script at {SCRIPT}"
    version = command(SCRIPT, "--version", cwd=".")
    assert version.returncode == 0
    assert version.stdout.decode().startswith("cs-init ")


@pytest.mark.parametrize(
    "args",
    [
        ["--version"],
        ["--help"],
        ["serve", "--help"],
        ["plan", "resnet18"],
        ["--iters", "5", "--momentum", "0.9", "resnet18"],  # usage error: exit 2
        ["--no-such-flag"],  # clap's own usage error
        ["missing.safetensors"],  # exit 1, nothing written
    ],
)
def test_same_output_and_exit_code(binary, tmp_path, args):
    (ours, _), (script, _) = both(binary, tmp_path, *args)
    assert script.returncode == ours.returncode
    assert script.stdout == ours.stdout
    assert script.stderr == ours.stderr


def test_a_run_writes_the_same_bytes(binary, tmp_path):
    args = ["resnet18", "--iters", "5", "-o", "out.safetensors"]
    (ours, ours_dir), (script, script_dir) = both(binary, tmp_path, *args)
    assert ours.returncode == 0, ours.stderr.decode()
    assert script.returncode == ours.returncode, script.stderr.decode()
    assert (script_dir / "out.safetensors").read_bytes() == (
        ours_dir / "out.safetensors"
    ).read_bytes()
    assert without_timings(script_dir / "out.report.json") == without_timings(
        ours_dir / "out.report.json"
    )


def without_timings(report_path):
    """The report less what differs between two runs of one command: times, memory, and the
    program's path in the command line."""

    def strip(value):
        if isinstance(value, dict):
            return {
                k: strip(v)
                for k, v in value.items()
                if not (k.endswith("seconds") or k in ("peak_memory_bytes", "command_line"))
            }
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    report = json.loads(report_path.read_text())
    assert report["command_line"].split(" ", 1)[1] == "resnet18 --iters 5 -o out.safetensors"
    return strip(report)
