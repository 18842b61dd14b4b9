#!/usr/bin/env bash
# Training throughput at np = 1, 2, 4: mpitrain beside the same Llama in PyTorch eager (gloo DDP), same run.
# usage: tests/bench/train_throughput.sh [STEPS] [CONFIG]    (after launcher/setup.sh)
set -euo pipefail
cd "$(dirname "$0")/../.."
steps=${1:-60}
config=${2:-configs/tiny-llama.json}
python=/usr/bin/python3  # Debian's interpreter, which python3-torch installs into
if ! $python -c 'import torch' 2>/dev/null; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends python3-torch
fi
flags=(--oversubscribe); [ "$(id -u)" -eq 0 ] && flags+=(--allow-run-as-root)
scratch=$(mktemp -d); trap 'rm -rf "$scratch"' EXIT
# The data is prepared once, outside the timings.
build/bin/mpitrain prepare-data configs/data/sotu "$scratch/data.h5" >/dev/null

printf "%-4s %14s %12s %14s %10s\n" ranks "mpitrain tok/s" "exposed comm" "pytorch tok/s" ratio
for np in 1 2 4; do
  out="$scratch/run$np"
  mpirun "${flags[@]}" -np "$np" build/bin/mpitrain train "$config" --output_dir="$out" --train_file="$scratch/data.h5" \
    --max_steps="$steps" --eval_strategy=no --save_strategy=no --logging_steps="$steps" --load_best_model_at_end=false \
    --progress_bar=false >/dev/null
  summary=$(grep train_tokens_per_second "$out/metrics.jsonl" | tail -1)
  ours=$($python -c 'import json,sys; print(json.loads(sys.argv[1])["train_tokens_per_second"])' "$summary")
  exposed=$($python -c 'import json,sys; print(json.loads(sys.argv[1])["exposed_comm_fraction"])' "$summary")
  peer=$(mpirun "${flags[@]}" -np "$np" $python tests/bench/torch_llama_ddp.py "$config" "$steps" 2>/dev/null | tail -1 |
         $python -c 'import json,sys; print(json.loads(sys.stdin.read())["tokens_per_second"])')
  printf "%-4s %14.0f %12.3f %14.0f %10.2f\n" "$np" "$ours" "$exposed" "$peer" "$($python -c "print($ours/$peer)")"
done
