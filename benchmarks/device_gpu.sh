#!/usr/bin/env bash
# The GPU checks and benchmarks in one pass, for a machine with one CUDA GPU that is lent for
# minutes (so nothing runs twice, and a broken CUDA path stops it within a minute):
#   1. smoke: TIGER and PIT (warm-up and co-evolution) trained and evaluated on the synthetic data
#      with --device cuda; if either fails, stop here;
#   2. beside it, benchmarks/step_cost.py on beauty on the GPU (a PIT step against a TIGER step);
#   3. benchmarks/gpu.yaml on beauty: tiger/cf-sids and pit/cf-sids, seeds 0-2, all six side by
#      side on the one GPU, MINUTES of wall-clock training each (results: benchmarks/results/gpu/);
#   4. benchmarks/decode_speed.py on seed 0 of each, alone on the GPU.
# Usage: benchmarks/device_gpu.sh OUT_DIR   (on a machine without network: benchmarks/device_carry.sh)
# Environment: DEVICE (default cuda; cpu rehearses the script on a machine without one), SEEDS
# (default "0 1 2"), DEADLINE (seconds: the decoding step is skipped when under 100 s of it are
# left, so that a lease's limit does not cut the script before its caller collects), BEAUTY (the dataset's folder, default ../shared/data/amazon2014/beauty), MINUTES (training budget per run, default 4), PITREC (how to call the CLI, default
# `pitrec`), EMBED_NPY (content embeddings as .npy, for a machine without the MiniLM package: the
# vectors the sentence-transformers stage cached, so the SID cache keys and recipes are unchanged).
set -uo pipefail
OUT=${1:?usage: benchmarks/device_gpu.sh OUT_DIR}
MINUTES=${MINUTES:-4}
DEVICE=${DEVICE:-cuda}
SEEDS=${SEEDS:-0 1 2}
BEAUTY=${BEAUTY:-../shared/data/amazon2014/beauty}
DEADLINE=${DEADLINE:-0}
PITREC=${PITREC:-pitrec}
PY=${PYTHON:-python3}
mkdir -p "$OUT/logs"
EMBED=()
if [ -n "${EMBED_NPY:-}" ]; then EMBED=(--embed.encoder=npy "--embed.npy_path=$EMBED_NPY"); fi
BENCH_EMBED=("${EMBED[@]/#--/--overrides.}")
start=$(date +%s)
stamp() { echo "[$(( $(date +%s) - start ))s] $*"; }

stamp "GPU: $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1)"
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.is_available() and torch.cuda.get_device_name(0))" || exit 1

# 1-2. smoke on the synthetic data, step cost on beauty
smoke() {  # method, extra overrides...
  local method=$1; shift
  timeout 240 $PITREC train "$method" --device "$DEVICE" --out "$OUT/smoke-$method" --embed.encoder=tfidf \
    --run.progress=false "$@" >"$OUT/logs/smoke-$method.log" 2>&1
}
smoke tiger --train.epochs=2 & p1=$!
smoke pit --train.epochs=3 --pit.warmup_epochs=1 & p2=$!
timeout 300 $PY benchmarks/step_cost.py --data "$BEAUTY" --steps 40 --threads 2 --label "beauty-B4-$DEVICE" -- "--run.device=$DEVICE" \
  --tokenizer.collaborative_dim=64 "${EMBED[@]}" >"$OUT/logs/step_cost.log" 2>&1 & p3=$!
ok=1
for p in $p1 $p2; do wait $p || ok=0; done
for m in tiger pit; do stamp "smoke $m:"; tail -n 12 "$OUT/logs/smoke-$m.log"; done
if [ $ok = 0 ]; then stamp "a CUDA smoke run failed: stopping"; kill $p3 2>/dev/null; exit 1; fi
wait $p3; stamp "step cost (rc $?):"; grep -v "^\s*$" "$OUT/logs/step_cost.log" | tail -n 20

# 3. beauty, 3 seeds x 2 methods, side by side
pids=()
for method in tiger/cf-sids pit/cf-sids; do
  for seed in $SEEDS; do
    log="$OUT/logs/bench-${method/\//-}-seed$seed.log"
    timeout "$(awk "BEGIN { print int($MINUTES * 60 + 200) }")" $PITREC bench run benchmarks/gpu.yaml --method "$method" --dataset beauty \
      --datasets.beauty="$BEAUTY" \
      --seeds="[$seed]" --overrides.train.max_minutes="$MINUTES" \
      --overrides.run.device="$DEVICE" "${BENCH_EMBED[@]}" >"$log" 2>&1 &
    pids+=($!)
  done
done
for p in "${pids[@]}"; do wait "$p"; done
stamp "bench done"
for f in "$OUT"/logs/bench-*.log; do echo "== $f"; tr '\r' '\n' <"$f" | grep -v -e "s/epoch" -e "^\s*$" | tail -n 4; done
for f in runs/bench-gpu/beauty/*/seed*/bench.log; do echo "== $f"; tail -n 2 "$f"; done

# 4. decoding speed, alone on the GPU
for run in tiger-cf-sids pit-cf-sids; do
  dir=runs/bench-gpu/beauty/$run/seed0
  [ -f "$dir/test_metrics.json" ] || continue
  if [ "$DEADLINE" -gt 0 ] && [ $(( $(date +%s) - start + 100 )) -gt "$DEADLINE" ]; then stamp "no time left to time decoding"; break; fi
  timeout 120 $PY benchmarks/decode_speed.py "$dir" --device "$DEVICE" --threads 2 --label "beauty-$run-$DEVICE" \
    --no-explain >"$OUT/logs/decode-$run.log" 2>&1
  stamp "decode $run (rc $?): $(tail -n 1 "$OUT/logs/decode-$run.log")"
done
stamp "end"
