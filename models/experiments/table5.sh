#!/usr/bin/env bash
# The reduced Table 5 protocol of docs/experiments.md: CNN1 on CIFAR-10 (JPEG copy), the three arms
# (baseline, CS initialization I=500, CS regularization beta=0.001), two seeds each, SGD lr 0.01,
# batch 512, no momentum, no augmentation, as in the paper, but EPOCHS epochs on TRAIN_IMAGES
# class-balanced training images instead of 100 epochs on all 50,000.
#
# Usage: models/experiments/table5.sh [OUT_DIR] [EPOCHS] [TRAIN_IMAGES]
#   defaults: docs/experiments/table5, 10, 20000 (about 65 minutes on 2 cores)
# Environment: DATA (default ../shared/data/cifar10/cifar10-jpeg-q75.tar.gz), MODEL (cnn1),
#   SEEDS ("0 1"), EXTRA (more `models train` flags, e.g. "--device cuda").
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-docs/experiments/table5}
EPOCHS=${2:-10}
TRAIN_IMAGES=${3:-20000}
DATA=${DATA:-../shared/data/cifar10/cifar10-jpeg-q75.tar.gz}
MODEL=${MODEL:-cnn1}
SEEDS=${SEEDS:-0 1}
mkdir -p "$OUT"
cargo build --release -p models
for seed in $SEEDS; do
  for arm in baseline cs-init cs-reg; do
    case $arm in
      baseline) flags=() ;;
      cs-init) flags=(--cs-init 500 --cs-init-lr 0.001) ;;
      cs-reg) flags=(--cs-reg 0.001) ;;
    esac
    log="$OUT/$MODEL-$arm-seed$seed.jsonl"
    rm -f "$log"
    echo "== $MODEL $arm seed $seed -> $log" >&2
    # shellcheck disable=SC2086
    target/release/models train --model "$MODEL" --data "$DATA" --normalization cifar10 \
      --epochs "$EPOCHS" --train-images "$TRAIN_IMAGES" --seed "$seed" "${flags[@]}" \
      --log "$log" ${EXTRA:-} > /dev/null
  done
done
target/release/models plot "$OUT"/"$MODEL"-*.jsonl -o "$OUT/accuracy.svg" \
  --title "$MODEL on CIFAR-10: test accuracy per epoch (mean of seeds)"
echo "logs and plot in $OUT" >&2
