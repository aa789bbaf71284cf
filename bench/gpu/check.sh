#!/usr/bin/env bash
# Every GPU check of tunesmith in one call, for a CUDA machine with no network (prepare it with
# bench/gpu/wheels.sh and make_models.py tokenizer; see bench/gpu/README.md):
#   1. the CUDA tests (pytest -m gpu: the variable-length attention against masked SDPA, no host sync;
#      fused LoRA layers against peft's, with fewer kernels; compiled layers with the flash kernel
#      traced into them; a training step that waits for the GPU once);
#   2. the command line offline on CUDA with no environment variable set: train, evaluate and
#      generate on the SmolLM2-135M shape (random weights: it checks that they run, not the scores);
#   3. the reads from the GPU per optimizer step of both sides (bench/train_speed.py --host-reads);
#   4. the benchmark against the plain recipe for both shapes (run.sh), profiled (PROFILE=1).
#
#   bash bench/gpu/check.sh [RESULTS_DIR]        # default .gpu/results; each part's log goes there
#
# PARTS (default "cuda-tests cli-offline host-reads benchmark") picks parts, and SHAPES the benchmark's shapes,
# to split the check over calls that each fit a time limit.
#
# A part that fails is reported and the next one still runs; the exit status counts the failures.
set -uo pipefail
cd "$(dirname "$0")/../.."
RESULTS=${1:-.gpu/results}
mkdir -p "$RESULTS"
# shellcheck source=bench/gpu/env.sh
source bench/gpu/env.sh
failed=0
part() {  # part NAME COMMAND...: run, keep the log, say how it ended
    local name=$1
    shift
    echo "== $name"
    if "$@" >"$RESULTS/$name.log" 2>&1; then echo "   ok"; else echo "!! $name failed (exit $?):"; failed=$((failed + 1)); fi
    tail -n 15 "$RESULTS/$name.log" | sed 's/^/   /'
}
python3 bench/gpu/make_models.py build --tokenizer .gpu/tokenizer --out .gpu/models --shape smollm2-135m
wanted() { [[ " ${PARTS:-cuda-tests cli-offline host-reads benchmark} " == *" $1 "* ]]; }
wanted cuda-tests && part cuda-tests env TUNESMITH_TEST_TOKENIZER=.gpu/tokenizer python3 -m pytest -q -m gpu \
    -p no:cacheprovider tests/training/test_varlen_attention.py tests/training/test_fused_lora.py \
    tests/training/test_compiled_layers.py tests/training/test_host_counts.py
cli() {  # the user's commands; USE_HUB_KERNELS unset: tunesmith decides about hub kernels itself
    local run=$RESULTS/cli-run
    env -u USE_HUB_KERNELS python3 -m tunesmith train model.name_or_path=.gpu/models/smollm2-135m data=arith \
        train.max_steps=20 eval.max_samples=16 output_dir="$run" overwrite=true &&
        env -u USE_HUB_KERNELS python3 -m tunesmith eval "$run" --data arith --samples 16 &&
        env -u USE_HUB_KERNELS python3 -m tunesmith generate "$run" "Mia has 23 stickers and gets 15 more. How many now?" &&
        grep -o '"device": "[^"]*"\|"attention": "[^"]*"\|"lora_kernel": "[^"]*"\|"compiled_layers": [0-9]*' "$run/run.json" | sort -u
}
wanted cli-offline && part cli-offline cli
# Reads from the GPU per optimizer step, both sides, 135M shape, by the line that asked (warm-up steps 3-5).
wanted host-reads && part host-reads python3 bench/train_speed.py --device cuda --model .gpu/models/smollm2-135m \
    --batch-size 32 --steps 6 --warmup 5 --repeats 1 --timeout 300 --variant tunesmith --host-reads "$RESULTS/host-reads"
wanted benchmark && part benchmark env PROFILE=1 bash bench/gpu/run.sh "$RESULTS"
echo "== $failed part(s) failed; logs, results and profiles in $RESULTS"
exit "$failed"
