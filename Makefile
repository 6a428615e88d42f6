# tierwise: `make run` builds a demo workspace and serves it; `make test` runs every test.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DEMO ?= demo-workspace
DEMO_CUSTOMERS ?= 20000
DEMO_USER ?= demo
DEMO_PASSWORD ?= tierwise-demo

BUNDLE := src/tierwise/dashboard/static/build/app.js

.PHONY: setup run test lint bench clean

setup: $(VENV)/.installed $(BUNDLE)
	@# Bytecode for the package, as a regular install has it: commands then start ~0.1 s
	@# sooner where the environment stops Python from writing it (PYTHONDONTWRITEBYTECODE).
	@$(PY) -m compileall -q src/tierwise

# The dashboard's script: ECharts and our code from npm (web/package-lock.json), bundled.
$(BUNDLE): web/package.json web/package-lock.json web/build.mjs web/src/app.js
	@command -v npm >/dev/null || { echo "npm is needed to build the dashboard's script" \
	  "(Debian: apt-get install nodejs npm)"; exit 1; }
	cd web && npm ci --no-audit --no-fund --loglevel=error && npm run --silent build

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	# The CDNOW data set ships inside this wheel; its own dependencies are not needed.
	$(PY) -m pip install -q --no-deps lifetimes==0.11.3
	touch $@

run: setup
	@if [ ! -f $(DEMO)/tierwise.toml ]; then \
	  $(VENV)/bin/tierwise demo -w $(DEMO) --customers $(DEMO_CUSTOMERS) --seed 7 --showcase; \
	else \
	  $(VENV)/bin/tierwise status -w $(DEMO) && $(VENV)/bin/tierwise tiers -w $(DEMO); \
	fi
	@TIERWISE_PASSWORD='$(DEMO_PASSWORD)' $(VENV)/bin/tierwise users add $(DEMO_USER) \
	  --role admin --if-missing -w $(DEMO)
	@echo "Workspace: $(DEMO)  (try: $(VENV)/bin/tierwise customers show C000123 -w $(DEMO);"
	@echo "  $(VENV)/bin/tierwise segments preview \"COUNT(orders, LAST 90d) >= 2\" -w $(DEMO))"
	@echo "Dashboard: http://127.0.0.1:8000/  API: /docs  sign in as $(DEMO_USER) / $(DEMO_PASSWORD)"
	$(VENV)/bin/tierwise serve -w $(DEMO)

test: setup
	scripts/test

lint: setup
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/mypy src
	PYTHONPATH=src $(VENV)/bin/lint-imports

bench: setup
	$(PY) bench/run.py

clean:
	rm -rf $(VENV) $(DEMO) .pytest_cache web/node_modules src/tierwise/dashboard/static/build
