# The two commands a newcomer needs: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PROMTOOL := $(BIN)/promtool

.PHONY: run test lint bench install clean

run: $(STAMP)  ## the API and a worker in one process on localhost:8000 (no Redis needed)
	$(BIN)/p2p dev

test: $(STAMP) $(PROMTOOL) lint  ## ruff, mypy --strict, then every test, in two processes (pytest-xdist)
	$(BIN)/pytest -n 2

bench: $(STAMP)  ## the real stack on loopback against its ceilings (needs redis-server)
	$(BIN)/p2p bench $(BENCH_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

install: $(STAMP) $(PROMTOOL)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is needed")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# The alert rules' checker for tests/deploy/, from Debian's prometheus package.
$(PROMTOOL): | $(STAMP)
	deploy/get-promtool $(PROMTOOL)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache *.egg-info
