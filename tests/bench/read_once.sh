#!/usr/bin/env bash
# Loads at dp 4 with the page cache emptied first: the start from an HF directory and a resume (weights and moments), with read_once=true (each shared block read by one rank, broadcast) against false (every rank reads); bytes read per rank and the load time.
# usage: tests/bench/read_once.sh [HIDDEN] [LAYERS] [RUNS] [WORLD]    (after launcher/setup.sh)
set -euo pipefail
cd "$(dirname "$0")/../.."
hidden=${1:-512}
layers=${2:-8}
runs=${3:-3}
world=${4:-4}
source tests/bench/common.sh

larger_llama "$hidden" "$layers" "$scratch/config.json"
common=(--train_file="$scratch/data.h5" --eval_strategy=no --load_best_model_at_end=false --progress_bar=false
        --lr_scheduler_type=constant --logging_steps=1)
# The model directory started from, and a dp-4 checkpoint of one step from it.
OMP_NUM_THREADS=1 build/bin/mpitrain train "$scratch/config.json" --output_dir="$scratch/model" --max_steps=0 \
  --save_strategy=no "${common[@]}" >/dev/null
OMP_NUM_THREADS=1 mpirun "${flags[@]}" -np "$world" build/bin/mpitrain train "$scratch/config.json" \
  --model_name_or_path="$scratch/model" --output_dir="$scratch/saved" --max_steps=1 --save_strategy=steps \
  --save_steps=1 "${common[@]}" >/dev/null

# The largest load time and each rank's MB read, from the ranks' logs ("read X of the Y MB ... in T s").
figures() {  # dir pattern
  python3 - "$@" "$world" <<'PY'
import re, sys
d, pattern, world = sys.argv[1], sys.argv[2], int(sys.argv[3])
times, reads = [], []
for r in range(world):
    text = open(f"{d}/logs/rank-{r}.log").read()
    m = re.findall(pattern + r".*read ([0-9.]+) of the ([0-9.]+) MB.* in ([0-9.]+) s", text)[-1]
    reads.append(float(m[0])); times.append(float(m[2])); needed = float(m[1])
print(max(times), ",".join(f"{x:.1f}" for x in reads), f"{needed:.1f}")
PY
}

declare -A start_s resume_s start_mb resume_mb needed_start needed_resume
for run in $(seq "$runs"); do
  for once in true false; do  # alternated, so drift on this shared machine hits both alike
    out="$scratch/run-$once-$run"
    evict "$scratch/model"
    OMP_NUM_THREADS=1 mpirun "${flags[@]}" -np "$world" build/bin/mpitrain train "$scratch/config.json" \
      --model_name_or_path="$scratch/model" --output_dir="$out" --max_steps=0 --save_strategy=no \
      --read_once=$once "${common[@]}" >/dev/null
    read -r t mb need <<<"$(figures "$out" "$scratch/model: ")"
    start_s[$once]+=" $t"; start_mb[$once]="$mb"; needed_start[$once]="$need"
    evict "$scratch/saved"
    OMP_NUM_THREADS=1 mpirun "${flags[@]}" -np "$world" build/bin/mpitrain train "$scratch/config.json" \
      --model_name_or_path="$scratch/model" --output_dir="$out-resumed" --max_steps=1 --save_strategy=no \
      --resume_from_checkpoint="$scratch/saved/checkpoint-1" --read_once=$once "${common[@]}" >/dev/null
    read -r t mb need <<<"$(figures "$out-resumed" "resumed from ")"
    resume_s[$once]+=" $t"; resume_mb[$once]="$mb"; needed_resume[$once]="$need"
    rm -rf "$out" "$out-resumed"
  done
done

echo "# hidden $hidden, $layers layers, dp $world, page cache emptied before each load, median of $runs alternated runs"
printf "%-8s %-10s %10s %10s  %s\n" load read_once "seconds" "vs every" "MB read by each rank (of the MB each needs)"
for what in start resume; do
  for once in true false; do
    declare -n secs="${what}_s" mbs="${what}_mb" needs="needed_${what}"
    t=$(median ${secs[$once]}); base=$(median ${secs[false]})
    printf "%-8s %-10s %10.3f %10.2f  %s (of %s)\n" "$what" "$once" "$t" "$(python3 -c "print($t / $base)")" "${mbs[$once]}" "${needs[$once]}"
  done
done
