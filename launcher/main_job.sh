#!/usr/bin/env bash
# The main job: set up, train the tiny Llama on 2 ranks on the shipped corpus, sample from the saved model.
set -euo pipefail
cd "$(dirname "$0")/.."
launcher/setup.sh mpitrain  # the binary alone: the tests are not built for the main job

flags=(--oversubscribe)
[ "$(id -u)" -eq 0 ] && flags+=(--allow-run-as-root)
# Run again, it trains again: the earlier run's checkpoints go, unless the options say otherwise.
overwrite=(--overwrite_output_dir=true)
for arg in "$@"; do case "$arg" in --overwrite_output_dir=*|--training.overwrite_output_dir=*) overwrite=();; esac; done
mpirun "${flags[@]}" -np "${NP:-2}" build/bin/mpitrain train configs/tiny-llama.json "${overwrite[@]}" "$@"

output=$(python3 -c 'import json,sys; print(json.load(open("configs/tiny-llama.json"))["training"]["output_dir"])' 2>/dev/null || echo runs/tiny-llama)
for arg in "$@"; do case "$arg" in --output_dir=*|--training.output_dir=*) output=${arg#*=};; esac; done
echo
echo "== saved Hugging Face directory: $output"
build/bin/mpitrain inspect "$output" | tail -2
echo
echo "== a sample from it"
build/bin/mpitrain generate "$output" --prompt "The state of our union is" --max_new_tokens 300 --seed 1
