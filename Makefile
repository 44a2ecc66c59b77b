# Two commands do all the set-up on a fresh clone:  make run  and  make test.
# The venv is created if missing. constraints.txt pins torch's version, so a CPU torch already in the venv
# (or a local CPU wheel, as on CI) is kept; on Linux, install one first for a CPU-only machine (README, Install).
# make test-fast skips the slow learning tests (pytest -m "not slow"); make test runs the whole suite.
VENV   ?= .venv
PYTHON ?= python3
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.deeprl-installed

.PHONY: install run test test-fast lint format bench docs clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# The README's main example: PPO on CartPole-v1 (solves it in well under a minute on 2 CPU cores).
run: $(STAMP)
	$(VENV)/bin/deeprl train ppo CartPole-v1

test: $(STAMP)
	$(PY) -m pytest -q

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

# ruff: lint (pyflakes, pycodestyle, import order, bugbear, pyupgrade) and the formatter's check; CI runs it.
LINTED := deeprl tests benchmarks docs notebooks
lint: $(STAMP)
	$(VENV)/bin/ruff check $(LINTED)
	$(VENV)/bin/ruff format --check $(LINTED)

format: $(STAMP)
	$(VENV)/bin/ruff check --fix $(LINTED)
	$(VENV)/bin/ruff format $(LINTED)

bench: $(STAMP)
	$(PY) benchmarks/tabular_throughput.py

# API docs of the public Python API (pdoc), into site/api/index.html.
docs: $(STAMP)
	$(PY) docs/build_api.py site/api

clean:
	rm -rf $(VENV) runs .pytest_cache *.egg-info
