# Two entry points for a newcomer: `make demo` and `make test`. Both set up .venv on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# A CPU build of torch: on this project's machines pip finds this release on local disk in seconds,
# while a bare `torch` requirement would pull a multi-GB CUDA build.
TORCH ?= torch==2.13.0
DEMO_DIR ?= demo_output

.PHONY: install test test-fast demo lint clean bench

install: $(VENV)/.installed

$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check "$(TORCH)"
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[test]"
	touch $@

test: install
	$(BIN)/python -m pytest -q

test-fast: install  # the tier with no process, no server and no training (tests/conftest.py)
	$(BIN)/python -m pytest -q -m "not slow"

demo: install
	HF_HUB_OFFLINE=1 $(BIN)/python examples/demo.py --output $(DEMO_DIR)

lint: install
	$(BIN)/python -m pip install --quiet --disable-pip-version-check ruff
	$(BIN)/ruff check --select E4,E7,E9,F cbt_llm tests benchmarks examples

clean:
	rm -rf $(VENV) $(DEMO_DIR) build dist *.egg-info

bench: install
	@for script in benchmarks/*.py; do echo "== $$script"; $(BIN)/python $$script || exit 1; done
