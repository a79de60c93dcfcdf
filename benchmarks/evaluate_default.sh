#!/usr/bin/env bash
# The model card's table (weights/default/README.md): `facemend evaluate` of the default model and
# of the identity / bicubic / lanczos baselines on the held-out CelebA and LFW identities, at the
# model's resolution (read from the weights' config.json); with OTHER_WEIGHTS, that model too at
# the same resolution (`evaluate` resizes its inputs and outputs with Lanczos).
# Usage: bash benchmarks/evaluate_default.sh [OUT_DIR] [WEIGHTS] [OTHER_WEIGHTS]
set -euo pipefail
OUT=${1:-runs/eval-default}
WEIGHTS=${2:-weights/default}
OTHER=${3:-}
SHARED=${FACEMEND_SHARED:-../shared}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
RES=$(python -c "import json, sys; print(json.load(open(sys.argv[1]))['model']['resolution'])" \
  "$WEIGHTS/config.json")
for set in celeba/eval256 lfw/eval128; do
  name=${set%%/*}
  for m in identity bicubic lanczos model; do
    facemend evaluate --data "$SHARED/data/$set" --identities "$SHARED/data/$set/labels.csv" \
      --method $m --weights "$WEIGHTS" --tasks bfr,sr8,sr16 --resolution "$RES" \
      --cache "$OUT/testset-$name-$RES" --out "$OUT/$name-$m" --no-progress
  done
  runs=("$OUT/$name-identity" "$OUT/$name-bicubic" "$OUT/$name-lanczos")
  if [[ -n "$OTHER" ]]; then
    facemend evaluate --data "$SHARED/data/$set" --identities "$SHARED/data/$set/labels.csv" \
      --method model --weights "$OTHER" --tasks bfr,sr8,sr16 --resolution "$RES" \
      --cache "$OUT/testset-$name-$RES" --out "$OUT/$name-$(basename "$OTHER")" --no-progress
    runs+=("$OUT/$name-$(basename "$OTHER")")
  fi
  facemend evaluate compare "${runs[@]}" "$OUT/$name-model" --out "$OUT/compare-$name"
done
