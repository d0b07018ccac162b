# The two set-up commands of the README. Both make a virtual environment in .venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# import-linter reads the source tree of the import name evalkit, but runtimes/, preprocess/ and conf/ sit at the
# repository root and install as evalkit.runtimes, evalkit.preprocess, evalkit.conf: lint a copy laid out as installed.
IMPORTS := build/imports

.PHONY: demo test lint-imports
demo: $(BIN)/python
	$(BIN)/pip install -q -e '.[demo]'
	$(BIN)/python -m evalkit

lint-imports: $(BIN)/python
	rm -rf $(IMPORTS) && mkdir -p $(IMPORTS)
	cp -R evalkit $(IMPORTS)/evalkit
	cp -R runtimes $(IMPORTS)/evalkit/runtimes
	cp -R preprocess $(IMPORTS)/evalkit/preprocess
	cp -R conf $(IMPORTS)/evalkit/conf
	cd $(IMPORTS) && PYTHONPATH=. $(CURDIR)/$(BIN)/lint-imports $(CURDIR)/pyproject.toml --no-cache

test: $(BIN)/python
	$(BIN)/pip install -q -e '.[dev]'
	$(MAKE) lint-imports
	$(BIN)/python -m pytest
