#!/usr/bin/env bash
# The fault-injection suite: builds the role binaries and the `chaos` binary, then runs it.
#   scripts/chaos.sh                                   # every scenario, 300 contacts each
#   scripts/chaos.sh --scenarios baseline,redis-flush --contacts 60 --json /tmp/chaos.json
#   scripts/chaos.sh --scenarios rabbitmq-node-loss,postgres-failover,postgres-failover-async,redis-failover,replication-cost \
#     --contacts 1000 --cps 30 --lines 30     # the HA scenarios, each on its own deploy/local/ha.sh stack
# CHAOS_PROFILE=release builds optimised binaries (slow to build on a small machine; debug is
# the default and is what docs/reliability.md's table was measured with).
# It starts and stops only its own processes; see docs/reliability.md.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
profile="${CHAOS_PROFILE:-debug}"
flags=()
[[ "$profile" == release ]] && flags=(--release)
cargo build "${flags[@]}" -p api-gateway -p ingest-worker -p scheduler -p dial-worker -p carrier-sim \
  -p system-tests --bins
bin="${CARGO_TARGET_DIR:-$PWD/target}/$profile"
exec "$bin/chaos" --bin-dir "$bin" "$@"
