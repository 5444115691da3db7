# neurocompile: `make demo` runs the main job, `make test` runs the tests; both set up .venv first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
NC := $(VENV)/bin/neurocompile
STAMP := $(VENV)/.installed
JOBS ?= 2

.PHONY: setup demo test lint bench netx-env clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# torch 2.13.0 CPU comes from the wheel on disk; pinning it keeps pip from fetching a CUDA build.
	$(PIP) install -q torch==2.13.0
	# lava-nc 0.10.0 declares python<3.11: install it without its python check, with its pins.
	$(PIP) install -q "numpy>=1.24.4,<2" "scipy>=1.10.1,<1.15" "networkx<=2.8.7" "asteval>=0.9.31,<0.10"
	$(PIP) install -q --no-deps --ignore-requires-python lava-nc==0.10.0
	$(PIP) install -q -e ".[lava,test]"
	touch $(STAMP)

demo: setup
	bash tools/demo.sh

lint: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

test: lint
	$(PY) -m pytest -q -n $(JOBS) tests

bench: setup
	$(PY) tools/bench.py --json out/bench.json --plot out/bench.png

# lava-dl's netx in a throwaway environment (/tmp/netx-venv), the oracle of tests/hardware/test_netx.py
netx-env:
	bash tools/netx_env.sh

clean:
	rm -rf $(VENV) build *.egg-info out
