#!/usr/bin/env bash
# A single-node Slurm cluster on this machine, for tests and for trying --cmd slurm on a
# workstation:  tools/slurm_local.sh start|stop|status [--dir DIR]
# start: installs Debian's slurm-wlm and munge when missing (as root), creates a munge
#        key, writes DIR/slurm.conf (this host, all its CPUs, one partition "local"),
#        starts munged/slurmctld/slurmd and waits until the node is idle.
# stop:  stops only the daemons this script started (their pids are in DIR/pids).
# Clients find the cluster through /etc/slurm/slurm.conf (linked to DIR/slurm.conf when
# absent) or SLURM_CONF=DIR/slurm.conf (`tools/slurm_local.sh env` prints the export).
set -euo pipefail
action=${1:-}; shift || true
dir=${MOWE_SLURM_DIR:-/tmp/mowe-slurm}
while [ $# -gt 0 ]; do
  case "$1" in
    --dir) dir=$2; shift 2 ;;
    *) echo "slurm_local.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
conf=$dir/slurm.conf
pids=$dir/pids
log() { echo "[slurm_local] $*"; }

install_if_missing() {
  local missing=()
  for tool in slurmctld slurmd sbatch munged; do command -v "$tool" >/dev/null || missing+=("$tool"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "slurm_local.sh: missing ${missing[*]}; install with: sudo apt-get install -y slurm-wlm munge" >&2
    exit 1
  fi
  log "installing slurm-wlm and munge (Debian packages)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    slurm-wlm munge >/dev/null
}

alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null; }

write_conf() {
  local host cpus memory
  host=$(hostname -s)
  cpus=$(nproc)
  memory=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 1024 ))
  mkdir -p "$dir"/{state,spool,log}
  cat > "$conf" <<CONF
# written by tools/slurm_local.sh
ClusterName=mowe-local
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
MpiDefault=none
ReturnToService=2
JobRequeue=1
KillWait=10
MinJobAge=300
SlurmctldTimeout=30
SlurmdTimeout=30
NodeName=$host CPUs=$cpus RealMemory=$memory State=UNKNOWN
PartitionName=local Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
CONF
}

start() {
  if [ -f "$pids" ] && alive "$(awk '/slurmctld/ {print $2}' "$pids")"; then
    log "already running (config $conf)"; return 0
  fi
  install_if_missing
  mkdir -p "$dir"
  : > "$pids"
  if ! pgrep -x munged >/dev/null; then
    mkdir -p /etc/munge /run/munge /var/lib/munge /var/log/munge
    if [ ! -s /etc/munge/munge.key ]; then
      dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
      chmod 400 /etc/munge/munge.key
    fi
    chown -R munge:munge /etc/munge /run/munge /var/lib/munge /var/log/munge 2>/dev/null || true
    if id munge >/dev/null 2>&1; then runuser -u munge -- munged; else munged --force; fi
    for _ in $(seq 50); do [ -S /run/munge/munge.socket.2 ] && break; sleep 0.2; done
    echo "munged $(pgrep -o -x munged)" >> "$pids"
  fi
  if [ ! -S /run/munge/munge.socket.2 ]; then
    echo "slurm_local.sh: munged is not answering (/run/munge/munge.socket.2 missing)" >&2
    exit 1
  fi
  write_conf
  if [ ! -e /etc/slurm/slurm.conf ]; then
    mkdir -p /etc/slurm
    ln -s "$conf" /etc/slurm/slurm.conf
    echo "link /etc/slurm/slurm.conf" >> "$pids"
  fi
  export SLURM_CONF=$conf
  slurmctld -D -f "$conf" > "$dir/log/slurmctld.out" 2>&1 &
  echo "slurmctld $!" >> "$pids"
  slurmd -D -f "$conf" > "$dir/log/slurmd.out" 2>&1 &
  echo "slurmd $!" >> "$pids"
  for _ in $(seq 60); do
    if sinfo -h -o '%t' 2>/dev/null | grep -qE '^(idle|mix|alloc)'; then
      log "up: $(sinfo -h -o '%P %D %t %c CPUs')  (config $conf)"
      return 0
    fi
    sleep 1
  done
  echo "slurm_local.sh: the node did not become idle in 60 s; logs in $dir/log" >&2
  tail -n 20 "$dir/log/slurmctld.log" "$dir/log/slurmd.log" >&2 || true
  exit 1
}

stop() {
  [ -f "$pids" ] || { log "nothing started by this script"; return 0; }
  # daemons in reverse start order; only the processes recorded here
  tac "$pids" | while read -r name pid; do
    case "$name" in
      link) [ -L "$pid" ] && rm -f "$pid" ;;
      *) # only if that pid is still the daemon started here (pids get reused)
         if alive "$pid" && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$name" ]; then
           kill "$pid"; log "stopped $name ($pid)"
         fi ;;
    esac
  done
  rm -f "$pids"
}

status() {
  if [ ! -f "$pids" ]; then log "not started by this script"; return 1; fi
  local ok=0
  while read -r name pid; do
    [ "$name" = link ] && continue
    if alive "$pid"; then log "$name running ($pid)"; else log "$name NOT running"; ok=1; fi
  done < "$pids"
  SLURM_CONF=$conf sinfo 2>/dev/null || true
  return $ok
}

case "$action" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  env) echo "export SLURM_CONF=$conf" ;;
  -h|--help|"") sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; [ -n "$action" ] ;;
  *) echo "slurm_local.sh: unknown action $action (start|stop|status|env)" >&2; exit 2 ;;
esac
