#!/usr/bin/env bash
# `make demo`: the main job against the embedded service, start to finish.
#   1. start the embedded service on 127.0.0.1:8725 (SMTP relay on 2525) with a fresh database
#   2. as root with Postfix and Dovecot installed: start a throw-away gateway (scripts/mail_sandbox.py,
#      in a temp dir, never the system's mail server); otherwise the mail files go to the demo's
#      mail directory and the checks and reloads that cannot run here are skipped and named
#   3. validate users/, show the plan, reconcile (apply + render the mail files), plan again
#   4. with the gateway: send one message through it as billing@example.com, which the service's
#      relay records (`reconciler service messages`)
#   5. stop the gateway and the service, whatever happened
# Demo keys are generated into .reconciler/demo/ and secrets/legacy-crm.key (both git-ignored): no
# key is ever committed. `make shell` starts this service again afterwards (scripts/demo-shell.sh).
# DEMO_VENV points at another virtualenv (default .venv, made by `make setup`); DEMO_PORT,
# DEMO_SMTP_PORT and DEMO_SUBMISSION_PORT move the ports.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${DEMO_VENV:-.venv}/bin
DEMO=.reconciler/demo
PORT=${DEMO_PORT:-8725}
SMTP_PORT=${DEMO_SMTP_PORT:-2525}
SUBMISSION_PORT=${DEMO_SUBMISSION_PORT:-2587}
mkdir -p "$DEMO" secrets
chmod 700 "$DEMO"

key() { "$BIN/python" -c 'import secrets,string; a=string.ascii_letters+string.digits; print("k"+"".join(secrets.choice(a) for _ in range(30))+"7")'; }
if [ ! -f "$DEMO/demo.env" ] || grep -q '=$' "$DEMO/demo.env"; then
  admin=$(key); newsletter=$(key); billing=$(key)   # a failing key() stops here, not in an empty key
  (umask 077; printf 'RECONCILER_API_KEY=%s\nNEWSLETTER_API_KEY=%s\nBILLING_API_KEY=%s\n' \
    "$admin" "$newsletter" "$billing" > "$DEMO/demo.env")
fi
if [ ! -s secrets/legacy-crm.key ]; then legacy=$(key); (umask 077; echo "$legacy" > secrets/legacy-crm.key); fi
set -a; . "$DEMO/demo.env"; set +a
export RECONCILER_API_URL="http://127.0.0.1:$PORT/api/v2"
export RECONCILER_API_USER=reconciler@example.com
export RECONCILER_RELAY_PORT="$SMTP_PORT"
# The secret behind the key fingerprints, independent of every key (docs/security.md): made once,
# kept in .reconciler/fingerprint.secret (0600, git-ignored) like a CI secret would be.
"$BIN/reconciler" secret init --users users > /dev/null
# What `make shell` (scripts/demo-shell.sh) needs to start this service again, with these settings.
cat > "$DEMO/env.sh" <<ENV
DEMO_PORT=$PORT
RECONCILER_API_URL=$RECONCILER_API_URL
RECONCILER_API_USER=$RECONCILER_API_USER
RECONCILER_RELAY_PORT=$SMTP_PORT
RECONCILER_MAIL_CHECKS=skip
RECONCILER_MAIL_DIR=$PWD/$DEMO/mail
ENV

GATEWAY=""
SERVICE_PID=""
cleanup() {
  if [ -n "$GATEWAY" ]; then
    "$BIN/python" scripts/mail_sandbox.py down "$GATEWAY" || true
    rm -rf "$GATEWAY"
  fi
  if [ -n "$SERVICE_PID" ]; then kill "$SERVICE_PID" 2>/dev/null; wait "$SERVICE_PID" 2>/dev/null || true; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

rm -rf "$DEMO"/service.db* "$DEMO/mail"   # every demo starts from an empty service and gateway
RECONCILER_SERVICE_ADMIN_KEY="$RECONCILER_API_KEY" "$BIN/reconciler-service" run \
  --db "$DEMO/service.db" --port "$PORT" --smtp-port "$SMTP_PORT" --admin-user "$RECONCILER_API_USER" \
  > "$DEMO/service.log" 2>&1 &
SERVICE_PID=$!
for _ in $(seq 1 100); do
  grep -q "listening on" "$DEMO/service.log" 2>/dev/null && break
  kill -0 "$SERVICE_PID" 2>/dev/null || { cat "$DEMO/service.log"; exit 1; }
  sleep 0.1
done

if [ "$(id -u)" = 0 ] && command -v postfix >/dev/null && command -v dovecot >/dev/null \
    && [ -z "${DEMO_NO_GATEWAY:-}" ]; then
  step "start a throw-away gateway (Postfix + Dovecot in a temp dir, submission on 127.0.0.1:$SUBMISSION_PORT)"
  GATEWAY=$(mktemp -d /tmp/reconciler-demo-gateway.XXXXXX)
  settings=$("$BIN/python" scripts/mail_sandbox.py up "$GATEWAY" \
    --relay-port "$SMTP_PORT" --submission-port "$SUBMISSION_PORT")
  eval "$settings"   # export RECONCILER_MAIL_DIR=... and the gateway's other settings
  RELOAD=()
  WHAT="apply, then render, validate and reload the gateway's files"
else
  # No gateway to check or reload here: render into the demo's mail dir and name what is skipped.
  export RECONCILER_MAIL_CHECKS=skip RECONCILER_MAIL_DIR="$DEMO/mail"
  # As root, a system Postfix/Dovecot may be installed: the demo never reloads it.
  RELOAD=() WHAT="apply, then render the mail files into $DEMO/mail"
  if [ "$(id -u)" = 0 ]; then
    RELOAD=(--no-reload) WHAT="$WHAT; no reload: the demo never touches this machine's mail server"
  fi
fi

step "reconciler validate"
"$BIN/reconciler" validate
step "reconciler plan --detailed-exitcode   (exit 2: changes pending)"
rc=0; "$BIN/reconciler" plan --detailed-exitcode || rc=$?
[ "$rc" = 2 ] || { echo "expected exit 2 from plan, got $rc"; exit 1; }
step "reconciler reconcile --auto-approve ${RELOAD[*]}  ($WHAT)"
"$BIN/reconciler" reconcile --auto-approve "${RELOAD[@]}"
step "reconciler plan   (exit 0: nothing left to do)"
"$BIN/reconciler" plan
step "reconciler live"
"$BIN/reconciler" live

if [ -n "$GATEWAY" ]; then
  step "send one message through the gateway as billing@example.com; the service's relay records it"
  "$BIN/python" scripts/mail_sandbox.py send --port "$SUBMISSION_PORT" --login billing@example.com \
    --key-env BILLING_API_KEY --subject "reconciler demo"
  total=0
  for _ in $(seq 1 50); do
    total=$("$BIN/reconciler" service messages --format json | "$BIN/python" -c 'import json,sys; print(json.load(sys.stdin)["total"])')
    [ "$total" -gt 0 ] && break
    sleep 0.2
  done
  [ "$total" -gt 0 ] || { echo "the relay recorded no message"; exit 1; }
  step "reconciler service messages"
  "$BIN/reconciler" service messages
fi
step "done: rendered mail files are in $RECONCILER_MAIL_DIR"
cat <<DONE
The service ran at $RECONCILER_API_URL and is stopped now (so is any gateway the demo started).
Start it again, with the demo's users, admin ($RECONCILER_API_USER) and keys, in a shell that has
reconciler on PATH and the demo's settings, where every README example works:

  make shell
DONE
