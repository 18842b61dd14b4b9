#!/usr/bin/env bash
# Tensor parallelism at a fixed world size: tokens/s at tp = 1, 2, 4 and the tp all-reduces against raw MPI_Allreduce of the same bytes.
# usage: tests/bench/tp_throughput.sh [STEPS] [RUNS] [WORLD] [CONFIG]    (after launcher/setup.sh)
set -euo pipefail
cd "$(dirname "$0")/../.."
steps=${1:-30}
runs=${2:-3}
world=${3:-4}
config=${4:-configs/tiny-llama.json}

global_batch=16
tps=""
for t in 1 2 4; do if [ $((world % t)) -eq 0 ]; then tps+="$t "; fi; done
source tests/bench/common.sh

declare -A tokens bytes us
# Runs alternate tp sizes (1 2 4, 1 2 4, ...) so drift on this shared machine hits them alike.
for run in $(seq "$runs"); do
  for tp in $tps; do
    out="$scratch/tp$tp-$run"
    dp=$((world / tp))
    mpirun "${flags[@]}" -np "$world" build/bin/mpitrain train "$config" --output_dir="$out" --train_file="$scratch/data.h5" \
      --tensor_parallel_size="$tp" --per_device_train_batch_size=$((global_batch / dp)) --max_steps="$steps" \
      --eval_strategy=no --save_strategy=no --logging_steps="$steps" --load_best_model_at_end=false --progress_bar=false \
      >/dev/null
    summary=$(grep train_tokens_per_second "$out/metrics.jsonl" | tail -1)
    tokens[$tp]+=" $(field "$summary" train_tokens_per_second)"
    bytes[$tp]=$(field "$summary" tp_allreduce_mean_bytes)
    us[$tp]+=" $(field "$summary" tp_allreduce_mean_us)"
  done
done

echo "# world $world, global batch $global_batch, $steps steps, median of $runs runs (2 cores: ranks are oversubscribed)"
printf "%-4s %12s %14s %16s %16s %12s\n" tp "tokens/s" "vs tp 1" "tp msg bytes" "tp allreduce us" "raw MPI us"
base=$(median ${tokens[1]})
for tp in $tps; do
  t=$(median ${tokens[$tp]})
  raw="-"; mean="-"
  if [ "$tp" -gt 1 ]; then
    mean=$(median ${us[$tp]})
    b=$(python3 -c "print(int(float('${bytes[$tp]}')) // 4 * 4)")
    # The same message size on a group of the same size, alone (the training ranks also compute).
    raw=$(mpirun "${flags[@]}" -np "$tp" build/bin/mpitrain bench allreduce --min_bytes "$b" --max_bytes "$b" |
          awk '!/^#/ && NF > 2 {print $2; exit}')
  fi
  printf "%-4s %12.0f %14.2f %16s %16s %12s\n" "$tp" "$t" "$(python3 -c "print($t/$base)")" "${bytes[$tp]}" "$mean" "$raw"
done
