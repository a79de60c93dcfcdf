#!/usr/bin/env bash
# Ablations at equal budget (same data, steps, seed): Table 3, number of skips, alpha.
# Each variant: train configs/ablation-64.yaml with one change, then `facemend evaluate` (BFR at
# 64 px on the CelebA evaluation identities). Usage: bash benchmarks/ablations.sh [OUT_DIR]
set -euo pipefail
OUT=${1:-runs/ablations}
SHARED=${FACEMEND_SHARED:-../shared}
DATA="--data $SHARED/data/celeba/train128 --data $SHARED/data/lfw/train128"
EVAL="--data $SHARED/data/celeba/eval256 --identities $SHARED/data/celeba/eval256/labels.csv"
export OMP_NUM_THREADS=1
mkdir -p "$OUT"
run() {  # name, then --set overrides
  local name=$1; shift
  local sets=()
  for s in "$@"; do sets+=(--set "$s"); done
  if [ ! -f "$OUT/$name/final/model.safetensors" ]; then
    facemend train --config configs/ablation-64.yaml $DATA --out "$OUT/$name" --threads 1 \
      --no-progress ${sets[@]+"${sets[@]}"} > "$OUT/$name.train.log" 2>&1
  fi
  if [ ! -f "$OUT/$name/eval/results.json" ]; then
    facemend evaluate $EVAL --method model --weights "$OUT/$name/final" --tasks bfr \
      --resolution 64 --cache "$OUT/testset64" --out "$OUT/$name/eval" --no-progress \
      > "$OUT/$name.eval.log" 2>&1
  fi
  echo "$(date +%T) $name done"
}
# Table 3: baseline -> + LGF -> + quantization -> + noise
run t3_baseline model.fusion=add model.quantize=false model.noise=false model.skip_noise=false
run t3_lgf model.quantize=false model.noise=false model.skip_noise=false
run t3_lgf_vq model.noise=false model.skip_noise=false
run t3_full
run t3_full_seed1 train.seed=1  # the same run with another seed: how large is run-to-run noise?
# number of skip connections (Figure 3); 3 is t3_full
run skips_1 model.num_skips=1
run skips_2 model.num_skips=2
run skips_3_full model.full_res_skip=true  # facemend's extra skip at H (64 px) on top of 3
# adversarial weight alpha; 0.1 is t3_full
run alpha_0.03 train.alpha=0.03
run alpha_0.3 train.alpha=0.3
# the degraded input itself, for reference
if [ ! -f "$OUT/input/results.json" ]; then
  facemend evaluate $EVAL --method identity --tasks bfr --resolution 64 --cache "$OUT/testset64" \
    --out "$OUT/input" --no-progress > "$OUT/input.eval.log" 2>&1
fi
facemend evaluate compare "$OUT"/input "$OUT"/t3_*/eval "$OUT"/skips_*/eval "$OUT"/alpha_*/eval \
  --out "$OUT/compare"
