#!/usr/bin/env bash
# async_save: how long training waits per checkpoint with a synchronous save and with async_save (its writer at low priority and at training's), same model and run, and the step time of each.
# usage: tests/bench/async_save.sh [HIDDEN] [LAYERS] [RUNS] [WORLD]    (after launcher/setup.sh)
set -euo pipefail
cd "$(dirname "$0")/../.."
hidden=${1:-512}
layers=${2:-8}
runs=${3:-3}
world=${4:-2}

source tests/bench/common.sh
# The tiny-llama run with a larger model, so a checkpoint (weights + 2 moments) is hundreds of MB.
larger_llama "$hidden" "$layers" "$scratch/config.json"

declare -A blocked runtime during
steps=8
for run in $(seq "$runs"); do
  for mode in sync async async_normal; do  # alternated, so drift on this shared machine hits all alike
    out="$scratch/$mode-$run"
    async=true; low=true
    [ "$mode" = sync ] && async=false
    [ "$mode" = async_normal ] && low=false
    OMP_NUM_THREADS=1 mpirun "${flags[@]}" -np "$world" build/bin/mpitrain train "$scratch/config.json" \
      --output_dir="$out" --train_file="$scratch/data.h5" --max_steps=$steps --save_strategy=steps --save_steps=2 \
      --save_total_limit=1 --async_save=$async --async_save_low_priority=$low --per_device_train_batch_size=4 \
      --eval_strategy=no --logging_steps=1 --load_best_model_at_end=false --progress_bar=false >/dev/null
    summary=$(grep train_runtime "$out/metrics.jsonl" | tail -1)
    saves=$(field "$summary" checkpoints_saved)
    blocked[$mode]+=" $(python3 -c "print($(field "$summary" checkpoint_blocking_seconds) / $saves)")"
    runtime[$mode]+=" $(python3 -c "print($(field "$summary" train_runtime) / $steps)")"
    # Steps 3, 5, 7 run while the checkpoint of the step before is written (async_save).
    during[$mode]+=" $(python3 -c 'import json,statistics,sys
rows=[json.loads(l) for l in open(sys.argv[1])]
print(statistics.median(r["tokens_per_second"] for r in rows if r.get("step",0)%2==1 and r.get("step",0)>1 and "loss" in r))' "$out/metrics.jsonl")"
    size=$(du -sb "$out"/checkpoint-* | tail -1 | cut -f1)
    rm -rf "$out"
  done
done
sync_block=$(median ${blocked[sync]}); async_block=$(median ${blocked[async]})
echo "# hidden $hidden, $layers layers, checkpoint $(python3 -c "print(f'{$size/1e6:.0f}')") MB, $world ranks, $steps steps saving every 2, median of $runs runs"
printf "%-34s %16s %12s %18s\n" save "blocked s/save" "s/step" "tok/s after a save"
printf "%-34s %16.3f %12.3f %18.1f\n" synchronous "$sync_block" "$(median ${runtime[sync]})" "$(median ${during[sync]})"
printf "%-34s %16.3f %12.3f %18.1f\n" "async_save (writer at low priority)" "$async_block" "$(median ${runtime[async]})" "$(median ${during[async]})"
printf "%-34s %16.3f %12.3f %18.1f\n" "async_save_low_priority=false" "$(median ${blocked[async_normal]})" "$(median ${runtime[async_normal]})" "$(median ${during[async_normal]})"
echo "async blocking / synchronous blocking: $(python3 -c "print(f'{$async_block/$sync_block:.3f}')")"
echo "step time, low priority / normal priority writer: $(python3 -c "print(f'{$(median ${runtime[async]})/$(median ${runtime[async_normal]}):.3f}')")"
echo "tokens/s while the writer writes, low / normal priority: $(python3 -c "print(f'{$(median ${during[async]})/$(median ${during[async_normal]}):.3f}')")"
