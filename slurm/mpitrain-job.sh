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
case "$launcher" in
  srun) srun --mpi=pmix --kill-on-bad-exit=1 "$mpitrain" "${args[@]}" & ;;
  mpirun) mpirun "$mpitrain" "${args[@]}" & ;;  # Open MPI reads the allocation from Slurm
  *) echo "slurm/mpitrain-job.sh: LAUNCHER must be srun or mpirun, not '$launcher'" >&2; exit 2 ;;
esac
ranks=$!
# --signal=B:USR1@T reaches this shell: pass it on; srun and mpirun forward it to every rank,
# which save a checkpoint at the next step and exit with status 75.
trap 'echo "mpitrain job: USR1 (time limit near): asking the ranks to save and stop"; kill -USR1 "$ranks"' USR1
trap 'kill -TERM "$ranks"' TERM
status=0
while :; do
  wait "$ranks"
  status=$?
  kill -0 "$ranks" 2>/dev/null || break  # a trapped signal interrupts wait; the ranks go on
done
if [ "$status" -eq 75 ]; then
  echo "mpitrain job: checkpoint saved; requeueing ${SLURM_JOB_ID}"
  scontrol requeue "$SLURM_JOB_ID"
fi
exit "$status"
