#!/usr/bin/env bash
# The body of the sbatch templates: launch the ranks, pass Slurm's warning signal and a TERM on to them, requeue when they stop to be resumed.
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
# Rank 0 creates this file once every rank saves on its stop signals (the model is built):
# a warning that came earlier (a requeued job may be warned at once) waits for it instead of
# ending ranks that have nothing to save yet.
mkdir -p "$output_dir"
export MPITRAIN_READY_FILE="$output_dir/.ranks-ready-${SLURM_JOB_ID:-0}"
rm -f "$MPITRAIN_READY_FILE"
pending=""     # a signal to pass on once the ranks are ready
terminated=0   # a TERM came before the ranks could save: they were stopped, the job ends as TERM would
# --signal=B:USR1@T and `scancel --signal=TERM --batch` reach this shell; either goes on to the
# ranks as USR1. Neither launcher forwards a TERM: Open MPI's mpirun kills its job (TERM to the
# ranks, KILL a second later, exit status 1 whatever they did) and srun terminates its step
# (the tasks were killed a second later here); both forward USR1 unchanged.
trap 'pending=USR1' USR1
trap 'pending=TERM' TERM
case "$launcher" in
  srun) srun --mpi=pmix --kill-on-bad-exit=1 "$mpitrain" "${args[@]}" & ;;
  mpirun) mpirun "$mpitrain" "${args[@]}" & ;;  # Open MPI reads the allocation from Slurm
  *) echo "slurm/mpitrain-job.sh: LAUNCHER must be srun or mpirun, not '$launcher'" >&2; exit 2 ;;
esac
ranks=$!
while kill -0 "$ranks" 2>/dev/null; do
  if [ -n "$pending" ] && [ -e "$MPITRAIN_READY_FILE" ]; then
    echo "mpitrain job: $pending: asking the ranks to save and stop (as USR1)"
    kill -USR1 "$ranks"
    pending=""
  elif [ "$pending" = TERM ]; then
    echo "mpitrain job: TERM while the ranks start: stopping them (nothing to save yet)"
    kill -TERM "$ranks"
    pending="" terminated=1
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
elif [ "$terminated" = 1 ]; then
  exit 143  # 128 + SIGTERM, as if the signal had ended the job
fi
exit "$status"
