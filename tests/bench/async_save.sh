#!/usr/bin/env bash
# async_save: how long training waits per checkpoint with a synchronous save and with async_save, same model and run, and the total runtime of each.
# usage: tests/bench/async_save.sh [HIDDEN] [LAYERS] [RUNS] [WORLD]    (after launcher/setup.sh)
set -euo pipefail
cd "$(dirname "$0")/../.."
hidden=${1:-512}
layers=${2:-8}
runs=${3:-3}
world=${4:-2}

source tests/bench/common.sh
# The tiny-llama run with a larger model, so a checkpoint (weights + 2 moments) is hundreds of MB.
python3 - "$hidden" "$layers" "$scratch/config.json" <<'PY'
import json, sys
hidden, layers, path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
config = json.load(open("configs/tiny-llama.json"))
config["model"]["config"].update(hidden_size=hidden, num_hidden_layers=layers, intermediate_size=hidden * 11 // 4,
                                 num_attention_heads=hidden // 64, num_key_value_heads=hidden // 128)
json.dump(config, open(path, "w"))
PY

declare -A blocked runtime
steps=8
for run in $(seq "$runs"); do
  for async in false true; do  # alternated, so drift on this shared machine hits both alike
    out="$scratch/$async-$run"
    OMP_NUM_THREADS=1 mpirun "${flags[@]}" -np "$world" build/bin/mpitrain train "$scratch/config.json" \
      --output_dir="$out" --train_file="$scratch/data.h5" --max_steps=$steps --save_strategy=steps --save_steps=2 \
      --save_total_limit=1 --async_save=$async --per_device_train_batch_size=4 --eval_strategy=no \
      --logging_steps=$steps --load_best_model_at_end=false --progress_bar=false >/dev/null
    summary=$(grep train_runtime "$out/metrics.jsonl" | tail -1)
    saves=$(field "$summary" checkpoints_saved)
    blocked[$async]+=" $(python3 -c "print($(field "$summary" checkpoint_blocking_seconds) / $saves)")"
    runtime[$async]+=" $(field "$summary" train_runtime)"
    size=$(du -sb "$out"/checkpoint-* | tail -1 | cut -f1)
    rm -rf "$out"
  done
done
sync_block=$(median ${blocked[false]}); async_block=$(median ${blocked[true]})
echo "# hidden $hidden, $layers layers, checkpoint $(python3 -c "print(f'{$size/1e6:.0f}')") MB, $world ranks, $steps steps saving every 2, median of $runs runs"
printf "%-12s %18s %14s\n" save "blocked s/save" "runtime s"
printf "%-12s %18.3f %14.2f\n" synchronous "$sync_block" "$(median ${runtime[false]})"
printf "%-12s %18.3f %14.2f\n" async_save "$async_block" "$(median ${runtime[true]})"
echo "async blocking / synchronous blocking: $(python3 -c "print(f'{$async_block/$sync_block:.3f}')")"
