#!/usr/bin/env bash
# ZeRO at a fixed world size: step time of zero1/2/3 against plain DP in the same run, with per-rank memory and collective bytes against ZeRO's formulas.
# usage: tests/bench/zero_step_time.sh [STEPS] [RUNS] [WORLD] [CONFIG]    (after launcher/setup.sh)
set -euo pipefail
cd "$(dirname "$0")/../.."
steps=${1:-30}
runs=${2:-3}
world=${3:-4}
config=${4:-configs/tiny-llama.json}

global_batch=16
stages="none zero1 zero2 zero3"
source tests/bench/common.sh

declare -A step_ms params grads optimizer traffic
# Runs alternate the stages (none zero1 zero2 zero3, none ...) so drift on this shared
# machine hits them alike.
for run in $(seq "$runs"); do
  for stage in $stages; do
    out="$scratch/$stage-$run"
    OMP_NUM_THREADS=1 mpirun "${flags[@]}" -np "$world" build/bin/mpitrain train "$config" --output_dir="$out" \
      --train_file="$scratch/data.h5" --sharding="$stage" --per_device_train_batch_size=$((global_batch / world)) \
      --max_steps="$steps" --eval_strategy=no --save_strategy=no --logging_steps="$steps" \
      --load_best_model_at_end=false --progress_bar=false >/dev/null
    summary=$(grep train_runtime "$out/metrics.jsonl" | tail -1)
    step_ms[$stage]+=" $(python3 -c "print(1000 / $(field "$summary" train_steps_per_second))")"
    params[$stage]=$(field "$summary" memory_parameter_bytes)
    grads[$stage]=$(field "$summary" memory_gradient_bytes)
    optimizer[$stage]=$(field "$summary" memory_optimizer_bytes)
    traffic[$stage]=$(field "$summary" comm_bytes_per_rank_per_step)
  done
done

p=$(python3 -c "print(${params[none]} / 4)")  # float32 parameters of the whole (tp 1) model
echo "# world $world, global batch $global_batch, $steps steps, median of $runs runs, P = $p parameters (2 cores: ranks are oversubscribed)"
echo "# per-rank bytes held between steps, in units of P (ZeRO, fp32 Adam: DP 4+4+8, zero1 4+4+4/N+12/N, zero2 4+4/N+12/N, zero3 16/N)"
printf "%-6s %10s %8s %8s %8s %8s %8s %10s %10s\n" stage "step ms" "vs DP" params grads optim total "comm/step" "vs DP"
base=$(median ${step_ms[none]})
for stage in $stages; do
  t=$(median ${step_ms[$stage]})
  python3 - "$stage" "$t" "$base" "$p" "${params[$stage]}" "${grads[$stage]}" "${optimizer[$stage]}" \
    "${traffic[$stage]}" "${traffic[none]}" <<'PY'
import sys
stage, t, base, p, params, grads, optim, traffic, dp_traffic = sys.argv[1], *map(float, sys.argv[2:])
print(f"{stage:<6} {t:10.1f} {t / base:8.2f} {params / p:8.2f} {grads / p:8.2f} {optim / p:8.2f} "
      f"{(params + grads + optim) / p:8.2f} {traffic / 1e6:9.2f}M {traffic / dp_traffic:10.2f}")
PY
done
