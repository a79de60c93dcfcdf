# Two entry points (README Quick start): `make restore` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test

# torch first, pinned: here 2.13.0 is a CPU wheel on local disk; an open range pulls a CUDA build.
$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet "torch==2.13.0"
	$(BIN)/pip install --quiet -e .
	touch $(STAMP)

$(TEST_STAMP): $(STAMP)
	$(BIN)/pip install --quiet -e ".[test]"
	$(BIN)/pip install --quiet --no-deps "lpips>=0.1.4,<0.2"
	touch $(TEST_STAMP)

.PHONY: setup restore test lint bench bench-peers
setup: $(STAMP)

restore: $(STAMP)
	$(BIN)/facemend restore examples/photos -o out/examples --seed 0 --upscale 2

test: $(TEST_STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/python -m pytest -q -m "not slow"

lint: $(TEST_STAMP)
	$(BIN)/ruff check src tests benchmarks

bench-peers: $(STAMP)
	$(BIN)/pip install --quiet --no-deps gfpgan==1.3.8 codeformer-pip==0.0.4

bench: $(TEST_STAMP) bench-peers
	$(BIN)/facemend bench --out benchmarks/bench.json --md benchmarks/bench.md
