#!/usr/bin/env bash
# The test command: every test, unit and integration, against the real local services.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if cargo nextest --version >/dev/null 2>&1; then
  exec cargo nextest run --workspace --no-fail-fast "$@"
else
  exec cargo test --workspace --no-fail-fast "$@"
fi
