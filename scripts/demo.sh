#!/usr/bin/env bash
# `make demo`: the main job against the embedded service, start to finish.
#   1. start the embedded service on 127.0.0.1:8725 (SMTP relay on 2525) with a fresh database
#   2. validate users/, show the plan, reconcile (apply + render the mail files), plan again
#   3. stop the service
# Demo keys are generated into .reconciler/demo/ (git-ignored): no key is ever committed.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
DEMO=.reconciler/demo
PORT=${DEMO_PORT:-8725}
SMTP_PORT=${DEMO_SMTP_PORT:-2525}
mkdir -p "$DEMO" secrets
chmod 700 "$DEMO"

key() { "$BIN/python" -c 'import secrets,string; a=string.ascii_letters+string.digits; print("k"+"".join(secrets.choice(a) for _ in range(30))+"7")'; }
if [ ! -f "$DEMO/demo.env" ]; then
  umask 077
  { echo "RECONCILER_API_KEY=$(key)"; echo "NEWSLETTER_API_KEY=$(key)"; echo "BILLING_API_KEY=$(key)"; } > "$DEMO/demo.env"
fi
[ -f secrets/legacy-crm.key ] || (umask 077; key > secrets/legacy-crm.key)
set -a; . "$DEMO/demo.env"; set +a
export RECONCILER_API_URL="http://127.0.0.1:$PORT/api/v2"
export RECONCILER_API_USER=reconciler@example.com
export RECONCILER_MAIL_DIR="$DEMO/mail"
export RECONCILER_RELAY_PORT="$SMTP_PORT"

rm -rf "$DEMO"/service.db* "$DEMO/mail"   # every demo starts from an empty service and gateway
RECONCILER_SERVICE_ADMIN_KEY="$RECONCILER_API_KEY" "$BIN/reconciler" service run \
  --db "$DEMO/service.db" --port "$PORT" --smtp-port "$SMTP_PORT" --admin-user "$RECONCILER_API_USER" \
  > "$DEMO/service.log" 2>&1 &
SERVICE_PID=$!
trap 'kill "$SERVICE_PID" 2>/dev/null; wait "$SERVICE_PID" 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  grep -q "listening on" "$DEMO/service.log" 2>/dev/null && break
  kill -0 "$SERVICE_PID" 2>/dev/null || { cat "$DEMO/service.log"; exit 1; }
  sleep 0.1
done

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
step "reconciler validate"
"$BIN/reconciler" validate
step "reconciler plan   (exit 2: changes pending)"
rc=0; "$BIN/reconciler" plan || rc=$?
[ "$rc" = 2 ] || { echo "expected exit 2 from plan, got $rc"; exit 1; }
step "reconciler reconcile --auto-approve --no-reload   (apply, then render the mail files)"
"$BIN/reconciler" reconcile --auto-approve --no-reload --mail-dir "$DEMO/mail"
step "reconciler plan   (exit 0: nothing left to do)"
"$BIN/reconciler" plan
step "reconciler live"
"$BIN/reconciler" live
step "done: the service ran at $RECONCILER_API_URL; rendered mail files are in $DEMO/mail"
