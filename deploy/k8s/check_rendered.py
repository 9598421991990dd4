"""dialfleet's rules for a rendered overlay (called by validate.sh).

Writes the objects the Kubernetes schemas cover to OUT (KEDA ScaledObjects are left out: no
offline schema, see validate.sh) and checks the ScaledObjects structurally and the workloads
against our own rules. Exits 1, naming each problem, if anything is wrong.
"""

import sys

import yaml

KNOWN_QUEUES = {"dialfleet.ingest", "dialfleet.dial", "dialfleet.call-events"}
ROLES = {"api-gateway", "ingest-worker", "scheduler", "dial-worker"}
# The operators' objects of the HA overlay (no offline schema either): checked structurally.
SERVICE_APIS = ("postgresql.cnpg.io/", "rabbitmq.com/")


def check_services(services, problems):
    """A clustered broker that can lose a node; a PostgreSQL standby that is synchronous."""
    for doc in services:
        name, spec = doc["metadata"]["name"], doc.get("spec", {})
        if doc["kind"] == "RabbitmqCluster":
            replicas = spec.get("replicas", 1)
            if replicas < 3 or replicas % 2 == 0:
                problems.append(f"RabbitmqCluster {name}: replicas {replicas}, needs an odd number >= 3")
        elif doc["kind"] == "Cluster":
            if spec.get("instances", 1) < 2:
                problems.append(f"Cluster {name}: needs a standby (instances >= 2)")
            sync = spec.get("minSyncReplicas", 0) >= 1 or spec.get("postgresql", {}).get("synchronous")
            if not sync:
                problems.append(f"Cluster {name}: the standby must be synchronous "
                                "(asynchronous replication can lose an attempt row)")
        else:
            problems.append(f"{name}: unexpected {doc['apiVersion']}/{doc['kind']}")


def main(rendered, out):
    with open(rendered) as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    problems = []
    # Old kustomize leaves `{metadata: {namespace}}` stubs behind some patches: never apply one.
    for doc in [d for d in docs if "kind" not in d or "name" not in d.get("metadata", {})]:
        problems.append(f"object without kind or name: {doc}")
    docs = [d for d in docs if "kind" in d and "name" in d.get("metadata", {})]
    core, scaled, services = [], [], []
    for doc in docs:
        api = doc.get("apiVersion", "")
        if api.startswith("keda.sh/"):
            scaled.append(doc)
        elif api.startswith(SERVICE_APIS):
            services.append(doc)
        else:
            core.append(doc)
    by_kind = {}
    for doc in docs:
        by_kind.setdefault(doc["kind"], {})[doc["metadata"]["name"]] = doc

    deployments = by_kind.get("Deployment", {})
    missing = ROLES - set(deployments)
    if missing:
        problems.append(f"no Deployment for {sorted(missing)}")

    drain = None
    for cm in by_kind.get("ConfigMap", {}).values():
        if "SHUTDOWN_GRACE_SECS" in cm.get("data", {}):
            drain = int(cm["data"]["SHUTDOWN_GRACE_SECS"])
    if drain is None:
        problems.append("no ConfigMap sets SHUTDOWN_GRACE_SECS")

    for name, dep in deployments.items():
        pod = dep["spec"]["template"]["spec"]
        grace = pod.get("terminationGracePeriodSeconds", 30)
        if drain is not None and grace <= drain:
            problems.append(f"{name}: terminationGracePeriodSeconds {grace} <= drain {drain}")
        if not pod.get("securityContext", {}).get("runAsNonRoot"):
            problems.append(f"{name}: pod is not runAsNonRoot")
        for c in pod["containers"]:
            where = f"{name}/{c['name']}"
            sc = c.get("securityContext", {})
            if not sc.get("readOnlyRootFilesystem"):
                problems.append(f"{where}: root filesystem is writable")
            if sc.get("allowPrivilegeEscalation", True):
                problems.append(f"{where}: privilege escalation allowed")
            res = c.get("resources", {})
            if not res.get("requests") or not res.get("limits"):
                problems.append(f"{where}: resource requests and limits must both be set")
            if c.get("readinessProbe", {}).get("httpGet", {}).get("path") != "/readyz":
                problems.append(f"{where}: readiness probe is not /readyz")
            if c.get("livenessProbe", {}).get("httpGet", {}).get("path") != "/healthz":
                problems.append(f"{where}: liveness probe is not /healthz")

    for name in ("api-gateway",):
        if name not in by_kind.get("Service", {}):
            problems.append(f"no Service for {name}")
        hpa = by_kind.get("HorizontalPodAutoscaler", {}).get(name)
        if not hpa or hpa["spec"]["scaleTargetRef"]["name"] != name:
            problems.append(f"no HorizontalPodAutoscaler targeting {name}")
    pdbs = {p["spec"]["selector"]["matchLabels"].get("app.kubernetes.io/name")
            for p in by_kind.get("PodDisruptionBudget", {}).values()}
    if ROLES - pdbs:
        problems.append(f"no PodDisruptionBudget for {sorted(ROLES - pdbs)}")
    if not any(j["metadata"]["labels"].get("app.kubernetes.io/component") == "migration"
               for j in by_kind.get("Job", {}).values()):
        problems.append("no migration Job")

    # KEDA ScaledObject: structural check in place of the schema.
    targets = set()
    for so in scaled:
        name = so["metadata"]["name"]
        if so["kind"] != "ScaledObject" or so["apiVersion"] != "keda.sh/v1alpha1":
            problems.append(f"{name}: unexpected KEDA object {so['apiVersion']}/{so['kind']}")
            continue
        spec = so.get("spec", {})
        target = spec.get("scaleTargetRef", {}).get("name")
        targets.add(target)
        if target not in deployments:
            problems.append(f"ScaledObject {name}: target {target!r} is not a Deployment")
        elif "replicas" in deployments[target]["spec"]:
            problems.append(f"{target}: sets replicas although KEDA scales it")
        lo, hi = spec.get("minReplicaCount", 0), spec.get("maxReplicaCount", 100)
        if not (isinstance(lo, int) and isinstance(hi, int) and 0 <= lo <= hi):
            problems.append(f"ScaledObject {name}: bad bounds {lo}..{hi}")
        for t in spec.get("triggers") or [None]:
            if not t or t.get("type") != "rabbitmq":
                problems.append(f"ScaledObject {name}: trigger is not rabbitmq: {t}")
                continue
            md = t.get("metadata", {})
            if md.get("queueName") not in KNOWN_QUEUES:
                problems.append(f"ScaledObject {name}: unknown queue {md.get('queueName')!r}")
            if md.get("mode") != "QueueLength" or not str(md.get("value", "")).isdigit():
                problems.append(f"ScaledObject {name}: needs mode QueueLength and an integer value")
            if md.get("hostFromEnv") != "AMQP_URL":
                problems.append(f"ScaledObject {name}: host must come from AMQP_URL")
    for role in ("ingest-worker", "dial-worker"):
        if role not in targets:
            problems.append(f"no ScaledObject for {role}")

    check_services(services, problems)

    with open(out, "w") as f:
        yaml.safe_dump_all(core, f, sort_keys=False)
    print(f"    rules: {len(docs)} objects checked, {len(scaled)} KEDA ScaledObject(s) checked "
          f"structurally (no offline schema), {len(services)} service operator object(s) "
          "structurally")
    for p in problems:
        print(f"error: {p}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
