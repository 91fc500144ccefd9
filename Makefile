# The two commands of the README: `make demo` (main job) and `make test` (test suite).
# Both set up the environment first (tools/install.sh, idempotent).
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup demo test test-fast docs bench help

help:
	@echo "make demo   install, then run egs/synthetic end to end (the main job)"
	@echo "make test   install, then run the test suite"
	@echo "make test-fast  the unit tests and doctests only (a few minutes)"
	@echo "make docs   build the documentation site into docs/_build/html"
	@echo "make bench  install, then print the performance ratios (bench/run_all.py)"

setup:
	bash tools/install.sh --venv $(VENV)

demo: setup
	MOWE_PYTHON=$(abspath $(PY)) bash egs/synthetic/run.sh

# the test suite and the docstring examples of mowe/ (SpeechBrain's --doctest-modules)
test: setup
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q --doctest-modules mowe tests

# the quick loop: unit tests (tests/unit) and the docstring examples, no `slow` test
test-fast: setup
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q -m "not slow" --doctest-modules mowe tests/unit

# the documentation site, warnings as errors (tests/integration/test_docs.py does the same)
docs: setup
	HF_HUB_OFFLINE=1 $(PY) -m sphinx -W --keep-going -b html docs docs/_build/html

bench: setup
	HF_HUB_OFFLINE=1 $(PY) bench/run_all.py $(BENCH_ARGS)
