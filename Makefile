# sprx — everything a new machine needs starts from `make demo` or `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_VAULT ?= demo-vault
DEMO_PASSPHRASE ?= walking group on tuesday

.PHONY: demo check test lint bench clean lock

# Tests run in parallel (pytest-xdist), a whole file to a worker (--dist loadfile), so a module's
# fixtures (a demo vault, a CLI run, a server) are built once; each worker has its own temp folder,
# ports and PostgreSQL cluster. Four workers on two cores: app tests spend much of their time waiting
# (timers, workers, subprocesses), so the fast tier took 142 s with 4 workers against 178 s with 2.
# --durations lists the slowest tests after each run: where a slow run spent its time. For CPU rather than
# wall time, add --cpu-report (tests/cpu_report.py): CPU per file, fixture and test, and in the collector.
WORKERS ?= 4
# Bytecode caches on, even where the environment turns them off (PYTHONDONTWRITEBYTECODE=1 on these
# machines): otherwise every worker and every subprocess a test starts (the CLI, a server) compiles the
# package again, and pytest re-rewrites the asserts of every test module and plugin (collection took
# 11 s of CPU per worker instead of 4). __pycache__ is ignored by git.
unexport PYTHONDONTWRITEBYTECODE
# --no-loadscope-reorder: pytest-xdist hands out files in collection order, where tests/conftest.py puts the
# longest first (by default xdist 3 reorders files by their number of tests, which put the long ones last).
# Here rather than in pyproject's addopts, so that pytest without xdist (-p no:xdist) still runs.
PYTEST := $(PY) -m pytest -q -n $(WORKERS) --dist loadfile --no-loadscope-reorder --durations=15

# Installs are reproducible: every package comes at the version in requirements-lock.txt (`make lock`
# regenerates it). The lock is a constraints file, so it pins versions without adding packages.
LOCK := requirements-lock.txt
EXTRAS := .[tui,server,test]

$(STAMP): pyproject.toml $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c $(LOCK) -e '$(EXTRAS)'
	touch $(STAMP)

# A throwaway venv resolves pyproject.toml afresh (newest versions it allows), then its versions become the lock.
lock:
	rm -rf .lock-venv
	$(PYTHON) -m venv .lock-venv
	.lock-venv/bin/python -m pip install --quiet --upgrade pip
	.lock-venv/bin/python -m pip install --quiet -e '$(EXTRAS)'
	{ echo "# Exact versions every install uses: make installs with pip install -c $(LOCK) -e '$(EXTRAS)'."; \
	  echo "# Regenerate with make lock (a throwaway venv resolves pyproject.toml afresh, then pip freeze). Python 3.11+."; \
	  .lock-venv/bin/python -m pip freeze --exclude-editable; } > $(LOCK)
	rm -rf .lock-venv

demo: $(STAMP)
	@test -d $(DEMO_VAULT) || (echo "$(DEMO_PASSPHRASE)" | $(VENV)/bin/sprx demo --vault $(DEMO_VAULT) --passphrase-stdin)
	$(VENV)/bin/sprx --vault $(DEMO_VAULT)

# Before each commit: lint, formatting, import contracts and the fast tier (everything not marked slow).
check: lint
	$(PYTEST) -m "not slow"

# Before a push and in CI (.ci/run): the same lint and every test, slow ones included.
test: lint
	$(PYTEST)

lint: $(STAMP)
	$(VENV)/bin/ruff check
	$(VENV)/bin/ruff format --check
	$(VENV)/bin/lint-imports

clean:
	rm -rf $(VENV) $(DEMO_VAULT) .pytest_cache .hypothesis .import_linter_cache
