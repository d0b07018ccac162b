# The two set-up commands of the README. Both make a virtual environment in .venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

.PHONY: demo test
demo: $(BIN)/python
	$(BIN)/pip install -q -e '.[demo]'
	$(BIN)/python -m evalkit

test: $(BIN)/python
	$(BIN)/pip install -q -e '.[dev]'
	$(BIN)/python -m pytest
