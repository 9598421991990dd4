#!/usr/bin/env bash
# The test command: every test, unit and integration, against the real local services. It passes
# by itself on a fresh machine: it starts any service that is down (installing it when missing),
# and installs the browser the monitor page's test drives.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# shellcheck source=deploy/local/services.sh
source deploy/local/services.sh
ensure_services

# The monitor page's browser test drives Debian's headless Chromium through chromedriver.
ensure_chromium() {
  if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
    apt_install chromium chromium-driver fonts-dejavu-core
  fi
}
ensure_chromium

if cargo nextest --version >/dev/null 2>&1; then
  exec cargo nextest run --workspace --no-fail-fast "$@"
else
  exec cargo test --workspace --no-fail-fast "$@"
fi
