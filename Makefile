# Two commands for a fresh machine:  make serve  |  make test
# uv is installed with pip when missing; it then installs the locked environment.
PYTHON ?= python3
UV := $(PYTHON) -m uv

.PHONY: setup serve test check benchmark proto models

setup:
	@$(PYTHON) -m uv --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet 'uv>=0.5,<1'
	$(UV) sync --locked --all-extras
	$(UV) run python -m model_pack.build --out var/models

serve: setup
	$(UV) run safepassage serve

test: setup
	$(UV) run pytest

check: setup
	$(UV) run ruff check .
	$(UV) run mypy

models:
	$(UV) run python -m model_pack.build --out var/models --force

proto: setup
	$(UV) run python scripts/generate_api.py

benchmark: setup
	$(UV) run python benchmarks/identify_benchmark.py
