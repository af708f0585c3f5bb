# Two entry points, both from nothing on a fresh machine:
#   make lab    set up, then open JupyterLab on the tutorial notebooks
#   make test   set up, then run the whole test suite (what CI runs)
#
# .venv is built in two steps, each with its own stamp: what a notebook user needs (a3s_nb
# with its notebook and export extras, and the a3s-code SDK), then, for make test only, the
# test tools on top (pytest, nbval, Playwright, moto, boto3, PySpark, ruff...).

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
LAB_STAMP  := $(VENV)/.lab-installed
TEST_STAMP := $(VENV)/.test-installed
LAB_PORT ?= 8888
# Install within the versions last tested (constraints.txt); UNPINNED=1 takes the newest.
PIN    := $(if $(UNPINNED),,-c constraints.txt)

.PHONY: lab test test-setup venv test-venv system otel-backend lint bench notebooks clean

# What a notebook user needs (the same as binder/requirements.txt installs).
venv: $(LAB_STAMP)

$(LAB_STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "a3s-code 3.1.0 ships a CPython 3.11 wheel only: install Python 3.11 (or run make PYTHON=/path/to/python3.11)"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(PIN) -e '.[all,export]' 'a3s-code==3.1.0'
	touch $@

# The test tools, added to the same environment.
test-venv: $(TEST_STAMP)

$(TEST_STAMP): $(LAB_STAMP)
	$(BIN)/python -m pip install --quiet $(PIN) -e '.[all,export,test]' 'a3s-code==3.1.0'
	touch $@

# Debian's packages the tests need, in one apt-get: Chromium for the browser tests (no
# browser download: the network allows none) and Java for the Spark test (pyspark runs
# Spark in a local JVM).
system:
	@if [ ! -x /usr/bin/chromium ] || ! command -v java >/dev/null 2>&1; then \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq \
	    chromium fonts-dejavu-core openjdk-17-jre-headless >/dev/null; \
	fi

# The OpenTelemetry backend of the export test: an MLflow tracking server in its own venv
# (MLflow pins an older pyarrow than ours). The test finds it at .venv-mlflow/bin/mlflow.
OTEL_VENV := .venv-mlflow
$(OTEL_VENV)/.installed: tests/backends/mlflow-requirements.txt
	$(PYTHON) -m venv $(OTEL_VENV)
	$(OTEL_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(OTEL_VENV)/bin/python -m pip install --quiet -r tests/backends/mlflow-requirements.txt
	touch $@

otel-backend: $(OTEL_VENV)/.installed

# Jupyter refuses to run as root unless told; containers and CI machines often are root.
lab: venv
	$(BIN)/jupyter lab --notebook-dir=notebooks --ServerApp.port=$(LAB_PORT) \
	  $$( [ "$$(id -u)" = 0 ] && echo --allow-root )

# The three setups are independent (the venv, Debian's packages, MLflow's venv): they run
# side by side.
test:
	$(MAKE) -j3 test-setup
	$(MAKE) lint
	$(BIN)/python -m pytest --durations=25

test-setup: test-venv system otel-backend

lint: test-venv
	$(BIN)/ruff check a3s_nb tests benchmarks notebooks/execute.py
	$(BIN)/ruff format --check a3s_nb tests benchmarks notebooks/execute.py

bench: test-venv
	$(BIN)/python benchmarks/bench_store.py
	$(BIN)/python benchmarks/bench_save.py
	$(BIN)/python benchmarks/bench_secrets.py
	$(BIN)/python benchmarks/bench_autosave.py
	$(BIN)/python benchmarks/bench_frames.py

# Re-run the tutorial notebooks and save them with their outputs (what nbval then checks).
notebooks: venv
	$(BIN)/python notebooks/execute.py

clean:
	rm -rf $(VENV) $(OTEL_VENV) .pytest_cache
