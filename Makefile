# Gantry: `make test` sets up everything it needs on a fresh machine and runs every test.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
CARGO ?= cargo

.PHONY: all test lint venv build demo bench bench-agent bench-control-plane bench-fleet clean

all: test

# .venv holds moto_server (the AWS stand-in for tests) and the stock AWS CLI.
venv: $(VENV)/.installed

$(VENV)/.installed: requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

build:
	$(CARGO) build --workspace --all-targets

TEST_LOG := $(or $(CARGO_TARGET_DIR),target)/gantry-test.log

# Ends with one "N passed, N failed" line over every test binary, so a reader (or CI)
# sees the whole count rather than the last crate's doc-tests.
test: venv build
	@mkdir -p $(dir $(TEST_LOG))
	@$(CARGO) test --workspace 2>&1 | tee $(TEST_LOG); status=$${PIPESTATUS[0]}; \
	awk '/^test result:/ { passed += $$4; failed += $$6 } END { printf "%d passed, %d failed\n", passed, failed }' $(TEST_LOG); \
	exit $$status

lint: venv
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(VENV)/bin/cfn-lint template.yaml

# Benchmarks measure; they never run in `make test`. Results land in bench/results/.
bench: bench-agent bench-control-plane bench-fleet

bench-agent: venv
	$(CARGO) build --release -p gantry-local -p gantry-agent
	CARGO_TARGET_DIR=$(or $(CARGO_TARGET_DIR),target) $(VENV)/bin/python bench/agent.py

bench-control-plane: venv
	$(CARGO) build --release -p gantry-local -p gantry-agent
	CARGO_TARGET_DIR=$(or $(CARGO_TARGET_DIR),target) $(VENV)/bin/python bench/control_plane.py

bench-fleet: venv
	$(CARGO) build --release -p gantry-local -p gantry-agent
	CARGO_TARGET_DIR=$(or $(CARGO_TARGET_DIR),target) $(VENV)/bin/python bench/fleet.py

# A live deployment across four local hosts, a failure and its rollback (demo/run.sh).
demo: venv
	$(CARGO) build -p gantry-cli -p gantry-local -p gantry-agent
	CARGO_TARGET_DIR=$(or $(CARGO_TARGET_DIR),$(CURDIR)/target) demo/run.sh

clean:
	rm -rf $(VENV)
	$(CARGO) clean
