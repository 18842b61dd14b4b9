#!/usr/bin/env bash
# The local checkpoint tier: how long training waits per local save against the step time, and a restart from the local tier against one from the persistent checkpoint of the same step, at each model size given.
# usage: tests/bench/local_tier.sh [RUNS] [WORLD] [HIDDEN ...]    (after launcher/setup.sh; 8 layers each)
set -euo pipefail
cd "$(dirname "$0")/../.."
runs=${1:-3}
world=${2:-2}
shift 2 || true
sizes=("$@"); [ ${#sizes[@]} -eq 0 ] && sizes=(256 512)

source tests/bench/common.sh
shm=$(mktemp -d /dev/shm/mpitrain-bench.XXXXXX); trap 'rm -rf "$scratch" "$shm"' EXIT
train() {  # train CONFIG OUT [overrides...]
  local config=$1 out=$2; shift 2
  OMP_NUM_THREADS=1 mpirun "${flags[@]}" -np "$world" build/bin/mpitrain train "$config" --output_dir="$out" \
    --train_file="$scratch/data.h5" --per_device_train_batch_size=4 --eval_strategy=no --logging_steps=1 \
    --load_best_model_at_end=false --progress_bar=false --local_save_dir="$shm" "$@"
}
seconds_after() {  # seconds_after TEXT PREFIX: the "in X s" figure of the first line starting with PREFIX
  python3 -c 'import re,sys
for line in sys.argv[1].splitlines():
    if line.startswith(sys.argv[2]):
        print(re.search(r" in ([0-9.]+) s", line).group(1)); break' "$1" "$2"
}

steps=8
echo "# $world ranks, 8 layers, median of $runs runs; waits: the median local save of $steps steps saving every 2; restarts: from step 4,"
echo "# the persistent checkpoint's files in the page cache (warm) and dropped from it (cold)"
printf "%-7s %9s %14s %9s %12s %9s %12s %7s %12s %7s\n" hidden "state" "waited s/save" "s/step" "waited/step" "local s" "warm s" ratio "cold s" ratio
for hidden in "${sizes[@]}"; do
  larger_llama "$hidden" 8 "$scratch/config-$hidden.json"
  declare -A waited=() step=() local_load=() persistent_load=() cold_load=()
  for run in $(seq "$runs"); do
    out="$scratch/wait-$hidden-$run"
    train "$scratch/config-$hidden.json" "$out" --max_steps=$steps --save_strategy=no --local_save_steps=2 >/dev/null
    summary=$(grep train_runtime "$out/metrics.jsonl" | tail -1)
    # Each local save's wait (rank 0's log); the first also touches the reused buffer's pages.
    waited[$run]=$(grep -ho "training waited [0-9.]* s ([0-9.]* [KMG]B of this rank's state copied" "$out"/logs/rank-0.log |
                   awk '{print $3}' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
    step[$run]=$(python3 -c "print($(field "$summary" train_runtime) / $steps)")
    state=$(grep -h "of this rank's state copied" "$out"/logs/rank-0.log | head -1 | sed 's/.*(\([0-9.]* [KMG]B\) of this.*/\1/')
    rm -rf "$out"
    # Killed once step 4 is saved both ways, then restarted from each tier (local first: it is
    # removed when that run ends, and the persistent restart then finds only checkpoint-4).
    out="$scratch/restart-$hidden-$run"
    MPITRAIN_CRASH_AT=local.committed train "$scratch/config-$hidden.json" "$out" --max_steps=4 --save_steps=4 \
      --local_save_steps=4 >/dev/null 2>&1 </dev/null || true
    log=$(train "$scratch/config-$hidden.json" "$out" --max_steps=4 --local_save_steps=4 --resume_from_checkpoint=auto 2>&1)
    local_load[$run]=$(seconds_after "$log" "resumed from the local checkpoint")
    log=$(train "$scratch/config-$hidden.json" "$out" --max_steps=4 --resume_from_checkpoint=auto 2>&1)
    persistent_load[$run]=$(seconds_after "$log" "resumed from $out/checkpoint-4")
    # Again with the checkpoint's files out of the page cache, as a restart long after the save finds them.
    rm -rf "$out/model.safetensors"
    evict "$out"
    log=$(train "$scratch/config-$hidden.json" "$out" --max_steps=4 --resume_from_checkpoint=auto 2>&1)
    cold_load[$run]=$(seconds_after "$log" "resumed from $out/checkpoint-4")
    rm -rf "$out"
  done
  w=$(median "${waited[@]}"); s=$(median "${step[@]}"); l=$(median "${local_load[@]}")
  p=$(median "${persistent_load[@]}"); c=$(median "${cold_load[@]}")
  printf "%-7s %9s %14.3f %9.3f %11.1f%% %9.3f %12.3f %6.1fx %12.3f %6.1fx\n" "$hidden" "$state" "$w" "$s" \
    "$(python3 -c "print(100 * $w / $s)")" "$l" "$p" "$(python3 -c "print($p / $l)")" "$c" "$(python3 -c "print($c / $l)")"
done
