#!/usr/bin/env bash
# The body of the sbatch templates: launch the ranks, forward Slurm's warning signal to them, requeue when they stop to be resumed.
# usage (from an sbatch script): slurm/mpitrain-job.sh CONFIG [mpitrain train overrides...]
# Environment: LAUNCHER=srun (default, PMIx) | mpirun; MPITRAIN (the binary, default
# build/bin/mpitrain); OUTPUT_DIR (default runs/<job name>-<job id>, the same after a requeue).
set -uo pipefail
config=${1:?usage: slurm/mpitrain-job.sh CONFIG [overrides...]}
shift
mpitrain=${MPITRAIN:-build/bin/mpitrain}
launcher=${LAUNCHER:-srun}
output_dir=${OUTPUT_DIR:-runs/${SLURM_JOB_NAME:-mpitrain}-${SLURM_JOB_ID:-0}}
echo "mpitrain job ${SLURM_JOB_ID:-?} (restart ${SLURM_RESTART_COUNT:-0}) on ${SLURM_JOB_NODELIST:-?}: $launcher, output in $output_dir"

# resume_from_checkpoint=auto: a requeued job continues from the latest complete checkpoint.
args=(train "$config" --output_dir="$output_dir" --resume_from_checkpoint=auto "$@")
# Rank 0 creates this file once every rank can take the warning signal: a signal that came
# earlier (a requeued job may be warned at once) waits for it instead of killing a rank that
# is still starting.
mkdir -p "$output_dir"
export MPITRAIN_READY_FILE="$output_dir/.ranks-ready-${SLURM_JOB_ID:-0}"
rm -f "$MPITRAIN_READY_FILE"
pending=0
# --signal=B:USR1@T reaches this shell; srun and mpirun forward it to every rank, which save a
# checkpoint at the next step and exit with status 75.
trap 'pending=1' USR1
case "$launcher" in
  srun) srun --mpi=pmix --kill-on-bad-exit=1 "$mpitrain" "${args[@]}" & ;;
  mpirun) mpirun "$mpitrain" "${args[@]}" & ;;  # Open MPI reads the allocation from Slurm
  *) echo "slurm/mpitrain-job.sh: LAUNCHER must be srun or mpirun, not '$launcher'" >&2; exit 2 ;;
esac
ranks=$!
trap 'kill -TERM "$ranks"' TERM
while kill -0 "$ranks" 2>/dev/null; do
  if [ "$pending" = 1 ] && [ -e "$MPITRAIN_READY_FILE" ]; then
    echo "mpitrain job: USR1 (time limit near): asking the ranks to save and stop"
    kill -USR1 "$ranks"
    pending=0
  fi
  sleep 0.5 &
  wait $! 2>/dev/null  # returns early when a trapped signal arrives
done
wait "$ranks"
status=$?
rm -f "$MPITRAIN_READY_FILE"
if [ "$status" -eq 75 ]; then
  echo "mpitrain job: checkpoint saved; requeueing ${SLURM_JOB_ID}"
  scontrol requeue "$SLURM_JOB_ID"
fi
exit "$status"
