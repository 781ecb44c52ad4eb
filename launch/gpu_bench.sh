#!/usr/bin/env bash
# Full-size benchmarks on one NVIDIA GPU (issues 9 and 22): wan2_1_1_3b at 480x832, bf16.
#
#   bash launch/gpu_bench.sh [--parts LIST] [RESULTS_DIR]  # default: $OUT if set, else docs/results
#   bash launch/gpu_bench.sh --tiny RESULTS_DIR            # the same steps on this CPU, tiny configs
#
# Made to fit one device call of at most 10 minutes on an H100: every step has a time
# limit, all of them together at most GPU_BENCH_BUDGET seconds (default 540; a step that
# would not fit is skipped and counted as failed). Writes benchmark records
# (realcam_jax/bench/record.py), each with the cost model's prediction for that config.
# Parts (--parts, comma-separated; default options,stream):
#   gpu_stream_options.json  `realcam bench` of the streaming student with the chosen
#                            options (STUDENT_OPTIONS, default: 3 denoising steps, plus
#                            student.source_once=True) at
#                            the training length (81 frames, 7 chunks): steady frames/s,
#                            first chunk; and the teacher and the prefix baseline on the
#                            same 81 frames, 50 steps, CFG 5, extrapolated from a measured
#                            guided step + the streaming VAE's round trip of the video
#                            (--max-seconds 1e-9: always; their whole 50-step videos
#                            would take ~3 min each): the student / prefix speed ratio
#   gpu_stream.json          the student as configured (4 steps) on the same machine: the
#                            baseline the options are compared with
# and, from issue 9 (about 4 more minutes: --parts dit,train_memory in a second call)
#   gpu_dit.json             DiT forward at 42 latent frames of 60x104 (65,520 tokens), MFU
#   gpu_train_memory.json    compile-time memory_analysis() of the teacher training step
# Then copy them to docs/results/ and run: python launch/make_benchmarks_doc.py
# Needs jax with CUDA (jax[cuda12] of the venv's jax version). Without --tiny, on a machine
# without an NVIDIA GPU visible to JAX it stops at once with status 2. A failed step does
# not stop the others; the exit status counts failed steps. The student's attention is
# cuDNN; if cuDNN refuses it (a fast failure, not a timeout) the step reruns with xla.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
TINY=0 PARTS=options,stream
while [ $# -gt 0 ]; do
  case "$1" in
    --tiny) TINY=1; shift ;;
    --parts) PARTS=${2:?--parts needs a list}; shift 2 ;;
    -*) echo "error: unknown option $1 (expected --tiny, --parts LIST, RESULTS_DIR)" >&2
        exit 2 ;;
    *) break ;;
  esac
done
for part in ${PARTS//,/ }; do
  case "$part" in
    options|stream) ;;
    dit|train_memory) [ "$TINY" = 0 ] || { echo "error: --tiny runs options,stream only" >&2
                                           exit 2; } ;;
    *) echo "error: unknown part $part (expected options, stream, dit, train_memory)" >&2
       exit 2 ;;
  esac
done
want() { [[ ",$PARTS," == *",$1,"* ]]; }
RESULTS=${1:-${OUT:-docs/results}}
BUDGET=${GPU_BENCH_BUDGET:-540}
WORK=$(mktemp -d /tmp/realcam_gpu_bench.XXXXXX)

if [ "$TINY" = 1 ]; then     # every piece on this CPU at tiny size (tests/launch/test_gpu_bench.py)
  export JAX_PLATFORMS=cpu
  STUDENT=student:tiny SIZE=16x16
  DTYPE=()
  ATTN=(dot_product)
  LOG=$RESULTS/gpu_bench.log
else
  if ! nvidia-smi -L >/dev/null 2>&1; then
    echo "error: no NVIDIA GPU here (nvidia-smi -L failed); launch/gpu_bench.sh needs one" >&2
    exit 2
  fi
  "$PY" -c 'from realcam_jax.bench import record; record.require_backend("gpu")' || exit 2
  STUDENT=student:wan2_1_1_3b SIZE=480x832
  DTYPE=(--config.model.dtype=bfloat16 --config.model.param_dtype=bfloat16)
  ATTN=(cudnn xla)
  LOG=${OUT:-/tmp}/gpu_bench.log
fi
mkdir -p "$RESULTS" "$(dirname "$LOG")"
[ "$TINY" = 1 ] || nvidia-smi -L | tee -a "$LOG"
if [ -z "${STUDENT_OPTIONS+x}" ]; then   # the chosen options (docs/benchmarks.md, cost model)
  STUDENT_OPTIONS="--config.student.timesteps=(1000.0,666.667,333.333) --config.student.source_once=True"
fi
read -r -a OPTIONS <<< "$STUDENT_OPTIONS"
failed=0

step() {  # step NAME SECONDS CMD... : runs CMD under a time limit within the budget
  local name=$1 limit=$2; shift 2
  local left=$((BUDGET - SECONDS))
  if [ "$left" -lt 30 ]; then
    echo "== $name: skipped, ${left}s of the ${BUDGET}s budget left" | tee -a "$LOG"
    return 125
  fi
  [ "$limit" -le "$left" ] || limit=$left
  local t0=$SECONDS
  echo "== $name (limit ${limit}s): $*" | tee -a "$LOG"
  timeout "$limit" "$@" 2>&1 | tee -a "$LOG"
  local rc=${PIPESTATUS[0]}
  echo "== $name: exit $rc after $((SECONDS - t0)) s" | tee -a "$LOG"
  return "$rc"
}

bench() {  # bench NAME LIMIT RECORD ARGS... : `realcam bench`, cuDNN first, then xla
  local name=$1 limit=$2 rec=$3; shift 3
  local impl rc=1
  for impl in "${ATTN[@]}"; do
    step "$name ($impl)" "$limit" "$PY" -m realcam_jax.cli bench --config "$STUDENT" \
      --size "$SIZE" --note "" --out "$WORK/$name" --results "$RESULTS/$rec" \
      "${DTYPE[@]}" --config.model.attention_impl="$impl" "$@"
    rc=$?
    [ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] && [ "$rc" -ne 125 ] || break   # refused: next impl
  done
  return "$rc"
}

OFFLINE=(--systems student_window,teacher,prefix --lengths 1 --offline-lengths 1
         --max-seconds 1e-9 --offline-vae chunks)
[ "$TINY" = 1 ] || OFFLINE+=(--config.teacher.sampler.steps=50 --config.teacher.sampler.cfg_scale=5.0)
if want options; then
  bench options 330 gpu_stream_options.json "${OFFLINE[@]}" "${OPTIONS[@]}" || failed=$((failed + 1))
fi
if want stream; then
  bench stream 190 gpu_stream.json --systems student_window --lengths 1 || failed=$((failed + 1))
fi
if want dit; then
  step dit 150 "$PY" launch/bench_dit.py --config configs/dit.py:wan2_1_1_3b "${DTYPE[@]}" \
    --attention best --iters 5 --warmup 1 --results "$RESULTS/gpu_dit.json" || failed=$((failed + 1))
fi
if want train_memory; then
  step train_memory 120 "$PY" launch/bench_train_memory.py \
    --config configs/teacher.py:wan2_1_1_3b --remats full --attention best \
    --results "$RESULTS/gpu_train_memory.json" || failed=$((failed + 1))
fi

echo "records in $RESULTS; log $LOG; $failed step(s) failed" | tee -a "$LOG"
exit "$failed"
