#!/usr/bin/env bash
# Brings up a real Slurm on this machine for tests and trials: munge, slurmctld and one or two slurmd "nodes" (n1, n2), all on localhost.
# usage: slurm/cluster/up.sh [NODES=1|2] [STATE_DIR]   then: export SLURM_CONF=STATE_DIR/slurm.conf
# Every daemon's PID goes to STATE_DIR/pids; slurm/cluster/down.sh STATE_DIR stops exactly those.
# Needs root (slurmd launches tasks as the submitting user) and the packages launcher/setup.sh
# installs (slurmctld slurmd slurm-client munge).
set -euo pipefail
nodes=${1:-1}
state=${2:-/tmp/mpitrain-slurm}
port_base=${MPITRAIN_SLURM_PORT_BASE:-16817}
[ "$(id -u)" -eq 0 ] || { echo "slurm/cluster/up.sh: run as root (slurmd must start tasks as the submitting user)" >&2; exit 1; }
for tool in munged slurmctld slurmd sbatch; do
  command -v "$tool" >/dev/null || { echo "slurm/cluster/up.sh: $tool not found; run launcher/setup.sh" >&2; exit 1; }
done
if [ -f "$state/pids" ]; then "$(dirname "$0")/down.sh" "$state"; fi
rm -rf "$state"
mkdir -p "$state"/{ctld,log,munge}
for n in $(seq "$nodes"); do mkdir -p "$state/n$n/spool"; done
cpus=$(nproc)
# Each fake node claims 4 CPUs whatever the machine has (config_overrides): tests place up to
# 4 oversubscribed ranks on one node.
{
  echo "ClusterName=mpitrain"
  echo "SlurmctldHost=localhost"
  echo "SlurmctldPort=$port_base"
  echo "AuthType=auth/munge"
  echo "CredType=cred/munge"
  # cred_expire is also how long a requeued job waits before it may start again (default 120 s).
  echo "AuthInfo=socket=$state/munge/munge.socket,cred_expire=10"
  echo "SlurmUser=root"
  echo "SlurmdUser=root"
  echo "StateSaveLocation=$state/ctld"
  echo "SlurmdSpoolDir=$state/%n/spool"
  echo "SlurmctldPidFile=$state/ctld/slurmctld.pid"
  echo "SlurmdPidFile=$state/%n/slurmd.pid"
  echo "SlurmctldLogFile=$state/log/slurmctld.log"
  echo "SlurmdLogFile=$state/log/slurmd-%n.log"
  echo "ProctrackType=proctrack/linuxproc"
  echo "TaskPlugin=task/none"
  echo "MpiDefault=pmix"
  echo "SchedulerType=sched/backfill"
  echo "SelectType=select/cons_tres"
  echo "SelectTypeParameters=CR_CPU"
  echo "SlurmdParameters=config_overrides"
  echo "ReturnToService=2"
  echo "JobCompType=jobcomp/none"
  echo "AccountingStorageType=accounting_storage/none"
  echo "JobAcctGatherType=jobacct_gather/none"
  echo "MinJobAge=600"
  echo "KillWait=10"
  echo "SchedulerParameters=defer_batch=0"
  # The nodes' configs differ in TmpFS only (PMIx puts each step's directory there; two
  # nodes sharing one /tmp collide): no hash check between them.
  echo "DebugFlags=NO_CONF_HASH"
  for n in $(seq "$nodes"); do
    echo "NodeName=n$n NodeHostname=localhost NodeAddr=127.0.0.1 Port=$((port_base + n)) CPUs=4 RealMemory=4000 State=UNKNOWN"
  done
  echo "PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4"
} >"$state/slurm.conf"
for n in $(seq "$nodes"); do
  mkdir -p "$state/n$n/tmp"
  sed "/^ClusterName=/a TmpFS=$state/n$n/tmp" "$state/slurm.conf" >"$state/slurm-n$n.conf"
done
export SLURM_CONF="$state/slurm.conf"
chown munge:munge "$state/munge"
if ! runuser -u munge -- test -w "$state/munge"; then
  echo "slurm/cluster/up.sh: the munge user cannot reach $state/munge (a parent directory is private?)" >&2
  exit 1
fi
: >"$state/pids"
start() {  # start NAME COMMAND...: in the background, in its own session, PID recorded
  local name=$1; shift
  setsid "$@" >"$state/log/$name.out" 2>&1 </dev/null &
  echo "$! $name" >>"$state/pids"
}
start munged runuser -u munge -- /usr/sbin/munged -F --socket="$state/munge/munge.socket" \
  --pid-file="$state/munge/munged.pid" --log-file="$state/log/munged.log" --seed-file="$state/munge/munge.seed"
for i in $(seq 50); do [ -S "$state/munge/munge.socket" ] && break; sleep 0.1; done
[ -S "$state/munge/munge.socket" ] || { echo "slurm/cluster/up.sh: munged did not start:" >&2; cat "$state"/log/munged.* >&2; exit 1; }
start slurmctld slurmctld -D -i -f "$SLURM_CONF"
for n in $(seq "$nodes"); do start "slurmd-n$n" slurmd -D -N "n$n" -f "$state/slurm-n$n.conf"; done
# Ready when every node is idle.
for i in $(seq 300); do
  idle=$( (sinfo -h -N -o "%N %t" 2>/dev/null || true) | awk '$2 == "idle"' | wc -l)
  [ "$idle" -ge "$nodes" ] && { echo "slurm up: $nodes node(s), SLURM_CONF=$SLURM_CONF ($cpus cores here)"; exit 0; }
  sleep 0.2
done
echo "slurm/cluster/up.sh: nodes did not become idle within 60 s; the daemons said:" >&2
tail -n 5 "$state"/log/*.out "$state"/log/*.log >&2 || true
sinfo -N >&2 || true
exit 1
