.DEFAULT_GOAL := help
VENV := .venv

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --upgrade pip
	$(VENV)/bin/python -m pip install -q -e '.[all,dev]'
	touch $@

demo: $(VENV)/.installed ## run a real 200-card batch on the embedded default
	$(VENV)/bin/idbatch demo

test: ## create the venv, start services, run ruff, mypy and the whole test suite
	scripts/test.sh

lint: $(VENV)/.installed ## ruff + mypy only
	$(VENV)/bin/ruff check . && $(VENV)/bin/mypy

bench: $(VENV)/.installed ## run the benchmarks (each prints JSON)
	$(VENV)/bin/python bench/quota.py

.PHONY: help demo test lint bench
