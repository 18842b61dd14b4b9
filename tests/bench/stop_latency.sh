#!/usr/bin/env bash
# Seconds from SIGUSR1 to exit status 75 with a committed checkpoint, the signal landing in a step, in an evaluation and during a background save, against the same run's step time.
# usage: tests/bench/stop_latency.sh [RUNS] [WORLD] [HIDDEN ...]    (after launcher/setup.sh)
set -euo pipefail
cd "$(dirname "$0")/../.."
runs=${1:-3}
world=${2:-2}
shift $(($# < 2 ? $# : 2))
hiddens=("${@:-128 512}")
read -r -a hiddens <<<"${hiddens[*]}"
source tests/bench/common.sh
now() { date +%s.%N; }

# A run config of tiny-llama's shape at `hidden` (4 layers, mlp 4x), the case's keys added.
config_for() {  # hidden case out
  python3 - "$@" <<'EOF'
import json, sys
hidden, case, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
c = json.load(open("configs/tiny-llama.json"))
c["model"]["config"].update(hidden_size=hidden, intermediate_size=4 * hidden, num_attention_heads=hidden // 32,
                            num_key_value_heads=hidden // 32)
t = c["training"]
t.update(max_steps=100000, lr_scheduler_type="constant", logging_steps=1, eval_strategy="no", save_strategy="no",
         load_best_model_at_end=False, progress_bar=False, output_dir=out, save_total_limit=0)
if case == "step":   # long steps: 32 micro-batches each
    t.update(gradient_accumulation_steps=32, per_device_train_batch_size=1)
if case == "eval":   # an evaluation after step 2 of the whole eval split, one row per batch
    t.update(eval_strategy="steps", eval_steps=2, per_device_eval_batch_size=1)
if case == "async":  # step 2's checkpoint written in the background as step 3 runs
    t.update(save_strategy="steps", save_steps=2, async_save=True)
c["data"] = {"train_file": sys.argv[4], "seq_len": 128}
json.dump(c, open(out + ".json", "w"), indent=2)
EOF
}

# Waits until the run's metrics.jsonl logs a loss at `step`; prints the time it saw it.
wait_for_step() {  # dir step
  until [ -f "$1/metrics.jsonl" ] && python3 -c 'import json,sys
rows=[json.loads(l) for l in open(sys.argv[1]+"/metrics.jsonl")]
sys.exit(0 if any(r.get("step",-1)>=int(sys.argv[2]) and "loss" in r for r in rows) else 1)' "$1" "$2" 2>/dev/null; do
    sleep 0.01
  done
  now
}

echo "# world $world, median of $runs runs; goal: at most max(10 s, 2 steps)"
printf "%-7s %-6s %12s %8s  %s\n" hidden case "signal->75 s" "step s" "where it landed (last run)"
for hidden in "${hiddens[@]}"; do
  for case in step eval async; do
    latencies=() steps=()
    for run in $(seq "$runs"); do
      out="$scratch/$hidden-$case-$run"
      config_for "$hidden" "$case" "$out" "$scratch/data.h5"
      OMP_NUM_THREADS=1 mpirun "${flags[@]}" -np "$world" build/bin/mpitrain train "$out.json" >"$out.log" 2>&1 &
      job=$!
      # The step time as the poller sees it; then the signal lands where the case wants it:
      # a third of the way into step 5, 0.3 s into step 2's evaluation, or at once while step 2's
      # checkpoint is written in the background.
      if [ "$case" = step ]; then first=3; else first=1; fi
      a=$(wait_for_step "$out" "$first")
      b=$(wait_for_step "$out" $((first + 1)))
      step=$(python3 -c "print($b - $a)")
      case $case in
        step) sleep "$(python3 -c "print($step / 3)")" ;;
        eval) sleep 0.3 ;;
      esac
      sent=$(now)
      pkill -USR1 -n -f "^build/bin/mpitrain train $out.json" || true
      status=0
      wait "$job" || status=$?
      ended=$(now)
      [ "$status" -eq 75 ] || { echo "$out ended with status $status, not 75:"; tail -5 "$out.log"; exit 1; }
      latencies+=("$(python3 -c "print($ended - $sent)")")
      steps+=("$step")
      landed=$(grep -ho "during step [0-9]* (before micro-batch [0-9]* of [0-9]*)" "$out.log" | head -1 || true)
      [ -n "$landed" ] || landed=$(grep -ho "cut short by SIGUSR1 after [0-9]* of [0-9]* batches" "$out.log" | head -1 || true)
      [ -n "$landed" ] || landed=$(grep -ho "stopped by SIGUSR1 at step [0-9]*" "$out.log" | head -1 || true)
    done
    printf "%-7s %-6s %12.2f %8.2f  %s\n" "$hidden" "$case" "$(median "${latencies[@]}")" "$(median "${steps[@]}")" "$landed"
  done
done
