#!/usr/bin/env bash
# Renders every overlay with `kubectl kustomize` and validates the result offline:
#  1. every object against the Kubernetes OpenAPI schemas (kubernetes-validate, strict: unknown
#     fields are errors), for the oldest and the newest Kubernetes versions we support;
#  2. KEDA ScaledObjects are SKIPPED by the schema check: kubernetes-validate bundles only the
#     core API schemas, and KEDA's CRD schema cannot be fetched offline (it lives in KEDA's
#     release manifests, not in any package registry we reach). Instead a structural check
#     below verifies what the deployment relies on (target exists, rabbitmq triggers on known
#     queues, host read from AMQP_URL, sane bounds);
#  3. dialfleet's own rules: probes on /readyz and /healthz, non-root read-only containers,
#     resources set, and terminationGracePeriodSeconds above the drain (SHUTDOWN_GRACE_SECS).
#
# Usage: deploy/k8s/validate.sh            (KUBECTL=/path/to/kubectl to pick another kubectl)
# Needs python3; installs kubernetes-validate from PyPI when missing. Takes a few seconds.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

# Oldest supported (autoscaling/v2 HPA and policy/v1 PDB need >= 1.23; the validator bundles
# schemas from 1.25) and a current one.
K8S_VERSIONS="${K8S_VERSIONS:-1.25.0 1.33.0}"
KUBERNETES_VALIDATE_VERSION="${KUBERNETES_VALIDATE_VERSION:-1.37.0}"

kubectl="${KUBECTL:-}"
if [ -z "$kubectl" ]; then
  if [ -x /usr/bin/kubectl ]; then kubectl=/usr/bin/kubectl; else kubectl="$(command -v kubectl || true)"; fi
fi
[ -n "$kubectl" ] || { echo "error: kubectl not found (set KUBECTL)" >&2; exit 1; }

if ! python3 -c 'import kubernetes_validate, yaml' 2>/dev/null; then
  echo "==> installing kubernetes-validate $KUBERNETES_VALIDATE_VERSION from PyPI"
  python3 -m pip install --quiet --disable-pip-version-check \
    "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" pyyaml
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

status=0
for overlay in "$here"/overlays/*/; do
  name="$(basename "$overlay")"
  rendered="$work/$name.yaml"
  echo "==> $name: rendering with $("$kubectl" version --client 2>/dev/null | head -n1 | tr -s ' ')"
  # Deprecation warnings of newer kustomize (bases, patchesStrategicMerge, commonLabels: kept
  # on purpose so kubectl 1.20's kustomize renders the same files) go to stderr; drop them.
  if ! "$kubectl" kustomize "$overlay" >"$rendered" 2>"$work/$name.err"; then
    cat "$work/$name.err" >&2
    echo "error: $name does not render" >&2
    status=1
    continue
  fi
  if ! python3 "$here/check_rendered.py" "$rendered" "$work/$name.core.yaml"; then
    status=1
  fi
  for version in $K8S_VERSIONS; do
    if python3 -m kubernetes_validate --strict --quiet --no-warn -k "$version" "$work/$name.core.yaml"; then
      echo "    schemas: all core objects valid for Kubernetes $version"
    else
      echo "error: $name fails schema validation for Kubernetes $version" >&2
      status=1
    fi
  done
done
[ "$status" -eq 0 ] && echo "==> every overlay renders and validates"
exit "$status"
