# The two commands a newcomer needs: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PROMTOOL := $(BIN)/promtool

.PHONY: run test lint bench install clean

run: $(STAMP)  ## the API and a worker in one process on localhost:8000 (no Redis needed)
	$(BIN)/p2p dev

# Four test processes on two cores: the end-to-end tests mostly wait on the processes they
# start. One test at a time to whichever is free (--maxschedchunk 1): handed out in chunks,
# the end-to-end tests, collected together and first (tests/conftest.py), ran one by one in
# a single process.
test: $(STAMP) $(PROMTOOL) lint  ## ruff, mypy --strict, then every test, in four processes (pytest-xdist)
	$(BIN)/pytest -n 4 --maxschedchunk 1

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
