#!/usr/bin/env bash
# Training throughput on this CPU: mpitrain (eager ATen ops, fused kernels, fused in bf16) beside the same Llama in PyTorch eager + gloo DDP, both models, np 1 and 2.
# usage: tests/bench/train_throughput.sh [STEPS] [REPEATS]    (after launcher/setup.sh)
#   Runs alternate (peer, eager, fused, bf16, for each model and rank count) REPEATS times; the
#   table gives medians of tokens/s, the ratios, and rank 0's peak resident memory. Then the
#   profile of the anchor model's step at np 2 (rank 0) with the eager ops and the fused kernels.
set -euo pipefail
cd "$(dirname "$0")/../.."
steps=${1:-30}
repeats=${2:-3}
python=/usr/bin/python3  # Debian's interpreter, which python3-torch installs into
if ! $python -c 'import torch' 2>/dev/null; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends python3-torch
fi
flags=(--oversubscribe); [ "$(id -u)" -eq 0 ] && flags+=(--allow-run-as-root)
scratch=$(mktemp -d); trap 'rm -rf "$scratch"' EXIT
build/bin/mpitrain prepare-data configs/data/sotu "$scratch/data.h5" >/dev/null  # once, outside the timings
models=(configs/tiny-llama.json tests/bench/anchor-llama.json)

echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(nproc) cores"
echo "flags: $(grep -m1 '^flags' /proc/cpuinfo | tr ' ' '\n' | grep -E '^(avx2|fma|avx512f|avx512_bf16|amx_bf16|amx_tile)$' | tr '\n' ' ')"

# mpitrain MODEL NP NAME ARGS...: one run; appends "model np name tokens/s peak_bytes" to results.
mpitrain() {
  local model=$1 np=$2 name=$3; shift 3
  local out="$scratch/run"; rm -rf "$out"
  mpirun "${flags[@]}" -np "$np" build/bin/mpitrain train "$model" --output_dir="$out" --train_file="$scratch/data.h5" \
    --max_steps="$steps" --eval_strategy=no --save_strategy=no --logging_steps="$steps" --load_best_model_at_end=false \
    --progress_bar=false "$@" >/dev/null
  $python -c 'import json,sys; s=json.loads([l for l in open(sys.argv[1]) if "train_tokens_per_second" in l][-1])
print(sys.argv[2], sys.argv[3], sys.argv[4], s["train_tokens_per_second"], s["memory_peak_resident_bytes"])' \
    "$out/metrics.jsonl" "$(basename "$model" .json)" "$np" "$name" >>"$scratch/results"
}
peer() {
  local model=$1 np=$2 line
  line=$(mpirun "${flags[@]}" -np "$np" $python tests/bench/torch_llama_ddp.py "$model" "$steps" 2>/dev/null | tail -1)
  $python -c 'import json,sys; print(sys.argv[2], sys.argv[3], "peer", json.loads(sys.argv[1])["tokens_per_second"], 0)' \
    "$line" "$(basename "$model" .json)" "$np" >>"$scratch/results"
}

for _ in $(seq "$repeats"); do
  for model in "${models[@]}"; do
    for np in 1 2; do
      peer "$model" "$np"
      mpitrain "$model" "$np" eager --cpu_fused_kernels=false
      mpitrain "$model" "$np" fused
      mpitrain "$model" "$np" bf16 --bf16=true
    done
  done
done

$python - "$scratch/results" <<'EOF'
import collections, statistics, sys
runs = collections.defaultdict(list)
for line in open(sys.argv[1]):
    model, np, name, tps, peak = line.split()
    runs[(model, np, name)].append((float(tps), int(peak)))
def median(key, i=0):
    return statistics.median(v[i] for v in runs[key])
print(f"\n{'model':<14}{'ranks':>6}{'peer':>9}{'eager':>9}{'fused':>9}{'fused/peer':>11}{'bf16':>9}"
      f"{'bf16/fused':>11}{'MB eager':>10}{'MB fused':>10}{'MB bf16':>9}   (tokens/s, median of {len(runs[next(iter(runs))])})")
for model, np in sorted({(m, n) for m, n, _ in runs}):
    k = lambda name: (model, np, name)
    mb = lambda name: median(k(name), 1) / 2**20
    print(f"{model:<14}{np:>6}{median(k('peer')):>9.0f}{median(k('eager')):>9.0f}{median(k('fused')):>9.0f}"
          f"{median(k('fused')) / median(k('peer')):>11.2f}{median(k('bf16')):>9.0f}"
          f"{median(k('bf16')) / median(k('fused')):>11.2f}{mb('eager'):>10.0f}{mb('fused'):>10.0f}{mb('bf16'):>9.0f}")
EOF

for kernels in false true; do
  out="$scratch/profile"; rm -rf "$out"
  mpirun "${flags[@]}" -np 2 build/bin/mpitrain train tests/bench/anchor-llama.json --output_dir="$out" \
    --train_file="$scratch/data.h5" --max_steps=8 --profile_steps=5 --cpu_fused_kernels=$kernels --eval_strategy=no \
    --save_strategy=no --load_best_model_at_end=false --progress_bar=false >/dev/null
  echo; echo "profile, anchor-llama np 2, rank 0, cpu_fused_kernels=$kernels (top 12 by own time):"
  head -14 "$out/profile.txt"
done
