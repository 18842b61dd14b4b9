#!/usr/bin/env bash
# The sbatch templates on a real Slurm brought up on this machine: train+save, time-limit signal -> save -> requeue -> resume, 2 nodes dp x tp, bad launches.
# usage: tests/slurm/slurm_test.sh BUILD_DIR   (as root; ctest runs it with the label "slurm")
set -uo pipefail
build=$(cd "${1:?usage: slurm_test.sh BUILD_DIR}" && pwd)
repo=$(cd "$(dirname "$0")/../.." && pwd)
cd "$repo"
state=$(mktemp -d /tmp/mpitrain-slurm-test-XXXXXX)
chmod 755 "$state"  # the munge user must reach its socket directory inside
work="$state/work"
mkdir -p "$work"
# Whatever happens, exactly the daemons this test started are stopped.
shm=$(mktemp -d /dev/shm/mpitrain-slurm-test-XXXXXX)  # the 2-node job's local checkpoints
trap 'slurm/cluster/down.sh "$state/cluster"; rm -rf "$state" "$shm"' EXIT
slurm/cluster/up.sh 2 "$state/cluster" || exit 1
export SLURM_CONF="$state/cluster/slurm.conf"
export MPITRAIN="$build/bin/mpitrain"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1  # the tests run as root (slurmd needs it)
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
check() { if eval "$2"; then echo "ok: $1"; else fail "$1"; fi; }

# Data and a small model, prepared once outside the jobs.
"$MPITRAIN" prepare-data configs/data/sotu "$work/data.h5" >/dev/null || exit 1
cat >"$work/model.json" <<JSON
{"model": {"config": {"model_type": "llama", "vocab_size": 264, "hidden_size": 64, "intermediate_size": 128,
                      "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
                      "max_position_embeddings": 128, "tie_word_embeddings": true}},
 "data": {"train_file": "$work/data.h5", "seq_len": 64},
 "training": {"per_device_train_batch_size": 8, "learning_rate": 1e-3, "lr_scheduler_type": "constant",
              "logging_steps": 20, "save_strategy": "no", "progress_bar": false},
 "parallel": {"torch_threads": 1}}
JSON

