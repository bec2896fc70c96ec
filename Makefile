# The README's two commands are `make run` and `make test`; both create the venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test test-slow test-unit test-reliability soak lint format bench bench-quick mutate clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/jobsys db upgrade
	$(BIN)/jobsys run

# The main suite; the long drills (marked slow) run in `make test-slow`, CI's second phase.
test: $(STAMP)
	$(BIN)/pytest -q --durations=25 -m "not slow" tests

test-slow: $(STAMP)
	$(BIN)/pytest -q --durations=15 -m slow tests

test-unit: $(STAMP)
	$(BIN)/pytest -q tests/unit

# The fault drills, hostile input and fuzzing (also part of `make test`).
test-reliability: $(STAMP)
	$(BIN)/pytest -q tests/reliability

# 20,000 jobs through a live stack; Redis memory before, after, and once TTLs pass.
soak: $(STAMP)
	$(BIN)/python -m tests.reliability.soak 20000

# Issue 16's table against raw Celery, measured in one run (bench/__main__.py);
# writes bench/results.json. Exit 1 only if a row could not be measured.
bench: $(STAMP)
	$(BIN)/python -m bench

# The same harness on small sizes, about a minute; CI runs it (no timed assert).
bench-quick: $(STAMP)
	$(BIN)/python -m bench --quick

# Mutation testing of five modules, each against its own fast unit tests
# (pyproject.toml [tool.jobsys.mutate]); prints killed/survived per module.
# Not part of CI. One module: make mutate MODULES=jobsys/auth.py
MODULES ?=
MUTATE_CHILDREN ?= 2
mutate: $(STAMP)
	$(BIN)/pip install --quiet -e '.[test,mutate]'
	$(BIN)/python scripts/mutate.py --max-children $(MUTATE_CHILDREN) $(MODULES)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .jobsys .pytest_cache .ruff_cache *.egg-info
