#!/usr/bin/env bash
# What cs-init does to a pretrained network: the CIFAR ResNet-20 of pytorch_resnet_cifar10, test
# accuracy before and after `cs-init --iters 10/50/200`, with and without --keep-norm (BatchNorm
# running statistics are left as they are in both cases: cs-init only writes conv weights), and on
# the JPEG set also after re-estimating those statistics from 5000 training images
# (`models eval --recalibrate-bn 5000`).
#
# Usage: models/experiments/pretrained.sh [OUT_FILE]   (default docs/experiments/pretrained.jsonl)
# Prints one JSON object per (iterations, keep-norm, test set, recalibration); about 15 minutes on
# 2 cores.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-docs/experiments/pretrained.jsonl}
SHARED=../shared/data
CHECKPOINT=$SHARED/checkpoints/resnet20-cifar10.safetensors
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
cargo build --release --bin cs-init
cargo build --release -p models
mkdir -p "$(dirname "$OUT")"
: > "$OUT"
for iters in 0 10 50 200; do
  for keep in no yes; do
    [ "$iters" = 0 ] && [ "$keep" = yes ] && continue
    file=$CHECKPOINT
    if [ "$iters" != 0 ]; then
      file=$WORK/resnet20-$iters-$keep.safetensors
      flags=(--iters "$iters" -o "$file" --report "$file.report.json" --no-probe -q)
      [ "$keep" = yes ] && flags+=(--keep-norm)
      target/release/cs-init "$CHECKPOINT" "${flags[@]}"
    fi
    for run in "bin-prefix" "cifar10-jpeg-q75.tar.gz" "cifar10-jpeg-q75.tar.gz --recalibrate-bn 5000"; do
      read -r data recalibration <<< "$run"
      result=$(target/release/models eval --model resnet20 --checkpoint "$file" \
        --data "$SHARED/cifar10/$data" --json $recalibration)
      printf '{"iters":%s,"keep_norm":%s,"data":"%s","eval":%s}\n' \
        "$iters" "$([ "$keep" = yes ] && echo true || echo false)" "$data" "$result" \
        | tee -a "$OUT"
    done
  done
done
