# The two commands of the README: `make demo` and `make test`. Everything else supports them.
# bash with pipefail: a failing pip or meltano fails its pipe (installs show progress through one)
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
PYTHON ?= python3
# make test runs the suite side by side: many tests wait on emulator rate windows, processes
# and servers, so more workers than cores pays off (each file runs whole on one worker)
TEST_WORKERS ?= 4
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed

.PHONY: install plugins test demo soak bench bench-emulator bench-reconcile lint catalog plugin-definition clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else "Python 3.10+ is needed (found " + sys.version.split()[0] + ")")'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV) || { echo "error: could not create $(VENV) (is python3-venv installed?)"; exit 1; }
	@$(PIP) install -q --upgrade pip >/dev/null 2>&1 || true
	@echo "Installing tap-apixx and its development tools into $(VENV) ..."
	@$(PIP) install -e ".[dev]" 2>&1 | tee .pip-install.log | $(PROGRESS) || { tail -30 .pip-install.log; echo "error: installing tap-apixx and its test tools failed (log above, full log in .pip-install.log)"; exit 1; }
	@touch $(STAMP)

# one numbered line per package pip collects, then its summary (the whole log stays in the file)
PROGRESS = awk '/^Collecting / {n++; printf "  [%d] %s\n", n, $$2; fflush()} /^Successfully installed/ {print "  installed " NF - 2 " packages"; fflush()}'

PLUGINS := .meltano/.plugins-installed

# UV_COMPILE_BYTECODE: Meltano installs plugins with uv, which by default leaves them without
# bytecode, so every start of a tap or target compiled its imports again (target-postgres: 3.8 s
# instead of 1.5 s per start; docs/performance.md)
$(PLUGINS): meltano.yml $(STAMP)
	@mkdir -p output
	@echo "Installing the Meltano plugins of meltano.yml ..."
	@UV_COMPILE_BYTECODE=1 $(VENV)/bin/meltano install 2>&1 | tee .meltano-install.log | awk '/Install(ing|ed) / {sub(/.*meltano +/, "  "); print; fflush()}' || { tail -30 .meltano-install.log; echo "error: 'meltano install' could not install the plugins of meltano.yml (log above, full log in .meltano-install.log)"; exit 1; }
	@touch $(PLUGINS)

install: $(STAMP)

plugins: $(PLUGINS)

# compileall: the suite starts hundreds of Python processes from this tree (the tap, the
# emulator); with bytecode written once they skip compiling it (even where
# PYTHONDONTWRITEBYTECODE is set, which stops Python from writing it itself)
test: install plugins
	@$(PY) -m compileall -q tap_apixx apixx_emulator apixx_webhooks scripts >/dev/null
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile

soak: install plugins
	$(PY) -m pytest -m soak -p no:cacheprovider
	APIXX_FUZZ_EXAMPLES=$${APIXX_FUZZ_EXAMPLES:-500} $(PY) -m pytest -p no:cacheprovider tests/emulator/test_emulator_fuzz.py
	$(PY) scripts/reliability_report.py

bench-emulator: install
	$(PY) scripts/bench_emulator.py

# reconcile's sweep of a 100,000-record entity under the real 600/min budget (docs/reconcile.md)
bench-reconcile: install
	$(PY) scripts/bench_reconcile.py

BENCH_STAMP := $(VENV)/.bench-installed

$(BENCH_STAMP): pyproject.toml $(STAMP)
	@echo "Installing the benchmark's tools (dlt, pyinstrument) into $(VENV) ..."
	@$(PIP) install -e ".[dev,bench]" 2>&1 | tee $(VENV)/pip-bench.log | $(PROGRESS) || { tail -30 $(VENV)/pip-bench.log; echo "error: installing the bench extra failed (full log in $(VENV)/pip-bench.log)"; exit 1; }
	@touch $(BENCH_STAMP)

# several minutes: throughput of the tap, a baseline, meltano run, dlt, and rate-budget use
bench: install plugins $(BENCH_STAMP)
	@$(PY) -m compileall -q tap_apixx apixx_emulator scripts >/dev/null
	$(PY) scripts/bench.py

demo: install plugins
	$(PY) scripts/demo.py

lint: install
	$(VENV)/bin/ruff check tap_apixx apixx_emulator apixx_webhooks tests scripts
	$(VENV)/bin/ruff format --check tap_apixx apixx_webhooks
	$(VENV)/bin/mypy

# the Meltano plugin definition file, as Meltano Hub lists plugins, from `tap-apixx --about`
plugin-definition: install
	$(PY) scripts/hub_definition.py > plugins/extractors/tap-apixx--apixx.yml.tmp && mv plugins/extractors/tap-apixx--apixx.yml.tmp plugins/extractors/tap-apixx--apixx.yml

# discovery needs no key: the streams and schemas are static
catalog: install
	$(VENV)/bin/tap-apixx --discover > catalog/catalog.json.tmp && mv catalog/catalog.json.tmp catalog/catalog.json

clean:
	rm -rf $(VENV) .meltano .pytest_cache output/*.duckdb output/jsonl .meltano-install.log
