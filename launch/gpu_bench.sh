#!/usr/bin/env bash
# Full-size benchmarks on one NVIDIA GPU (issue 9): wan2_1_1_3b at 480x832, bf16.
#
#   bash launch/gpu_bench.sh [RESULTS_DIR]     # default: $OUT if set, else docs/results
#
# Writes three benchmark records (realcam_jax/bench/record.py), about 3 minutes on one H100
# (each step has a time limit; at most 8 minutes, plus 2.5 if cuDNN refuses the student's
# attention and it falls back to xla):
#   gpu_dit.json           DiT forward at 42 latent frames of 60x104 (65,520 tokens):
#                          compile, forward, tokens/s, model FLOP/s and MFU (vs 989 TFLOP/s
#                          dense bf16 for H100 SXM / H200), best attention kernel that
#                          compiles (cudnn, then xla, then dot_product)
#   gpu_stream.json        `realcam bench` of the streaming student (rolling window, 1x and 3x
#                          the training length): per-chunk latency and generated frames/s
#   gpu_train_memory.json  compile-time memory_analysis() of the teacher training step
#                          (batch 1, remat full, AdamW) on this device
# Then copy them to docs/results/ and run: python launch/make_benchmarks_doc.py
# Needs jax with CUDA (jax[cuda12] of the venv's jax version). On a machine without an
# NVIDIA GPU visible to JAX it stops at once with status 2. Each step has its own time
# limit; a failed step does not stop the others; the exit status counts failed steps.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
RESULTS=${1:-${OUT:-docs/results}}
LOG=${OUT:-/tmp}/gpu_bench.log
WORK=$(mktemp -d /tmp/realcam_gpu_bench.XXXXXX)
BF16=(--config.model.dtype=bfloat16 --config.model.param_dtype=bfloat16)

if ! nvidia-smi -L >/dev/null 2>&1; then
  echo "error: no NVIDIA GPU here (nvidia-smi -L failed); launch/gpu_bench.sh needs one" >&2
  exit 2
fi
"$PY" -c 'from realcam_jax.bench import record; record.require_backend("gpu")' || exit 2
mkdir -p "$RESULTS" "$(dirname "$LOG")"
nvidia-smi -L | tee -a "$LOG"
failed=0

step() {  # step NAME SECONDS CMD... : runs CMD under a time limit, logs, counts failures
  local name=$1 limit=$2; shift 2
  local t0=$SECONDS
  echo "== $name (limit ${limit}s): $*" | tee -a "$LOG"
  timeout "$limit" "$@" 2>&1 | tee -a "$LOG"
  local rc=${PIPESTATUS[0]}
  echo "== $name: exit $rc after $((SECONDS - t0)) s" | tee -a "$LOG"
  return "$rc"
}

step dit 150 "$PY" launch/bench_dit.py --config configs/dit.py:wan2_1_1_3b "${BF16[@]}" \
  --attention best --iters 5 --warmup 1 --results "$RESULTS/gpu_dit.json" || failed=$((failed + 1))

step train_memory 120 "$PY" launch/bench_train_memory.py --config configs/teacher.py:wan2_1_1_3b \
  --remats full --attention best --results "$RESULTS/gpu_train_memory.json" \
  || failed=$((failed + 1))

stream() {  # stream ATTENTION LIMIT
  step "stream ($1)" "$2" "$PY" -m realcam_jax.cli bench --config student:wan2_1_1_3b \
    --size 480x832 --systems student_window --lengths 1,3 --note "" --out "$WORK/bench" \
    --results "$RESULTS/gpu_stream.json" "${BF16[@]}" --config.model.attention_impl="$1"
}
stream cudnn 210
rc=$?
if [ "$rc" -ne 0 ] && [ "$rc" -ne 124 ]; then   # cuDNN refused the masked attention: xla
  stream xla 150 || failed=$((failed + 1))
elif [ "$rc" -ne 0 ]; then
  failed=$((failed + 1))
fi


echo "records in $RESULTS; log $LOG; $failed step(s) failed" | tee -a "$LOG"
exit "$failed"
