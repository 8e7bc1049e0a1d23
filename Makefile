# sprx — everything a new machine needs starts from `make demo` or `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_VAULT ?= demo-vault
DEMO_PASSPHRASE ?= walking group on tuesday

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[tui,server,test]'
	touch $(STAMP)

demo: $(STAMP)
	@test -d $(DEMO_VAULT) || (echo "$(DEMO_PASSPHRASE)" | $(VENV)/bin/sprx demo --vault $(DEMO_VAULT) --passphrase-stdin)
	$(VENV)/bin/sprx --vault $(DEMO_VAULT)

test: $(STAMP)
	$(VENV)/bin/ruff check sprx_tui sync tests bench
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check sprx_tui sync tests bench
	$(VENV)/bin/ruff format --check sprx_tui sync tests bench

clean:
	rm -rf $(VENV) $(DEMO_VAULT) .pytest_cache .hypothesis
