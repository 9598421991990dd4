#!/bin/sh
# The image's entrypoint: the first argument names the role binary, the rest are its arguments.
# `exec` makes the role PID 1, so it receives SIGTERM itself and drains.
set -eu
role="${1:-api-gateway}"
[ "$#" -gt 0 ] && shift
case "$role" in
  api-gateway|ingest-worker|scheduler|dial-worker|carrier-sim)
    exec "/usr/local/bin/$role" "$@" ;;
  -*)
    # Flags only (`docker run image --help`): they are the gateway's.
    exec /usr/local/bin/api-gateway "$role" "$@" ;;
  *)
    # Anything else (a shell for debugging, another tool) runs as given.
    exec "$role" "$@" ;;
esac
