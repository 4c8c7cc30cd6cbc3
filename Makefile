# llmrelay — every target works on a fresh machine with Python 3.11 and make.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PORT   ?= 8900

.PHONY: install run test bench lint format clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[redis,postgres,otel,langchain,dev]'
	@touch $(STAMP)

install: $(STAMP)  ## create .venv (idempotent) with the package, its extras and the dev tools

run: $(STAMP)  ## start the provider simulator with the default models
	$(BIN)/llmrelay simulate --port $(PORT)

test: $(STAMP)  ## the test suite (fast; no timed assertions)
	$(BIN)/python -m pytest -q

bench: $(STAMP)  ## benchmarks: ratios against a baseline measured in the same run
	$(BIN)/python -m benchmarks

lint: $(STAMP)  ## ruff and mypy --strict on src/
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format src tests benchmarks
	$(BIN)/ruff check --fix src tests benchmarks

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
