#!/bin/sh
# `make demo BACKEND=cmc-console`: the Customers Mail Cloud story against the stand-in (docs/cmc.md).
set -eu
cd "$(dirname "$0")/.."
exec .venv/bin/python scripts/demo_cmc.py
