#!/usr/bin/env bash
# LoRA against full fine-tuning of the same model in the same run: step time, and per-rank parameter, gradient and optimizer bytes.
# usage: tests/bench/lora_vs_full.sh [STEPS] [RUNS] [WORLD] [CONFIG] [TARGETS] [R]    (after launcher/setup.sh)
set -euo pipefail
cd "$(dirname "$0")/../.."
steps=${1:-30}
runs=${2:-3}
world=${3:-2}
config=${4:-configs/tiny-llama.json}
targets=${5:-q_proj,v_proj}
rank=${6:-8}
source tests/bench/common.sh

declare -A step_ms params grads optimizer
# Runs alternate (full, lora, full, ...) so drift on this shared machine hits both alike.
for run in $(seq "$runs"); do
  for mode in full lora; do
    out="$scratch/$mode-$run"
    extra=()
    [ "$mode" = lora ] && extra=(--lora.target_modules="$targets" --lora.r="$rank" --lora.lora_alpha=$((2 * rank)))
    OMP_NUM_THREADS=1 mpirun "${flags[@]}" -np "$world" build/bin/mpitrain train "$config" --output_dir="$out" \
      --train_file="$scratch/data.h5" --max_steps="$steps" --eval_strategy=no --save_strategy=no \
      --logging_steps="$steps" --load_best_model_at_end=false --progress_bar=false "${extra[@]}" >/dev/null
    summary=$(grep train_runtime "$out/metrics.jsonl" | tail -1)
    step_ms[$mode]+=" $(python3 -c "print(1000 / $(field "$summary" train_steps_per_second))")"
    params[$mode]=$(field "$summary" memory_parameter_bytes)
    grads[$mode]=$(field "$summary" memory_gradient_bytes)
    optimizer[$mode]=$(field "$summary" memory_optimizer_bytes)
  done
done

echo "# $config, world $world, $steps steps, median of $runs alternated runs; LoRA r $rank on $targets"
printf "%-5s %10s %8s %14s %14s %14s\n" mode "step ms" "vs full" "params B" "grads B" "optimizer B"
base=$(median ${step_ms[full]})
for mode in full lora; do
  t=$(median ${step_ms[$mode]})
  python3 -c "import sys; m,t,b,p,g,o=sys.argv[1],*map(float,sys.argv[2:]); print(f'{m:<5} {t:10.1f} {t/b:8.2f} {p:14.0f} {g:14.0f} {o:14.0f}')" \
    "$mode" "$t" "$base" "${params[$mode]}" "${grads[$mode]}" "${optimizer[$mode]}"
done
python3 -c "import sys; g,o=map(float,sys.argv[1:]); print(f'# LoRA optimizer bytes = 2 x gradient bytes (AdamW moments of the adapters alone): {o / g:.2f}')" \
  "${grads[lora]}" "${optimizer[lora]}"
