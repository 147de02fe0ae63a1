#!/usr/bin/env bash
# Runs fuzz targets one after another, each until 10 million executions or one hour, whichever
# comes first (README.md explains the flags). Usage: fuzz/run.sh [TARGET...] [-- LIBFUZZER_FLAGS]
# Without targets, runs all of them. Logs go to fuzz/logs/TARGET.log, crashes to
# fuzz/artifacts/TARGET/.
set -euo pipefail
cd "$(dirname "$0")"

targets=()
while [[ $# -gt 0 && $1 != -- ]]; do targets+=("$1"); shift; done
[[ ${1:-} == -- ]] && shift
[[ ${#targets[@]} -gt 0 ]] || targets=(cli_numbers hub settings safetensors sharded pickle pytorch)

[[ -d corpus ]] || python3 seed.py
mkdir -p logs
for target in "${targets[@]}"; do
  case $target in
    safetensors | sharded) dict=dicts/json.dict max_len=65536 ;;
    settings) dict=dicts/json.dict max_len=4096 ;;
    pickle | pytorch) dict=dicts/pytorch.dict max_len=65536 ;;
    hub | cli_numbers) dict=dicts/text.dict max_len=4096 ;;
    *) echo "unknown target '$target'; see fuzz/Cargo.toml" >&2; exit 2 ;;
  esac
  mkdir -p "corpus/$target"
  echo "== $target ($(date -u +%FT%TZ))" | tee "logs/$target.log"
  # A crash ends this target's run (its input is in artifacts/); the next target still runs.
  if ! cargo +nightly fuzz run "$target" "corpus/$target" -- \
    -rss_limit_mb=2048 -timeout=10 -runs=10000000 -max_total_time=3600 \
    -max_len="$max_len" -dict="$dict" -print_final_stats=1 "$@" 2>&1 | tee -a "logs/$target.log"; then
    echo "== $target FAILED; see logs/$target.log and artifacts/$target/" | tee -a "logs/$target.log"
  fi
done
