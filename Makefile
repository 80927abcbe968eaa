# The two commands of the quick start are `make demo` and `make test`.
# Each creates the virtual environment and installs the pinned versions of
# requirements.lock the first time, and again whenever the lock file changes.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test drills lint lock vendor bench clean

$(STAMP): requirements.lock pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "plantcore needs Python 3.11"'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m plantcore demo

# The suite and the fault drills run side by side: the drills mostly wait for
# their own servers (docs/reliability.md). The suite prints as it goes; the
# drills' output is kept in a log and printed after it. Both must pass.
DRILL_LOG := var/drills/drills.log

test: lint
	@mkdir -p $(dir $(DRILL_LOG))
	@$(BIN)/python -m pytest -m drill -p no:cacheprovider tests/drills > $(DRILL_LOG) 2>&1 & \
	drills=$$!; trap 'kill $$drills 2>/dev/null' INT TERM; \
	$(BIN)/python -m pytest -m "not drill"; suite=$$?; \
	wait $$drills; drilled=$$?; \
	echo "==== fault drills (make drills; log: $(DRILL_LOG)) ===="; cat $(DRILL_LOG); \
	echo "suite: exit $$suite, drills: exit $$drilled"; \
	test $$suite -eq 0 && test $$drilled -eq 0

drills: $(STAMP)
	$(BIN)/python -m pytest -m drill tests/drills

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy --strict domain

bench: $(STAMP)
	$(BIN)/python -m bench

# Re-pin after changing dependencies in pyproject.toml.
lock: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,embedded,parquet,simulators]'
	{ echo "# Exact versions every install uses (make installs from this file). Regenerate with: make lock"; \
	  $(BIN)/python -m pip freeze --exclude-editable | grep -vi '^plantcore'; } > requirements.lock

# Re-vendor the HMI's browser code (hmi/static/vendor, committed) after changing
# hmi/package.json or its lock file; needs npm. Nothing else ever runs npm.
vendor:
	bash hmi/vendor.sh

clean:
	rm -rf $(VENV) var
