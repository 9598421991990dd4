#!/usr/bin/env bash
# Stops exactly the processes deploy/local/ha.sh started (the pids under $HA_STATE/pids) and
# removes its state directory. The single-node services are never touched.
#   HA_STATE   the stack's state directory (default /tmp/dialfleet-ha)
#   HA_KEEP=1  keep the state directory (data and logs) after stopping
set -uo pipefail

state="${HA_STATE:-/tmp/dialfleet-ha}"
[ -d "$state/pids" ] || { echo "no HA stack at $state"; exit 0; }

# The script pids of the RabbitMQ nodes last: stopping the node ends its script.
for file in "$state"/pids/*.pid; do
  [ -e "$file" ] || continue
  case "$file" in *.script.pid) continue ;; esac
  name="$(basename "$file" .pid)"
  pid="$(tr -dc 0-9 <"$file")"
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    echo "==> stopping $name (pid $pid)"
    # PostgreSQL's SIGTERM waits for its clients to leave; SIGINT is its fast shutdown.
    case "$name" in postgres-*) kill -INT "$pid" 2>/dev/null ;; *) kill -TERM "$pid" 2>/dev/null ;; esac
    for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
  fi
  rm -f "$file"
done
for file in "$state"/pids/*.script.pid; do
  [ -e "$file" ] || continue
  pid="$(tr -dc 0-9 <"$file")"
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
  rm -f "$file"
done
if [ "${HA_KEEP:-0}" = 1 ]; then
  echo "stopped; kept $state"
else
  rm -rf "$state"
  echo "stopped; removed $state"
fi
