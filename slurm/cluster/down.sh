#!/usr/bin/env bash
# Stops exactly the daemons slurm/cluster/up.sh started (by the PIDs it recorded), even after a failed test.
# usage: slurm/cluster/down.sh [STATE_DIR]
state=${1:-/tmp/mpitrain-slurm}
[ -f "$state/pids" ] || exit 0
# Jobs first (their tasks are the slurmds' children), then the daemons in reverse start order.
SLURM_CONF="$state/slurm.conf" scancel --quiet --user="$(id -un)" 2>/dev/null || true
tac "$state/pids" | while read -r pid name; do
  kill "$pid" 2>/dev/null || true
done
for i in $(seq 50); do
  alive=0
  while read -r pid name; do kill -0 "$pid" 2>/dev/null && alive=1; done <"$state/pids"
  [ "$alive" -eq 0 ] && break
  sleep 0.2
done
while read -r pid name; do kill -9 "$pid" 2>/dev/null || true; done <"$state/pids"
rm -f "$state/pids"
