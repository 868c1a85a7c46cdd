#!/usr/bin/env bash
# The prepared GPU check (issue 13), one command of under 10 minutes on an H100:
#   1. benchmarks/step_profile.py at the recipe's final size (300^3 in a shrunk box, batch 4096):
#      the whole train step for each density lookup and compaction (and bfloat16, for the record),
#      then the step's parts; the fastest float32 variant is picked;
#   2. the official recipe with that choice: 30k steps at 800x800 (benchmarks/lego_gpu.py), stopped
#      early if the deadline needs it (--stop-after-minutes), then evaluated on the val views, with
#      its time-to-quality line (PSNR every 10 s of training on 4 val views).
#   3. (when COMPARE_ARGS is set) benchmarks/compare_models.py with those arguments; several
#      comparisons separated by ';' run in turn. Each model's figures land in
#      OUT_DIR/compare<i>/<model>[-<dtype>].json as soon as it is measured (so a call cut short,
#      by the deadline or by the device's limit, keeps them); put back as
#      RUNS/compare<i>/<model>[-<dtype>]/compare.json (RUNS defaults to runs/) they are not trained again.
# PRESETS="lego-fast lego" runs several recipes in turn (each gets what is left of the deadline);
# PRESETS="" runs none. PROFILE_ARGS="--no-parts --variants volume/on volume/on/bfloat16
# volume/on/float16" keeps the profile to the precision rows (and the NeRF / JaxNeRF+ rows,
# --nerf); PROFILE=0 skips it (the recipe then runs the defaults: volume lookup, compaction on).
# TRACE=1 also records the first variant's steps with JAX's profiler: OUT_DIR/step_trace.json.gz
# (perfetto) and OUT_DIR/step_trace.md, its kernels summed per step (benchmarks/trace_summary.py).
#
#   bash benchmarks/gpu_check.sh DATA_DIR OUT_DIR
#
# DATA_DIR: lego's train/, both transforms files and the val views r_0, r_4, ..., r_96
# (benchmarks/pack_lego.sh SRC DST makes it: ~53 MB, no network needed). OUT_DIR receives the
# log, the figures as JSON, the results.md rows and the full run's TensorBoard events.
# Python packages missing on the machine can sit as wheels in .whl/ (docs/gpu.md, the plan).
# Rehearse on a CPU at a small size:
#   PROFILE_ARGS="--downscale 8 --grid 64 --batch 512 --steps 3" STEPS=200 EVAL_RESERVE=60 \
#   LEGO_ARGS="--downscale 8 --final-voxels 2000000 --batch-size 1024" bash benchmarks/gpu_check.sh DATA OUT
set -uo pipefail
DATA=$(realpath "$1"); OUT=$(realpath -m "$2"); RUNS=${RUNS:-runs}
STEPS=${STEPS:-}; LEGO_ARGS=${LEGO_ARGS:-}; PROFILE_ARGS=${PROFILE_ARGS:-}; PRESETS=${PRESETS-lego}
PROFILE=${PROFILE:-1}; COMPARE_ARGS=${COMPARE_ARGS:-}; TRACE=${TRACE:-0}
DEADLINE=${DEADLINE:-570}  # seconds for everything (a device call may run 600)
EVAL_RESERVE=${EVAL_RESERVE:-90}  # seconds kept for loading, the last checkpoint and the eval
cd "$(dirname "$0")/.."
mkdir -p "$OUT"
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONUNBUFFERED=1
(command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader)
python3 -c "import jax, flax, optax, orbax.checkpoint as o; print('jax', jax.__version__, jax.devices(), 'flax', flax.__version__, 'optax', optax.__version__, 'orbax', o.__version__)" || exit 1
stage() {  # stage NAME LIMIT COMMAND...: run with what is left of the deadline, at most LIMIT
  local name=$1 limit=$2; shift 2
  local left=$((DEADLINE - SECONDS)); [ "$limit" -gt "$left" ] && limit=$left
  if [ "$limit" -lt 30 ]; then echo "$name: skipped, $left s left"; return 1; fi
  local t0=$SECONDS
  timeout "$limit" "$@"; local rc=$?
  echo "$name: exit $rc after $((SECONDS - t0)) s"; return $rc
}
# shellcheck disable=SC2086
TRACE_DIR=$(mktemp -d)  # the profiler's folders are too deep to come back from a device call
[ "$PROFILE" = 0 ] || stage profile 170 python3 benchmarks/step_profile.py --data "$DATA" --json "$OUT/profile.json" \
  $([ "$TRACE" = 1 ] && echo --trace "$TRACE_DIR") $PROFILE_ARGS
if compgen -G "$TRACE_DIR/plugins/profile/*/perfetto_trace.json.gz" >/dev/null; then
  cp "$(ls -d "$TRACE_DIR"/plugins/profile/*/perfetto_trace.json.gz | tail -1)" "$OUT/step_trace.json.gz"
  python3 benchmarks/trace_summary.py "$TRACE_DIR" --top 40 > "$OUT/step_trace.md"
  head -40 "$OUT/step_trace.md"
fi
read -r LOOKUP COMPACTION < <(python3 - "$OUT/profile.json" <<'PY'
import json, sys
try:
    print(*json.load(open(sys.argv[1]))["best"].split("/")[:2])
except (OSError, ValueError, KeyError, AttributeError):
    print("auto on")  # the defaults
PY
)
for PRESET in $PRESETS; do
  LEFT=$((DEADLINE - SECONDS))
  STOP=$(python3 -c "print(round(max($LEFT - $EVAL_RESERVE, 30) / 60, 2))")
  echo "$PRESET: density lookup $LOOKUP, compaction $COMPACTION; training stops after $STOP min at the latest"
  rm -rf "$RUNS/$PRESET"
  # shellcheck disable=SC2086
  stage "$PRESET" 600 python3 benchmarks/lego_gpu.py --data "$DATA" --preset "$PRESET" ${STEPS:+--steps "$STEPS"} \
    --run-dir "$RUNS/$PRESET" --density-lookup "$LOOKUP" --compaction "$COMPACTION" --stop-after-minutes "$STOP" \
    --json "$OUT/$PRESET.json" --results "$OUT/results_rows.md" $LEGO_ARGS
  cp "$RUNS/$PRESET"/tb/events.* "$OUT/tb_events_$PRESET" 2>/dev/null
  cp "$RUNS/$PRESET"/eval/quality.json "$OUT/quality_$PRESET.json" 2>/dev/null
done
I=0
IFS=';' read -ra COMPARES <<<"$COMPARE_ARGS"
for ARGS in "${COMPARES[@]}"; do
  I=$((I + 1))
  # shellcheck disable=SC2086
  stage "compare$I" 600 python3 benchmarks/compare_models.py --dataset-path "$DATA" --run-root "$RUNS/compare$I" \
    --results "$OUT/results_rows.md" --figures-dir "$OUT/compare$I" $ARGS
done
exit 0
