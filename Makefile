# Two entry points for a newcomer: `make demo` and `make test`. Both set up .venv on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip install --quiet --disable-pip-version-check
# torch comes first, from PyTorch's CPU index: a bare `torch` from PyPI is the multi-GB CUDA build on Linux.
# A wheel pip finds through --find-links (pip.conf) wins too, as on this project's machines, where the
# index cannot be reached (pip warns and goes on). For a GPU: TORCH_INDEX=https://download.pytorch.org/whl/cu128
TORCH ?= torch==2.13.0
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
DEMO_DIR ?= demo_output
export TORCH TORCH_INDEX

.PHONY: install test test-fast demo lint dist floors clean bench

install: $(VENV)/.installed

$(VENV)/.installed: setup.cfg setup.py pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) --no-deps --retries 2 --index-url "$(TORCH_INDEX)" "$(TORCH)"
	$(PIP) -e ".[test]"
	touch $@

test: install  # the release tier (fresh-venv installs, minutes) runs in `make dist`
	$(BIN)/python -m pytest -q -m "not release"

test-fast: install  # the tier with no process, no server and no training (tests/conftest.py)
	$(BIN)/python -m pytest -q -m "not slow"

# About 2 minutes on 2 CPU cores once installed (measured 1 min 42 s on a quiet machine), most of it training,
# which prints a line per epoch; the stages' own output goes to $(DEMO_DIR)/logs.
# BENCH_DATA: the benchmarks in the authors' layout for the demo's bench slice (default: ../shared/data/bench if there).
demo: install
	HF_HUB_OFFLINE=1 $(BIN)/python examples/demo.py --output $(DEMO_DIR) $(if $(BENCH_DATA),--bench-data $(BENCH_DATA))

lint: install
	$(PIP) ruff
	$(BIN)/ruff check --select E4,E7,E9,F cbt_llm tests benchmarks examples scripts

# Wheel + sdist, twine's check, then each installed alone into a fresh venv and smoke-tested (scripts/smoke_install.py),
# and the release test tier: an exported Space installed alone into a fresh venv, as a Space builds it.
dist: install
	$(PIP) build twine
	rm -rf dist
	$(BIN)/python -m build --outdir dist .
	$(BIN)/python -m twine check --strict dist/*
	$(BIN)/python scripts/smoke_install.py dist/*.whl dist/*.tar.gz
	$(BIN)/python -m pytest -q -m release

# The wheel again with every dependency at its setup.cfg floor (torch excepted), checked, then the fast test tier
# against that install (FLOOR_TESTS=tests for the whole suite: about 10 more minutes). test_layout reads the
# checkout's sources, not the installation: `make test` runs it.
FLOOR_TESTS ?= tests -m "not slow" --ignore=tests/test_layout.py
floors: dist
	$(BIN)/python scripts/smoke_install.py --floors dist/*.whl --pytest $(FLOOR_TESTS)

clean:
	rm -rf $(VENV) $(DEMO_DIR) build dist *.egg-info

bench: install
	@for script in benchmarks/*.py; do echo "== $$script"; $(BIN)/python $$script || exit 1; done
