#!/usr/bin/env bash
# The reconstruction model from scratch: steps 1-2 at 64 px (weights/default-64), steps 3-4 at
# 128 px (weights/default). Each step starts from the previous step's runs/reconstruction/N/final.
#   bash configs/recipes/reconstruction-128.sh [DATA_ROOT] [FIRST_STEP]
# DATA_ROOT holds celeba/train128 and lfw/train128 (default ../shared/data); FIRST_STEP (1-4)
# skips the steps already done. About 6 hours on one CPU core; extra arguments go to every
# `facemend train` (e.g. --threads 2). Run from the repository root.
set -euo pipefail
data=${1:-../shared/data}
first=${2:-1}
shift $(( $# < 2 ? $# : 2 ))
recipe=configs/recipes
for step in 1 2 3 4; do
    (( step < first )) && continue
    configs=(--config "$recipe/reconstruction-base.yaml")
    (( step >= 3 )) && configs+=(--config "$recipe/reconstruction-128px.yaml")
    configs+=(--config "$recipe/reconstruction-$step.yaml")
    facemend train "${configs[@]}" --data "$data/celeba/train128" --data "$data/lfw/train128" \
        --out "runs/reconstruction/$step" --threads 1 "$@"
done
echo "64 px model: runs/reconstruction/2/final; 128 px model: runs/reconstruction/4/final"
