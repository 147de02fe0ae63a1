#!/usr/bin/env bash
# The Python package the way a user gets it: build the wheel with maturin, install it into a fresh
# virtual environment with no Rust on PATH, run the pytest suite against that install (its
# `cs-init` console script compared with the cargo-built binary).
#
#   python/ci.sh            # from the repository root or anywhere; .ci/run calls it
#
# Environment: PYTHON (default python3), CS_INIT_WHEEL_DIR (default target/wheels), CS_INIT_CI_VENV
# (default a fresh temporary directory), CARGO_TARGET_DIR (shared with the workspace's builds:
# the wheel's release build reuses a `cargo build --release`'s compiled dependencies), and
# CS_INIT_WHEEL_PROFILE: `release` (default, `maturin build --release`) or `dev`, which reuses the
# dependencies `cargo test --workspace` compiled (the dev profile builds them at opt-level 3)
# instead of compiling candle a second time.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
python="${PYTHON:-python3}"
wheels="${CS_INIT_WHEEL_DIR:-$root/target/wheels}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
venv="${CS_INIT_CI_VENV:-$work/venv}"

step() { echo "== python: $*"; step_start=$(date +%s); }
done_step() { echo "   ($(( $(date +%s) - step_start )) s)"; }

step "maturin (build tool venv)"
"$python" -m venv "$work/build"
"$work/build/bin/pip" install -q "maturin>=1.5,<2"
done_step

profile="${CS_INIT_WHEEL_PROFILE:-release}"
step "maturin build --profile $profile"
rm -f "$wheels"/cs_init-*.whl
"$work/build/bin/maturin" build --profile "$profile" -m "$here/Cargo.toml" -o "$wheels"
wheel="$(ls "$wheels"/cs_init-*.whl)"
ls -l "$wheel"
done_step

# The Rust binary from the same sources and profile, which the wheel's `cs-init` console script is
# compared with byte for byte (tests/test_cli.py); its dependencies are the wheel's, already built.
step "cargo build --profile $profile -p cs-init-cli --features serve (the binary the script must match)"
(cd "$root" && cargo build --profile "$profile" -p cs-init-cli --features serve)
target_dir="${CARGO_TARGET_DIR:-$root/target}"
case "$profile" in dev) binary="$target_dir/debug/cs-init" ;; *) binary="$target_dir/$profile/cs-init" ;; esac
done_step

# A user's machine: no cargo, no rustc on PATH.
nopath="$(printf '%s' "$PATH" | tr ':' '\n' | grep -v -e cargo -e rustup | paste -sd: -)"
step "fresh venv with the wheel and its test extras (torch from PyPI)"
env PATH="$nopath" "$python" -m venv "$venv"
env PATH="$nopath" "$venv/bin/pip" install -q "$wheel[test]" tqdm
if PATH="$nopath" bash -c 'command -v cargo || command -v rustc' >/dev/null; then
  echo "cargo or rustc still on PATH" >&2
  exit 1
fi
done_step

step "pytest against the installed package"
# From outside the source tree, so that `import cs_init` is the installed wheel's.
cd "$work"
env PATH="$nopath" "$venv/bin/python" -c "import cs_init, sys; print('cs_init', cs_init.__version__, 'from', cs_init.__file__)"
# The torch tests skip without torch; here it was installed, so its absence is a failure.
env PATH="$nopath" "$venv/bin/python" -c "import torch; print('torch', torch.__version__)"
env PATH="$nopath" CS_INIT_BINARY="$binary" CS_INIT_REQUIRE_BINARY=1 \
  "$venv/bin/python" -m pytest -q -p no:cacheprovider "$here/tests"
done_step
