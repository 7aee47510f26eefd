#!/usr/bin/env bash
# Runs schemathesis against /openapi.json of a real dev server: once with a
# device token, once with an admin key. Fails on any 5xx, undocumented status,
# wrong content type or response that violates the schema.
# Needs `pip install schemathesis` and a built target/debug/hookrelay.
set -euo pipefail
cd "$(dirname "$0")/.."
examples="${SCHEMATHESIS_EXAMPLES:-20}"
data=$(mktemp -d)
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
http=$(port); grpc=$(port)
HOOKRELAY_HTTP__LISTEN="127.0.0.1:$http" HOOKRELAY_GRPC__LISTEN="127.0.0.1:$grpc" \
HOOKRELAY_API__REQUESTS_PER_SECOND=100000 HOOKRELAY_API__BURST=100000 \
HOOKRELAY_API__AUTH_FAILURES_PER_SECOND=100000 HOOKRELAY_API__AUTH_FAILURES_BURST=100000 \
  ./target/debug/hookrelay serve --dev --data-dir "$data" > "$data.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true; rm -rf "$data" "$data.log"' EXIT
python3 - "$http" <<'PY'
import sys, time, urllib.request
for _ in range(300):
    try:
        if urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/readyz", timeout=1).status == 200:
            sys.exit(0)
    except Exception:
        time.sleep(0.1)
sys.exit("the dev server did not become ready")
PY
status=0
for key in device_token admin_key; do
  value=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$data/dev-credentials.json" "$key")
  echo "-- schemathesis with the $key"
  schemathesis run "http://127.0.0.1:$http/openapi.json" \
    -H "Authorization: Bearer $value" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
    -n "$examples" --no-color | tail -n 4 || status=1
done
exit $status
