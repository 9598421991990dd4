#!/usr/bin/env bash
# Brings the whole dialfleet stack up on this machine: checks (and if needed starts or installs)
# PostgreSQL, Redis and RabbitMQ, builds the release binaries, migrates the database, starts every
# role in the background with logs and pids under .dialfleet/, waits until each answers /readyz,
# and prints the gateway URL and a development API key. Safe to run twice.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
state="$root/.dialfleet"
mkdir -p "$state/logs" "$state/pids" "$state/carrier-sim"
# shellcheck source=deploy/local/services.sh
source "$root/deploy/local/services.sh"

ensure_services

export DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/dialfleet}"
export AMQP_URL="${AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/%2f}"
export REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379/}"
export GATEWAY_ADDR="${GATEWAY_ADDR:-127.0.0.1:8080}"
# Webhooks are never sent to loopback, private or reserved addresses unless allowed
# (docs/security.md). Locally, exactly 127.0.0.1 is allowed, so a receiver on this machine
# works; nothing else inside is reachable (not 127.0.0.2, not [::1], not the LAN).
export WEBHOOK_ALLOWED_NETWORKS="${WEBHOOK_ALLOWED_NETWORKS:-127.0.0.1/32}"

echo "==> building release binaries"
(cd "$root" && cargo build --release --quiet --bins)
bin="${CARGO_TARGET_DIR:-$root/target}/release"

echo "==> migrating $DATABASE_URL"
"$bin/api-gateway" migrate >/dev/null

# role name, health address (the port each role serves /readyz on)
roles=(
  "carrier-sim 127.0.0.1:8090"
  "api-gateway $GATEWAY_ADDR"
  "ingest-worker 127.0.0.1:8081"
  "scheduler 127.0.0.1:8082"
  "dial-worker 127.0.0.1:8083"
)

running() { [ -f "$state/pids/$1.pid" ] && kill -0 "$(cat "$state/pids/$1.pid")" 2>/dev/null; }

for entry in "${roles[@]}"; do
  read -r role addr <<<"$entry"
  [ -x "$bin/$role" ] || continue  # roles not built yet in this version are skipped
  if running "$role"; then
    echo "==> $role already running (pid $(cat "$state/pids/$role.pid"))"
    continue
  fi
  echo "==> starting $role"
  HEALTH_ADDR="$addr" CARRIER_SIM_RECORD="$state/carrier-sim/calls.jsonl" \
    nohup "$bin/$role" >>"$state/logs/$role.log" 2>&1 &
  echo $! >"$state/pids/$role.pid"
done

echo "==> waiting for every role to be ready"
for entry in "${roles[@]}"; do
  read -r role addr <<<"$entry"
  [ -f "$state/pids/$role.pid" ] || continue
  for _ in $(seq 1 120); do
    if curl -fsS "http://$addr/readyz" >/dev/null 2>&1; then break; fi
    if ! running "$role"; then
      echo "error: $role exited; last lines of $state/logs/$role.log:" >&2
      tail -n 20 "$state/logs/$role.log" >&2
      exit 1
    fi
    sleep 0.5
  done
  curl -fsS "http://$addr/readyz" >/dev/null || { echo "error: $role is not ready at http://$addr/readyz" >&2; exit 1; }
done

# One development workspace, created once and remembered.
if [ ! -s "$state/dev-workspace.json" ]; then
  "$bin/api-gateway" workspace create --name development --max-concurrent-dials 50 >"$state/dev-workspace.json"
fi
key="$(sed -n 's/.*"apiKey":"\([^"]*\)".*/\1/p' "$state/dev-workspace.json")"

echo
echo "dialfleet is up."
echo "  gateway:  http://$GATEWAY_ADDR"
echo "  API key:  $key"
echo "  webhooks: may go to public addresses and to WEBHOOK_ALLOWED_NETWORKS=$WEBHOOK_ALLOWED_NETWORKS"
echo "  logs:     $state/logs/   stop with: deploy/local/down.sh"
