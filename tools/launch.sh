#!/usr/bin/env bash
# Job launcher with one interface for every backend:
#   tools/launch.sh LOGFILE command args...
# Runs the command locally, output to LOGFILE (and the terminal's tail on failure).
# A failed job fails with the log path in the message.
set -euo pipefail
log=$1; shift
mkdir -p "$(dirname "$log")"
echo "# $(date -Is) $*" > "$log"
if ! "$@" >> "$log" 2>&1; then
  echo "launch.sh: job failed; last lines of $log:" >&2
  tail -n 25 "$log" >&2
  echo "launch.sh: full log: $log" >&2
  exit 1
fi
