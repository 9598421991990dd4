#!/usr/bin/env bash
# Runs Schemathesis against the gateway's /openapi.json: every operation is called with
# generated inputs (valid and invalid), and each answer must have a status the document lists,
# the content type it lists, and a body that matches the schema of that status; a 5xx fails too.
#
#   scripts/schemathesis.sh                 # brings the local stack up (deploy/local/up.sh)
#   BASE_URL=http://127.0.0.1:8080 API_KEY=df_... scripts/schemathesis.sh   # a running gateway
#
# MAX_EXAMPLES (default 50) bounds the cases per operation; extra arguments go to
# `schemathesis run` (e.g. --seed 1, --include-path-regex '^/api/dnc'). Reports land in
# .dialfleet/schemathesis/. Needs `pip install schemathesis` (and, for the extra spec check,
# openapi-spec-validator).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
state="$root/.dialfleet"

if [ -z "${API_KEY:-}" ]; then
  "$root/deploy/local/up.sh"
  API_KEY="$(sed -n 's/.*"apiKey":"\([^"]*\)".*/\1/p' "$state/dev-workspace.json")"
  BASE_URL="${BASE_URL:-http://${GATEWAY_ADDR:-127.0.0.1:8080}}"
fi
BASE_URL="${BASE_URL:-http://127.0.0.1:8080}"
command -v schemathesis >/dev/null || { echo "error: schemathesis is not installed (pip install schemathesis)" >&2; exit 1; }

mkdir -p "$state/schemathesis"
spec="$state/schemathesis/openapi.json"
curl -fsS "$BASE_URL/openapi.json" -o "$spec"

if python3 -c "import openapi_spec_validator" 2>/dev/null; then
  echo "==> openapi-spec-validator"
  python3 -m openapi_spec_validator "$spec"
fi

# Real resources for the routes that name one, so their calls reach past the 404: an agent, a
# job and a Dialgen batch, created for this run.
api() { curl -fsS -H "Authorization: Bearer $API_KEY" -H 'Content-Type: application/json' "$@"; }
id_of() { python3 -c 'import json,sys; d=json.load(sys.stdin); print(d.get("id") or d["batchId"])'; }
agent="$(api -X POST "$BASE_URL/api/agents" -d '{"name":"schemathesis","answerUrl":"https://agent.example/answer"}' | id_of)"
job="$(api -X POST "$BASE_URL/api/batch_dial_jobs" -d "{\"name\":\"schemathesis\",\"callAgentId\":\"$agent\",\"maxConcurrentDials\":1,\"rows\":[{\"toNumber\":\"+12015550100\"},{\"toNumber\":\"bad\"}]}" | id_of)"
batch="$(api -X POST "$BASE_URL/api/v1/batch" -d "{\"agentId\":\"$agent\",\"userId\":\"schemathesis\",\"contacts\":[{\"phoneNumber\":\"+12015550101\"}]}" | id_of)"
config="$state/schemathesis/schemathesis.toml"
: >"$config"
for entry in \
  "^/api/agents/ id $agent" \
  "^/api/batch_dial_jobs/ id $job" \
  "^/api/v1/batch/ id $batch" \
  "^/api/v1/(batch/check-status|status/batch) batchId $batch"; do
  read -r regex name value <<<"$entry"
  printf '[[operations]]\ninclude-path-regex = "%s"\nparameters = { %s = "%s" }\n\n' "$regex" "$name" "$value" >>"$config"
done

echo "==> schemathesis against $BASE_URL (agent $agent, job $job, batch $batch)"
exec schemathesis --config-file "$config" run "$spec" \
  --url "$BASE_URL" \
  -H "Authorization: Bearer $API_KEY" \
  --checks response_schema_conformance,status_code_conformance,content_type_conformance,not_a_server_error \
  --max-examples "${MAX_EXAMPLES:-50}" \
  --workers "${WORKERS:-2}" \
  --request-timeout 30 \
  --report junit,ndjson --report-dir "$state/schemathesis" \
  --no-color \
  "$@"
