# The two commands of the quick start are `make demo` and `make test`.
# Each creates the virtual environment and installs the pinned versions of
# requirements.lock the first time, and again whenever the lock file changes.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint lock bench clean

$(STAMP): requirements.lock pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "plantcore needs Python 3.11"'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m plantcore demo

test: lint
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy --strict domain

bench: $(STAMP)
	$(BIN)/python -m bench

# Re-pin after changing dependencies in pyproject.toml.
lock: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,embedded,simulators]'
	{ echo "# Exact versions every install uses (make installs from this file). Regenerate with: make lock"; \
	  $(BIN)/python -m pip freeze --exclude-editable | grep -vi '^plantcore'; } > requirements.lock

clean:
	rm -rf $(VENV) var
