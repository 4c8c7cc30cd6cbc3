# llmrelay — every target works on a fresh machine with Python 3.11 and make.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# LiteLLM, a benchmark contender, lives in its own venv: it is not a dependency of llmrelay.
BENCH_VENV  := .bench-venv
BENCH_STAMP := $(BENCH_VENV)/.installed
PORT   ?= 8900

.PHONY: install install-semantic run test bench lint format clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH_CPU)
	$(BIN)/python -m pip install --quiet -e '.[redis,postgres,otel,langfuse,langchain,media,agents,semantic,report,dev]'
	@touch $(STAMP)

# The `semantic` extra needs torch, whose default wheel is a multi-GB CUDA build: this pinned
# version resolves to the CPU build here, so it is installed first.
TORCH_CPU := 'torch==2.13.0'

install: $(STAMP)  ## create .venv (idempotent) with the package, every extra and the dev tools

install-semantic: install  ## kept for old instructions: `make install` includes the semantic extra

run: $(STAMP)  ## serve the gateway on :8080; with no provider key set, over the simulator on :$(PORT)
	@echo 'then, in another shell: $(BIN)/llmrelay demo --url http://127.0.0.1:8080 --simulator http://127.0.0.1:$(PORT)'
	$(BIN)/llmrelay serve --simulator-port $(PORT)

test: $(STAMP)  ## the test suite (fast; no timed assertions)
	$(BIN)/python -m pytest -q

$(BENCH_STAMP):
	@test -x $(BENCH_VENV)/bin/python || $(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(BENCH_VENV)/bin/python -m pip install --quiet 'litellm[proxy]' openai granian starlette fastapi 'uvicorn[standard]'
	@touch $(BENCH_STAMP)

bench: $(STAMP) $(BENCH_STAMP)  ## benchmarks: ratios against a baseline measured in the same run
	$(BIN)/python -m benchmarks

lint: $(STAMP)  ## ruff, and mypy --strict on src/, tests/ and benchmarks/
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format src tests benchmarks
	$(BIN)/ruff check --fix src tests benchmarks

clean:
	rm -rf $(VENV) $(BENCH_VENV) .mypy_cache .ruff_cache .pytest_cache
