#!/usr/bin/env bash
# Train configs/generative-128.yaml's recipe on one CUDA GPU for a fixed wall-clock budget.
#
#   bash scripts/gpu-train.sh [MINUTES] [RUN_TO_RESUME]
#
# MINUTES (default 10) of training, then a checkpoint. Batch 32 (the config's 8 is the CPU's),
# bf16 autocast (train.amp=auto picks it on CUDA), train.compile=true, 8 DataLoader workers.
# The faces come from one packed file, gpu-data/faces.pack (git-ignored, under 60 MiB, so it can
# travel with the checkout); when it is missing it is packed from ../shared/data's celeba and lfw
# train128 folders (`facemend pack ... --max-mib 60`: JPEG q 90, faces beyond 60 MiB left out,
# validation faces kept, so the split is the one the folders give).
# RUN_TO_RESUME: a run folder of an earlier run of this recipe (GPU or CPU); it is copied to the
# work folder and continued with --resume.
#
# Where things go: the run trains in $FACEMEND_GPU_RUN (default runs/gpu-generative-128); at the
# end its checkpoint, config.json, log.jsonl and the last sample grid are copied to
# $OUT/generative-128 when $OUT is set (a run folder in the layout that `train --resume` reads).
# Sizes at 128 px: the checkpoint is about 96 MB (G, EMA, D and both optimisers); the
# --export-ema folder below about 26 MB (EMA G 19 MB + D 6 MB), for a channel that carries less.
#
# The CPU run resumes from it with the same --config (the model config must match; batch size,
# steps and other train values may differ):
#   facemend train --config configs/generative-128.yaml \
#     --data ../shared/data/celeba/train128 --data ../shared/data/lfw/train128 \
#     --out COPIED/generative-128 --resume
# (the CPU may read gpu-data/faces.pack instead of the folders: the same faces and split.)
# The alternative is a fresh CPU run that starts from the GPU run's weights (G from its EMA, D
# from discriminator.safetensors, both written by --export-ema; optimiser state starts anew):
#   facemend train --out COPIED/generative-128 --export-ema WEIGHTS
#   facemend train --config configs/generative-128.yaml --data ... --out NEW_RUN \
#     --set train.init_from=WEIGHTS --set train.init_d_from=WEIGHTS
#
# Needs: a Python with this package's dependencies and a CUDA build of torch ($PYTHON, default
# python3; the package is taken from src/ of this checkout). Overrides, for tests and other GPUs:
# FACEMEND_GPU_CONFIG, FACEMEND_GPU_DEVICE, FACEMEND_GPU_BATCH, FACEMEND_GPU_WORKERS,
# FACEMEND_GPU_PACK, FACEMEND_GPU_DATA (folders to pack, space-separated), FACEMEND_GPU_RUN,
# FACEMEND_GPU_SET (extra KEY=VALUE overrides, space-separated, applied last).
set -euo pipefail

cd "$(dirname "$0")/.."
MINUTES=${1:-10}
RESUME_FROM=${2:-}
CONFIG=${FACEMEND_GPU_CONFIG:-configs/generative-128.yaml}
DEVICE=${FACEMEND_GPU_DEVICE:-cuda}
BATCH=${FACEMEND_GPU_BATCH:-32}
WORKERS=${FACEMEND_GPU_WORKERS:-8}
PACK=${FACEMEND_GPU_PACK:-gpu-data/faces.pack}
DATA=${FACEMEND_GPU_DATA:-../shared/data/celeba/train128 ../shared/data/lfw/train128}
RUN=${FACEMEND_GPU_RUN:-runs/gpu-generative-128}
PYTHON=${PYTHON:-python3}
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
facemend() { "$PYTHON" -m facemend "$@"; }

if [[ ! -f "$PACK" ]]; then
    pack_args=()
    for d in $DATA; do
        [[ -d "$d" ]] && pack_args+=(--data "$d")
    done
    if [[ ${#pack_args[@]} -eq 0 ]]; then
        echo "error: $PACK not found and none of the data folders ($DATA) exist" >&2
        exit 2
    fi
    facemend pack "${pack_args[@]}" --out "$PACK" --max-mib 60
fi

resume=()
if [[ -n "$RESUME_FROM" ]]; then
    if [[ ! -f "$RESUME_FROM/checkpoints/latest.safetensors" ]]; then
        echo "error: $RESUME_FROM: no checkpoints/latest.safetensors to resume from" >&2
        exit 2
    fi
    if [[ "$(realpath "$RESUME_FROM")" != "$(realpath -m "$RUN")" ]]; then
        rm -rf "$RUN"
        mkdir -p "$(dirname "$RUN")"
        cp -r "$RESUME_FROM" "$RUN"
    fi
    resume=(--resume)
fi

sets=(--set "train.batch_size=$BATCH" --set train.compile=true
      --set "train.num_workers=$WORKERS")
for kv in ${FACEMEND_GPU_SET:-}; do
    sets+=(--set "$kv")
done

start=$(date +%s)
facemend train --config "$CONFIG" --data "$PACK" --out "$RUN" --device "$DEVICE" \
    "${sets[@]}" --max-minutes "$MINUTES" --no-progress "${resume[@]}"
echo "trained for $(( $(date +%s) - start )) s (setup and compile included)"

if [[ -n "${OUT:-}" ]]; then
    dest="$OUT/generative-128"
    mkdir -p "$dest/checkpoints" "$dest/samples"
    cp "$RUN/checkpoints/latest.safetensors" "$dest/checkpoints/"
    cp "$RUN/config.json" "$RUN/log.jsonl" "$dest/"
    last_grid=$(ls "$RUN"/samples/step_*.png 2>/dev/null | tail -n 1 || true)
    [[ -n "$last_grid" ]] && cp "$last_grid" "$dest/samples/"
    echo "run folder for --resume: $dest"
else
    echo "run folder for --resume: $RUN"
fi
