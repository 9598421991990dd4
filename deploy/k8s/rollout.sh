#!/usr/bin/env bash
# Deploys an overlay with the schema migration first:
#   1. render the overlay once (so every step applies the same objects);
#   2. apply the configuration (ConfigMap, and in dev the Secret);
#   3. replace the migration Job (Jobs are immutable: the previous run is deleted) and wait for it
#      to complete: a failed migration stops here, before any Deployment changes;
#   4. apply everything else and wait for each Deployment's rollout.
#
# Usage: deploy/k8s/rollout.sh dev|prod [--timeout 600s]
# The prod overlay ships no Secret: create dialfleet-secrets in the namespace first.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
overlay="${1:?usage: rollout.sh dev|prod [--timeout 600s]}"
timeout="600s"
if [ "${2:-}" = "--timeout" ]; then timeout="${3:?--timeout needs a value}"; fi
kubectl="${KUBECTL:-kubectl}"

rendered="$(mktemp)"
trap 'rm -f "$rendered"' EXIT
"$kubectl" kustomize "$here/overlays/$overlay" >"$rendered" 2>/dev/null
namespace="$(awk '/^kind: Namespace/{ns=1} ns && /^  name:/{print $2; exit}' "$rendered")"
[ -n "$namespace" ] || { echo "error: the overlay declares no Namespace" >&2; exit 1; }

echo "==> namespace and configuration"
"$kubectl" apply -f "$rendered" -l 'app.kubernetes.io/component=namespace'
"$kubectl" apply -f "$rendered" -l 'app.kubernetes.io/component=config'

echo "==> migration"
"$kubectl" -n "$namespace" delete job dialfleet-migrate --ignore-not-found --wait=true
"$kubectl" apply -f "$rendered" -l 'app.kubernetes.io/component=migration'
if ! "$kubectl" -n "$namespace" wait --for=condition=complete job/dialfleet-migrate --timeout="$timeout"; then
  echo "error: the migration did not complete; nothing else was changed. Its logs:" >&2
  "$kubectl" -n "$namespace" logs job/dialfleet-migrate --tail=50 >&2 || true
  exit 1
fi

echo "==> roles"
"$kubectl" apply -f "$rendered" -l 'app.kubernetes.io/component!=migration'
for deployment in $("$kubectl" -n "$namespace" get deployments -l app.kubernetes.io/part-of=dialfleet -o name); do
  "$kubectl" -n "$namespace" rollout status "$deployment" --timeout="$timeout"
done
echo "==> $overlay rolled out in namespace $namespace"
