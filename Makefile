# Two commands for a fresh machine:  make serve  |  make test
# Needs make and a Python 3.11-3.13; the distribution's own (externally managed, PEP 668) is fine.
# uv comes from PATH, else it is installed into .tooling/, a private venv made with $(PYTHON):
# nothing is ever installed into $(PYTHON) itself. uv then builds .venv from uv.lock with $(PYTHON)
# (it never downloads an interpreter: python-downloads = "never").
#   PYTHON=python3.13 make serve                           another interpreter
#   make serve ARGS="--port 50052 --data-dir /tmp/sp"      arguments for `safepassage serve`
PYTHON ?= python3
ARGS ?=
TOOLING := .tooling
UV ?= $(or $(shell command -v uv 2>/dev/null),$(TOOLING)/bin/uv)
UV_BOOTSTRAP := $(filter $(TOOLING)/bin/uv,$(UV))
# The interpreter itself, not a launcher (pyenv's shim): uv keeps a .venv made from the same one.
PYTHON_PATH := $(shell $(PYTHON) -c 'import sys; print(sys.executable)' 2>/dev/null)
# The model build downloads one wheel with pip, or with `uv tool run` when no pip is at hand: the
# uv in use must be on its PATH.
WITH_UV := PATH="$(abspath $(dir $(UV))):$$PATH"
# What the server runs on (the server extra) and what builds its model pack (models); no dev
# tools, no optional backends. --inexact: a development venv keeps its tools.
SERVER_SET := --extra server --extra models --no-dev --inexact

.PHONY: setup setup-server venv-server serve test check benchmark proto models python

python:
	@test -n "$(PYTHON_PATH)" || { echo "make: cannot run $(PYTHON); install Python 3.11, 3.12 or 3.13 (Debian, Ubuntu: apt install python3 python3-venv), or name one: make PYTHON=python3.12 ..." >&2; exit 1; }

$(TOOLING)/bin/uv: | python
	@$(PYTHON) -c 'import ensurepip, venv' 2>/dev/null || { echo "make: uv is not on PATH and $(PYTHON) cannot make a venv to install it in; install python3-venv (Debian, Ubuntu: apt install python3-venv) or put uv on PATH" >&2; exit 1; }
	$(PYTHON) -m venv $(TOOLING)
	$(TOOLING)/bin/python -m pip install --quiet --disable-pip-version-check 'uv>=0.5,<1'

# Everything: all extras and the dev tools (make test, check, proto, benchmark).
setup: python $(UV_BOOTSTRAP)
	$(UV) sync --locked --all-extras --python $(PYTHON_PATH)
	$(WITH_UV) $(UV) run --no-sync python -m safepassage.model_pack.build --out var/models

venv-server: python $(UV_BOOTSTRAP)
	$(UV) sync --locked $(SERVER_SET) --python $(PYTHON_PATH)

setup-server: venv-server
	$(WITH_UV) $(UV) run --no-sync python -m safepassage.model_pack.build --out var/models

serve: setup-server
	$(UV) run --no-sync safepassage serve $(ARGS)

test: setup
	$(UV) run --no-sync pytest

# Lint, format, strict types over the package, tests and benchmarks, and the architecture rules
# (tests/test_architecture.py: which room may import which, no cycles, one status per error).
check: setup
	$(UV) run --no-sync ruff check .
	$(UV) run --no-sync ruff format --check .
	$(UV) run --no-sync mypy
	$(UV) run --no-sync pytest -q -p no:cacheprovider tests/test_architecture.py

models: venv-server
	$(WITH_UV) $(UV) run --no-sync python -m safepassage.model_pack.build --out var/models --force

proto: setup
	$(UV) run --no-sync python scripts/generate_api.py

benchmark: setup
	$(UV) run --no-sync python benchmarks/identify_benchmark.py
