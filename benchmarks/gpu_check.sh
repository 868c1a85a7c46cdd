#!/usr/bin/env bash
# The prepared GPU check (issue 13), one command of under 10 minutes on an H100:
#   1. a short run of the lego recipe (3k steps, its schedule compressed) for a trained field;
#   2. train-step timings on that field at 300^3 and 128^3 for the factor and the volume density
#      lookup, dense and compacted (benchmarks/train_throughput.py); the fastest at 300^3, where
#      most of the recipe's steps run, is picked;
#   3. the official recipe with that choice: 30k steps at 800x800, timed, evaluated on val views
#      (benchmarks/lego_gpu.py), inside what is left of DEADLINE.
#
#   bash benchmarks/gpu_check.sh DATA_DIR OUT_DIR
#
# DATA_DIR: lego's train/, both transforms files and the val views r_0, r_4, ..., r_96
# (benchmarks/pack_lego.sh SRC DST makes it: ~53 MB, no network needed). OUT_DIR receives the
# log lines, the figures as JSON, the results.md rows and the full run's TensorBoard events.
# Python packages missing on the machine can sit as wheels in .whl/ (README, GPU section).
# Rehearse on a CPU at a small size:
#   SHORT_STEPS=60 STEPS=200 LEGO_ARGS="--downscale 8 --final-voxels 2000000 --batch-size 1024" \
#   TIMING_ARGS="--batch 1024 --steps 3 --grids 64" bash benchmarks/gpu_check.sh DATA OUT
set -uo pipefail
DATA=$(realpath "$1"); OUT=$(realpath -m "$2"); RUNS=${RUNS:-runs}
STEPS=${STEPS:-30000}; SHORT_STEPS=${SHORT_STEPS:-3000}; LEGO_ARGS=${LEGO_ARGS:-}
TIMING_ARGS=${TIMING_ARGS:-"--grids 300 128"}
DEADLINE=${DEADLINE:-580}  # seconds for everything (a device call may run 600)
cd "$(dirname "$0")/.."
mkdir -p "$OUT"
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONUNBUFFERED=1
(command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader)
python3 -c "import jax, flax, optax, orbax.checkpoint as o; print('jax', jax.__version__, jax.devices(), 'flax', flax.__version__, 'optax', optax.__version__, 'orbax', o.__version__)" || exit 1
rm -rf "$RUNS/lego_gpu_short" "$RUNS/lego_gpu"
stage() {  # stage NAME LIMIT COMMAND...: run with what is left of the deadline, at most LIMIT
  local name=$1 limit=$2; shift 2
  local left=$((DEADLINE - SECONDS)); [ "$limit" -gt "$left" ] && limit=$left
  if [ "$limit" -lt 30 ]; then echo "$name: skipped, $left s left"; return 1; fi
  local t0=$SECONDS
  timeout "$limit" "$@"; local rc=$?
  echo "$name: exit $rc after $((SECONDS - t0)) s"; return $rc
}
# shellcheck disable=SC2086
stage short 150 python3 benchmarks/lego_gpu.py --data "$DATA" --steps "$SHORT_STEPS" --run-dir "$RUNS/lego_gpu_short" \
  --no-eval --json "$OUT/short.json" $LEGO_ARGS
# shellcheck disable=SC2086
stage timings 120 python3 benchmarks/train_throughput.py --run-dir "$RUNS/lego_gpu_short" --dataset-path "$DATA" \
  --lookups factors volume --json "$OUT/throughput.json" --results "$OUT/results_rows.md" $TIMING_ARGS
read -r LOOKUP COMPACTION < <(python3 - "$OUT/throughput.json" <<'PY'
import json, sys
try:
    rows = json.load(open(sys.argv[1]))["rows"]
    top = max(r["grid"] for r in rows)
    best = min((r for r in rows if r["grid"] == top), key=lambda r: r["s_per_step"])
    print(best["lookup"], "on" if best["mask"] else "off")
except (OSError, ValueError, KeyError):
    print("auto auto")
PY
)
echo "full run: density lookup $LOOKUP, compaction $COMPACTION"
# shellcheck disable=SC2086
stage full 600 python3 benchmarks/lego_gpu.py --data "$DATA" --steps "$STEPS" --run-dir "$RUNS/lego_gpu" \
  --density-lookup "$LOOKUP" --compaction "$COMPACTION" --json "$OUT/lego_gpu.json" --results "$OUT/results_rows.md" $LEGO_ARGS
cp "$RUNS"/lego_gpu/tb/events.* "$OUT/tb_events" 2>/dev/null
exit 0
