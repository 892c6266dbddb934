#!/usr/bin/env bash
# `make shell`: a shell with the venv's `reconciler` on PATH (as `. .venv/bin/activate` gives).
# After `make demo`, the demo's service runs again in the background for as long as the shell
# (its database, so the users the demo applied; its admin reconciler@example.com and the keys in
# .reconciler/demo/), with the settings the demo used, so every README example works; leaving the
# shell stops it. Arguments run as a command in that environment instead of an interactive shell.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=$(cd "${DEMO_VENV:-.venv}" && pwd)
DEMO=.reconciler/demo
export VIRTUAL_ENV="$VENV" PATH="$VENV/bin:$PATH"

SERVICE_PID=""
if [ -f "$DEMO/env.sh" ] && [ -f "$DEMO/demo.env" ]; then
  set -a; . "$DEMO/demo.env"; . "$DEMO/env.sh"; set +a
  RECONCILER_SERVICE_ADMIN_KEY="$RECONCILER_API_KEY" reconciler-service run \
    --db "$DEMO/service.db" --port "$DEMO_PORT" --smtp-port "$RECONCILER_RELAY_PORT" \
    --admin-user "$RECONCILER_API_USER" >> "$DEMO/service.log" 2>&1 &
  SERVICE_PID=$!
  trap 'kill "$SERVICE_PID" 2>/dev/null; wait "$SERVICE_PID" 2>/dev/null || true' EXIT
  for _ in $(seq 1 100); do
    reconciler live > /dev/null 2>&1 && break
    kill -0 "$SERVICE_PID" 2>/dev/null || { tail -5 "$DEMO/service.log" >&2; exit 1; }
    sleep 0.1
  done
  echo "The demo's service runs at $RECONCILER_API_URL (admin $RECONCILER_API_USER) until you leave this shell." >&2
else
  echo "No demo service to start (run \`make demo\` first); reconciler is on PATH." >&2
fi
if [ "$#" -gt 0 ]; then
  "$@"
else
  echo "Try: reconciler status; reconciler plan; reconciler history. Leave with exit (or Ctrl-D)." >&2
  "${SHELL:-/bin/bash}" || true
fi
