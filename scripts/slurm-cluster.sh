#!/usr/bin/env bash
# A real single-node Slurm cluster on this machine, for the Slurm tests (and for trying the Slurm runtime):
#   bash scripts/slurm-cluster.sh start    install (Debian packages) if needed, configure, start, wait until the node answers
#   bash scripts/slurm-cluster.sh stop     stop the daemons
#   bash scripts/slurm-cluster.sh status   exit 0 when the cluster answers
# Needs root (it writes /etc/slurm and starts munged, slurmctld and slurmd). About 5 s from scratch once the
# packages are installed. The node has CPUs=4 on a 2-core machine so tests can fill it and see a real queue.
set -euo pipefail

# The node answers (idle, or busy with jobs: a controller restarted under running jobs sees them again).
up() { command -v sinfo >/dev/null && timeout 5 sinfo -h -o %T 2>/dev/null | grep -qxE 'idle|mixed|allocated'; }

start() {
  if [[ $(id -u) != 0 ]]; then
    echo "slurm-cluster.sh: needs root (it configures /etc/slurm and starts the daemons)" >&2
    exit 1
  fi
  if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      slurmctld slurmd slurm-client munge >/dev/null
  fi
  if up; then
    echo "slurm-cluster.sh: already running"
    return
  fi
  local host
  host=$(hostname -s)
  mkdir -p /etc/slurm
  cat > /etc/slurm/slurm.conf <<CONF
ClusterName=wfmcp
SlurmctldHost=$host
SlurmUser=root
AuthType=auth/munge
ProctrackType=proctrack/cgroup
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmdParameters=config_overrides
ReturnToService=2
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
KillWait=5
MinJobAge=300
MpiDefault=none
NodeName=$host NodeAddr=127.0.0.1 CPUs=4 RealMemory=4000 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
  printf 'CgroupPlugin=cgroup/v1\nCgroupAutomount=no\nConstrainCores=no\nConstrainRAMSpace=no\n' > /etc/slurm/cgroup.conf
  mkdir -p /var/spool/slurmctld /var/spool/slurmd /var/log/slurm /run/munge
  chown munge:munge /run/munge
  pgrep -x munged >/dev/null || runuser -u munge -- /usr/sbin/munged
  pgrep -x slurmctld >/dev/null || slurmctld
  pgrep -x slurmd >/dev/null || slurmd
  for _ in $(seq 1 300); do
    up && break
    sleep 0.1
  done
  up || { echo "slurm-cluster.sh: the node did not become idle; see /var/log/slurm/" >&2; exit 1; }
  # The first job after a fresh start takes ~3 s; later ones start in well under a second.
  srun --quiet true
  echo "slurm-cluster.sh: running (partition debug, 4 CPUs)"
}

stop() {
  for f in /run/slurmd.pid /run/slurmctld.pid /run/munge/munged.pid; do
    [[ -f $f ]] && kill -TERM "$(cat "$f")" 2>/dev/null || true
  done
}

case "${1:-start}" in
  start) start ;;
  stop) stop ;;
  status) up ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
