#!/usr/bin/env bash
# Stops exactly the processes deploy/local/up.sh started (by the pids it recorded), waiting for
# each to drain after SIGTERM. Leaves PostgreSQL, Redis and RabbitMQ running.
set -uo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
pids="$root/.dialfleet/pids"
[ -d "$pids" ] || { echo "nothing to stop"; exit 0; }

for file in "$pids"/*.pid; do
  [ -e "$file" ] || continue
  role="$(basename "$file" .pid)"
  pid="$(cat "$file")"
  if kill -0 "$pid" 2>/dev/null; then
    echo "==> stopping $role (pid $pid)"
    kill -TERM "$pid"
    for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -0 "$pid" 2>/dev/null && { echo "    $role still draining after 30 s, killing"; kill -KILL "$pid"; }
  fi
  rm -f "$file"
done
echo "stopped"
