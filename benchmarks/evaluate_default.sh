#!/usr/bin/env bash
# The model card's table (weights/default/README.md): `facemend evaluate` of the default model and
# of the identity / bicubic / lanczos baselines on the held-out CelebA and LFW identities, at the
# model's resolution (64 px). Usage: bash benchmarks/evaluate_default.sh [OUT_DIR] [WEIGHTS]
set -euo pipefail
OUT=${1:-runs/eval-default}
WEIGHTS=${2:-weights/default}
SHARED=${FACEMEND_SHARED:-../shared}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
for set in celeba/eval256 lfw/eval128; do
  name=${set%%/*}
  for m in identity bicubic lanczos model; do
    facemend evaluate --data "$SHARED/data/$set" --identities "$SHARED/data/$set/labels.csv" \
      --method $m --weights "$WEIGHTS" --tasks bfr,sr8,sr16 --resolution 64 \
      --cache "$OUT/testset-$name" --out "$OUT/$name-$m" --no-progress
  done
  facemend evaluate compare "$OUT/$name-identity" "$OUT/$name-bicubic" "$OUT/$name-lanczos" \
    "$OUT/$name-model" --out "$OUT/compare-$name"
done