# sbatch TEMPLATE NAME [sbatch options --] [train overrides]: submits from the repo root and prints the job id.
submit() {
  local template=$1 name=$2; shift 2
  local options=()
  while [ $# -gt 0 ] && [ "$1" != "--" ]; do options+=("$1"); shift; done
  [ $# -gt 0 ] && shift
  OUTPUT_DIR="$work/$name" sbatch --parsable --job-name="$name" --output="$work/$name.out" --gpus-per-node=0 \
    --cpus-per-task=1 "${options[@]}" "$template" "$work/model.json" "$@"
}
# Waits for a job to end; prints its final state.
wait_job() {
  local id=$1 limit=${2:-300} state=""
  for _ in $(seq "$limit"); do
    state=$(scontrol show job "$id" 2>/dev/null | sed -n 's/.*JobState=\([A-Z_]*\).*/\1/p')
    case "$state" in COMPLETED|FAILED|CANCELLED|TIMEOUT|NODE_FAIL|OUT_OF_MEMORY) echo "$state"; return;; esac
    sleep 1
  done
  echo "STILL-$state"
}
restarts() { scontrol show job "$1" | sed -n 's/.*Restarts=\([0-9]*\).*/\1/p'; }

# 1. The single-node template with srun --mpi=pmix, and with mpirun inside the allocation; each
#    gets a TERM while it trains (an async save in flight), saves, requeues and resumes.
srun_job=$(submit slurm/single-node.sbatch single --ntasks-per-node=2 -- --max_steps=1000 --async_save=true)
mpirun_job=$(LAUNCHER=mpirun submit slurm/single-node.sbatch viampirun --ntasks-per-node=2 -- --max_steps=1000 \
             --tensor_parallel_size=2 --async_save=true)
# 2. A time limit of one minute, warned 40 s ahead (Slurm looks about every 30 s), so each run
#    is cut after 20-50 s and requeued until done; beside it the same run without a limit.
#    Every step's loss is logged: a resumed run's first log window starts at its resume step.
cut_job=$(submit slurm/single-node.sbatch cut --ntasks-per-node=2 --time=1 --signal=B:USR1@40 -- --max_steps=1500 \
          --logging_steps=1)
uncut_job=$(submit slurm/single-node.sbatch uncut --ntasks-per-node=2 -- --max_steps=1500 --logging_steps=1)
# 3. Two nodes, dp 2 x tp 2, keeping local checkpoints with a replica on the other node.
multi_job=$(OMPI_MCA_btl=self,tcp submit slurm/multi-node.sbatch multi --nodes=2 --ntasks-per-node=2 -- --max_steps=20 \
            --tensor_parallel_size=2 --local_save_steps=5 --local_save_dir="$shm")

# TERM to the job script once its ranks train (as `scancel --signal=TERM --batch` or a
# scheduler's TERM sends it), for each launcher.
term_once_ready() {
  for _ in $(seq 1 600); do
    [ -e "$work/$2/.ranks-ready-$1" ] && break
    sleep 0.5
  done
  sleep 1
  scancel --signal=TERM --batch "$1"
}
term_once_ready "$srun_job" single
term_once_ready "$mpirun_job" viampirun

# One cut is what is tested. This Slurm (22.05) does not renew a requeued job's time limit in
# full: its later runs were warned within seconds of starting, again and again, until the
# job ran out of time. Once the job has been requeued, it gets a limit it will not reach.
for _ in $(seq 1 600); do
  [ "$(restarts "$cut_job")" -ge 1 ] && break
  sleep 1
done
scontrol update JobId="$cut_job" TimeLimit=30

check "single-node srun job completes" '[ "$(wait_job "$srun_job" 600)" = COMPLETED ]'
check "single-node job saved a model that inspects clean" '"$MPITRAIN" inspect "$work/single" >/dev/null'
check "mpirun inside sbatch trains dp 1 x tp 2" \
  '[ "$(wait_job "$mpirun_job" 600)" = COMPLETED ] && grep -q "1 data-parallel x 2 tensor-parallel" "$work/viampirun/logs/rank-0.log"'
for name in single viampirun; do
  check "$name: TERM to the job script saved a checkpoint (exit 75), requeued and resumed" \
    'grep -q "mpitrain: stopped by SIG.* after saving" "$work/$name.out" && grep -q "requeueing" "$work/$name.out" &&
     grep -q "resumed from $work/$name/checkpoint-" "$work/$name.out"'
done
check "both launchers got the TERM as USR1" \
  'grep -q "TERM: asking the ranks to save and stop (as USR1)" "$work/single.out" &&
   grep -q "TERM: asking the ranks to save and stop (as USR1)" "$work/viampirun.out"'
check "2-node job completes" '[ "$(wait_job "$multi_job")" = COMPLETED ]'
check "2-node job ran dp 2 x tp 2 and saved" \
  'grep -q "2 data-parallel x 2 tensor-parallel" "$work/multi/logs/rank-0.log" && "$MPITRAIN" inspect "$work/multi" >/dev/null'
check "2-node job used both nodes" 'grep -q "on n\[1-2\]" "$work/multi.out"'
check "2-node job kept local checkpoints with replicas on the other node, removed at its end" \
  'grep -q "its own and 1 on other nodes" "$work/multi/logs/rank-0.log" &&
   grep -q "local checkpoint of step 20 committed on every rank" "$work/multi/logs/rank-0.log" && [ -z "$(ls -A "$shm")" ]'
check "time-limited job ends" '[ "$(wait_job "$cut_job" 1200)" = COMPLETED ]'
check "it was signalled, saved and requeued" \
  'grep -q "stopped by SIGUSR1" "$work/cut.out" && grep -q "requeueing" "$work/cut.out" && [ "$(restarts "$cut_job")" -ge 1 ]'
check "the requeued run resumed from the saved checkpoint" 'grep -q "resumed from $work/cut/checkpoint-" "$work/cut.out"'
check "uncut job ends" '[ "$(wait_job "$uncut_job" 1200)" = COMPLETED ]'
final_loss() { grep '"loss"' "$1/metrics.jsonl" | tail -1 | sed 's/.*"loss":\([0-9.]*\).*/\1/'; }
check "cut + resumed run ends with the uncut run's loss ($(final_loss "$work/uncut"))" \
  '[ -n "$(final_loss "$work/cut")" ] && [ "$(final_loss "$work/cut")" = "$(final_loss "$work/uncut")" ]'
check "and the same weights, bit for bit" 'cmp -s "$work/cut/model.safetensors" "$work/uncut/model.safetensors"'

# 4. Bad launches: a clear line and a non-zero exit, never a hang (timeout 60 s).
out=$(timeout 60 srun --mpi=none -N1 -n2 "$MPITRAIN" train "$work/model.json" --output_dir="$work/nopmix" 2>&1)
check "srun without PMIx explains itself" '[ $? -ne 124 ] && grep -q "srun did not pass PMI to MPI" <<<"$out"'
out=$(timeout 60 srun --mpi=pmix -N1 -n3 "$MPITRAIN" train "$work/model.json" --output_dir="$work/three" \
      --tensor_parallel_size=2 2>&1); status=$?
check "3 ranks for tp 2 is one clear error" \
  '[ $status -ne 0 ] && [ $status -ne 124 ] && grep -q "tensor_parallel_size 2 does not divide the 3 ranks" <<<"$out"'
out=$(sbatch --gpus-per-node=1 --wrap=true 2>&1); status=$?
check "GPUs asked for where there are none are refused at submission" '[ $status -ne 0 ] && [ -n "$out" ]'
echo "$out"

if [ "$failures" -ne 0 ]; then
  for f in "$work"/*.out; do echo "== $f"; tail -20 "$f"; done
  echo "$failures Slurm check(s) failed"
  exit 1
fi
echo "all Slurm checks passed"
