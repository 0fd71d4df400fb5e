# decodekit developer commands. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# Re-install the Python tooling when the dependency lists change.
STAMP_TEST := $(VENV)/.stamp-test
STAMP_BENCH := $(VENV)/.stamp-bench
STAMP_LINT := $(VENV)/.stamp-lint

.PHONY: help
help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-11s %s\n", $$1, $$2}'

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

$(STAMP_TEST): pyproject.toml | $(PY)
	$(PIP) install --quiet "maturin>=1.7,<2" numpy pytest hypothesis scipy pytest-benchmark
	touch $@

$(STAMP_BENCH): pyproject.toml $(STAMP_TEST)
	$(PIP) install --quiet torch
	touch $@

$(STAMP_LINT): pyproject.toml $(STAMP_TEST)
	$(PIP) install --quiet ruff mypy
	touch $@

.PHONY: build-dev
build-dev: $(STAMP_TEST) ## Build the extension (release profile) into .venv
	VIRTUAL_ENV=$(abspath $(VENV)) PATH=$(abspath $(VENV))/bin:$$PATH $(PY) -m maturin develop --release --quiet

.PHONY: build-prod
build-prod: $(STAMP_TEST) ## Build the abi3 wheel into target/wheels
	$(PY) -m maturin build --release --out target/wheels

.PHONY: test
test: build-dev ## Build, then run cargo test and pytest (what CI runs)
	cargo test --release
	$(PY) -m pytest tests
	$(PY) -m pytest bench --benchmark-disable -q

.PHONY: bench
bench: build-dev $(STAMP_BENCH) ## Measure the benchmarks against torch/numpy references, print ratios
	mkdir -p .benchmarks
	$(PY) -m pytest bench --benchmark-only --benchmark-columns=min,median,rounds --benchmark-sort=name \
		--benchmark-json=.benchmarks/latest.json -q
	$(PY) bench/report.py .benchmarks/latest.json

.PHONY: lint
lint: $(STAMP_LINT) build-dev ## cargo fmt/clippy, ruff, mypy --strict, stubtest
	cargo fmt --all --check
	PYO3_PYTHON=$(abspath $(PY)) cargo clippy --workspace --all-targets -- -D warnings
	$(PY) -m ruff check python tests bench
	$(PY) -m ruff format --check python tests bench
	$(PY) -m mypy --strict python/decodekit
	$(PY) -m mypy.stubtest decodekit._core

.PHONY: fmt
fmt: $(STAMP_LINT) ## Format Rust and Python sources
	cargo fmt --all
	$(PY) -m ruff format python tests bench
	$(PY) -m ruff check --fix python tests bench

.PHONY: clean
clean: ## Remove build outputs and the virtual environment
	cargo clean
	rm -rf $(VENV) target/wheels
