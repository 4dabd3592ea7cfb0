# Gantry: `make test` sets up everything it needs on a fresh machine and runs every test.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
CHECKOV_VENV := .venv-checkov
ANSIBLE_VENV := .venv-ansible
CARGO ?= cargo
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

.PHONY: all test lint venv ansible-venv browser screenshots build demo demo-lb demo-bluegreen demo-lambda bench bench-agent bench-control-plane bench-fleet bench-requests bench-scale bench-bundle bench-lb bench-bluegreen package package-agent package-lambdas clean

all: test

# .venv holds moto_server (the AWS stand-in for tests) and the stock AWS CLI.
venv: $(VENV)/.installed

$(VENV)/.installed: requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

# Debian's headless Chromium and its WebDriver, for the console's browser test: installed
# when missing, as the venv is, so that the test never skips.
browser: /usr/bin/chromedriver

/usr/bin/chromedriver:
	command -v apt-get >/dev/null || { echo "make browser: install chromium and chromium-driver (chromedriver) with your package manager" >&2; exit 1; }
	$(SUDO) apt-get install -y -q chromium chromium-driver || { $(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q chromium chromium-driver; }

# checkov, for `make lint`, in a venv of its own: its pins would downgrade moto's and
# cfn-lint's dependencies (requirements-checkov.txt says which).
$(CHECKOV_VENV)/.installed: requirements-checkov.txt
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-checkov.txt
	touch $@

# ansible-core, the peer baseline of `make bench-requests` (bench/peer_ansible.py), in a
# venv of its own so that its dependencies (Jinja2, PyYAML, cryptography) stay out of .venv.
ansible-venv: $(ANSIBLE_VENV)/.installed

$(ANSIBLE_VENV)/.installed: requirements-ansible.txt
	$(PYTHON) -m venv $(ANSIBLE_VENV)
	$(ANSIBLE_VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-ansible.txt
	touch $@

# One build for `make test` and `make demo`: the same packages, targets and profile, so
# cargo unifies dependency features the same way and either command reuses what the
# other built (after `make test`, `make demo` compiles none of the 309 crates). Building
# only the demo's binaries (`-p gantry-cli -p gantry-local -p gantry-agent`, or
# `--workspace` without `--all-targets`) leaves out the dev-dependencies, which turn on
# features of getrandom, num-traits and regex-syntax: 41 dependencies, every AWS SDK
# crate among them, would compile a second time.
build:
	$(CARGO) build --workspace --all-targets

TEST_LOG := $(or $(CARGO_TARGET_DIR),target)/gantry-test.log

# Ends with one "N passed, N failed" line over every test binary, so a reader (or CI)
# sees the whole count rather than the last crate's doc-tests.
test: venv browser build
	$(VENV)/bin/python -m unittest discover -s tests -p 'test_*.py'
	@mkdir -p $(dir $(TEST_LOG))
	@$(CARGO) test --workspace 2>&1 | tee $(TEST_LOG); status=$${PIPESTATUS[0]}; \
	awk '/^test result:/ { passed += $$4; failed += $$6 } END { printf "%d passed, %d failed\n", passed, failed }' $(TEST_LOG); \
	exit $$status

# The README's screenshots of the console, taken by its browser test.
screenshots: venv browser build
	GANTRY_SCREENSHOTS_DIR=$(CURDIR)/docs/images $(CARGO) test -p gantry-tests --test console a_deployment_moves_live

# checkov fails on any failed check; a check that does not fit Gantry is skipped on its
# resource in template.yaml with its reason (# checkov:skip=ID:reason).
lint: venv $(CHECKOV_VENV)/.installed
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(VENV)/bin/cfn-lint template.yaml
	$(CHECKOV_VENV)/bin/checkov --quiet --compact --skip-download --framework cloudformation --file template.yaml
	$(VENV)/bin/python scripts/module_cycles.py
	$(VENV)/bin/python scripts/file_sizes.py

# Benchmarks measure; they never run in `make test`. Results land in bench/results/.
bench: bench-agent bench-control-plane bench-fleet bench-requests bench-scale bench-bundle bench-lb bench-bluegreen

bench-agent: venv
	$(CARGO) build --release -p gantry-local -p gantry-agent
	CARGO_TARGET_DIR=$(or $(CARGO_TARGET_DIR),target) $(VENV)/bin/python bench/agent.py

bench-control-plane: venv
	$(CARGO) build --release -p gantry-local -p gantry-agent
	CARGO_TARGET_DIR=$(or $(CARGO_TARGET_DIR),target) $(VENV)/bin/python bench/control_plane.py

bench-fleet: venv
	$(CARGO) build --release -p gantry-local -p gantry-agent
	CARGO_TARGET_DIR=$(or $(CARGO_TARGET_DIR),target) $(VENV)/bin/python bench/fleet.py

# Every AWS request of one deployment with real agents, by caller and operation (issue 31).
bench-requests: venv ansible-venv
	$(CARGO) build --release -p gantry-local -p gantry-agent
	CARGO_TARGET_DIR=$(or $(CARGO_TARGET_DIR),target) $(VENV)/bin/python bench/aws_requests.py --sizes 10,100

bench-scale: venv
	$(CARGO) build --release -p gantry-local -p gantry-agent
	CARGO_TARGET_DIR=$(or $(CARGO_TARGET_DIR),target) $(VENV)/bin/python bench/scale.py --hosts 1000,10000 --workers 1,5,50 --runs 1

# How fast push downloads and checks a bundle: the rate the 1 GiB bundle limit rests on.
bench-bundle: venv
	$(CARGO) build --release -p gantry-local
	CARGO_TARGET_DIR=$(or $(CARGO_TARGET_DIR),target) $(VENV)/bin/python bench/bundle.py

# Traffic control behind a load balancer: its time per batch, and the requests it saves.
bench-lb: venv
	$(CARGO) build --release -p gantry-local -p gantry-agent
	CARGO_TARGET_DIR=$(or $(CARGO_TARGET_DIR),target) $(VENV)/bin/python bench/lb.py

# Blue/green through the load balancer: to traffic rerouted, the original fleet blocked
# and its Auto Scaling group gone, split into phases; the requests it drops (none).
bench-bluegreen: venv
	$(CARGO) build --release -p gantry-local -p gantry-agent
	CARGO_TARGET_DIR=$(or $(CARGO_TARGET_DIR),target) $(VENV)/bin/python bench/bluegreen.py

# A live deployment across four local hosts, a failure and its rollback (demo/run.sh).
# It uses `make build`'s artifacts: after `make test` it builds nothing, and the other way round.
demo: venv build
	CARGO_TARGET_DIR=$(or $(CARGO_TARGET_DIR),$(CURDIR)/target) demo/run.sh

# An in-place deployment behind a load balancer that drops no request: four EC2 instances
# of an Auto Scaling group (simulated, each with a real agent), a client loop through the
# stand-in's load balancer, a scale-out and an alarm's rollback (demo/lb.sh).
demo-lb: venv build
	CARGO_TARGET_DIR=$(or $(CARGO_TARGET_DIR),$(CURDIR)/target) demo/lb.sh

# A blue/green deployment through a load balancer, then a failed one rolled back (demo/bluegreen.sh).
demo-bluegreen: venv build
	CARGO_TARGET_DIR=$(or $(CARGO_TARGET_DIR),$(CURDIR)/target) demo/bluegreen.sh

# A Lambda deployment shifting an alias 10% a (2 s) minute with no failed invocation, then
# one whose AfterAllowTraffic hook fails and is rolled back (demo/lambda.sh).
demo-lambda: venv build
	CARGO_TARGET_DIR=$(or $(CARGO_TARGET_DIR),$(CURDIR)/target) demo/lambda.sh

# Release artifacts in dist/: the agent and the Lambda functions.
package: package-agent package-lambdas

# The agent: one static x86_64 binary (musl) and its systemd unit, in
# dist/gantry-agent-<version>-x86_64-linux-musl.tar.gz. Needs musl-gcc (Debian and
# Ubuntu: apt-get install musl-tools); rustup adds the Rust target.
AGENT_TARGET := x86_64-unknown-linux-musl
AGENT_VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
AGENT_DIST := dist/gantry-agent-$(AGENT_VERSION)-x86_64-linux-musl
AGENT_BINARY := $(or $(CARGO_TARGET_DIR),target)/$(AGENT_TARGET)/release/gantry-agent

package-agent:
	@command -v musl-gcc >/dev/null || { echo "make package: musl-gcc not found; install musl-tools (apt-get install musl-tools)"; exit 1; }
	rustup target add $(AGENT_TARGET)
	CC_x86_64_unknown_linux_musl=musl-gcc $(CARGO) build --release --locked --target $(AGENT_TARGET) -p gantry-agent
	@ldd $(AGENT_BINARY) 2>&1 | grep -Eq "not a dynamic executable|statically linked" || { echo "make package: $(AGENT_BINARY) is not static"; exit 1; }
	rm -rf $(AGENT_DIST) && mkdir -p $(AGENT_DIST)
	cp $(AGENT_BINARY) agent/gantry-agent.service $(AGENT_DIST)/
	strip $(AGENT_DIST)/gantry-agent
	$(AGENT_DIST)/gantry-agent --version
	tar -C dist -czf $(AGENT_DIST).tar.gz $(notdir $(AGENT_DIST))
	@echo "wrote $(AGENT_DIST).tar.gz"

# The Lambda functions as arm64 zips, built as `sam build` builds them: cargo-lambda
# (from the crate registry, into .tools) with Zig (from PyPI, into .venv) as the cross
# linker. dist/lambda/<function>.zip, one per function of template.yaml.
CARGO_LAMBDA_VERSION := 1.9.2
ZIG_VERSION := 0.15.2
TOOLS := $(CURDIR)/.tools
LAMBDA_OUT := $(or $(CARGO_TARGET_DIR),target)/lambda
LAMBDA_FUNCTIONS := $(basename $(notdir $(wildcard functions/src/bin/*.rs)))

package-lambdas: venv
	$(VENV)/bin/pip install --quiet --disable-pip-version-check ziglang==$(ZIG_VERSION)
	test -x $(TOOLS)/bin/cargo-lambda || $(CARGO) install --locked --root $(TOOLS) cargo-lambda@$(CARGO_LAMBDA_VERSION)
	rustup target add aarch64-unknown-linux-gnu
	PATH="$(CURDIR)/$(VENV)/bin:$(TOOLS)/bin:$$PATH" $(CARGO) lambda build --release --arm64 --output-format zip -p gantry-functions
	mkdir -p dist/lambda
	for function in $(LAMBDA_FUNCTIONS); do \
	  cp $(LAMBDA_OUT)/$$function/bootstrap.zip dist/lambda/$$function.zip || exit 1; \
	done
	ls -l dist/lambda

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) $(ANSIBLE_VENV) dist $(TOOLS)
	$(CARGO) clean
