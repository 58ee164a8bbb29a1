# peerbox developer entry points. Every target that needs Python creates or
# refreshes .venv in the repo root first; nothing is installed by hand.
#
#   make demo    compile and run examples/demo.rhai through the peerbox CLI (installs peerbox
#                and its runtime dependencies only: no system packages)
#   make test    rt reproducibility check + the whole pytest suite (4 processes, then the
#                timing-sensitive `serial` tests alone); installs the test tools below
#   make test-fast  the suite without `slow` and `serial` tests, in 4 processes (for developers;
#                no system packages)
#   make test-min   the trust, envelope and HTTP/2 tests against the LOWEST versions
#                pyproject.toml allows (a separate venv, .venv-min); not part of `make test`
#   make bench   the benchmark table (bench/run.py), written to bench/results/
#   make up      start a local nats-server (JetStream) and SeaweedFS (S3) in the background
#                (`peerbox dev up --dir .peerbox-dev`); prints the variables to export. make down stops them
#   make lint    ruff, mypy --strict (packages and tests) and import-linter (the layers between the rooms)
#   make rt      rebuild wasm_guests/rt/rt.wasm from its C sources
#   make clean   remove the venv and build/test caches

SHELL := /bin/bash
.DEFAULT_GOAL := test

PYTHON ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
# Debian packages, as command:package (each checked by the command it provides). `make demo`
# needs none (python3 with venv, and bash). RT_SYSDEPS: clang + lld build rt.wasm (`make rt`,
# the reproducibility check of `make test`). TEST_SYSDEPS: what the (slow) tests run: wabt's
# wasm-validate checks an emitted module; curl and nghttp2-client (nghttp, h2load) are the real
# HTTP/2 clients of the worker tests; openssl makes a TLS test certificate; procps's pgrep
# finds isolated-mode children; fish and zsh syntax-check `peerbox completion fish|zsh`.
RT_SYSDEPS := clang:clang wasm-ld:lld
TEST_SYSDEPS := $(RT_SYSDEPS) wasm-validate:wabt curl:curl nghttp:nghttp2-client h2load:nghttp2-client \
	openssl:openssl pgrep:procps fish:fish zsh:zsh

# The venv is refreshed when pyproject.toml changes or when a file is added to
# or removed from the packages: a strict editable install links every package
# file at install time and does not see files created later.
VENV_KEY := $(shell { cat pyproject.toml; find runtime wasm_guests hostcalls policy -type f \
	\( -name '*.py' -o -name '*.wasm' -o -name 'py.typed' -o -name '*.md' \) 2>/dev/null | LC_ALL=C sort; } \
	| sha256sum | cut -c1-16)
STAMP := $(VENV)/.peerbox-stamp-$(VENV_KEY)
# peerbox and its runtime dependencies only (what `make demo` needs); a full install implies it.
RUN_STAMP := $(VENV)/.peerbox-run-$(VENV_KEY)

.PHONY: up down venv venv-run sysdeps sysdeps-rt test test-fast test-min check-rt demo bench lint rt clean

# the developer venv: peerbox (editable) with the test and dev extras
venv: $(STAMP)

$(STAMP):
	@test -x $(VPY) || $(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install -q --config-settings editable_mode=strict -e '.[test,dev]'
	@rm -f $(VENV)/.peerbox-stamp-* $(VENV)/.peerbox-run-*
	@touch $@ $(RUN_STAMP)

venv-run: $(RUN_STAMP)

$(RUN_STAMP):
	@test -x $(VPY) || $(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install -q --config-settings editable_mode=strict -e .
	@rm -f $(VENV)/.peerbox-run-*
	@touch $@

# $(call apt_install,PAIRS): apt-get install the package of each command:package pair whose
# command is missing (as root, or through sudo)
define apt_install
	@missing=""; \
	for pair in $(1); do \
	  command -v "$${pair%%:*}" >/dev/null 2>&1 || missing="$$missing $${pair##*:}"; \
	done; \
	if [ -n "$$missing" ]; then \
	  sudo=""; [ "$$(id -u)" = 0 ] || sudo="sudo"; \
	  echo "installing Debian packages:$$missing"; \
	  $$sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	  $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi
endef

# what `make test` needs
sysdeps:
	$(call apt_install,$(TEST_SYSDEPS))

# what building rt.wasm needs
sysdeps-rt:
	$(call apt_install,$(RT_SYSDEPS))

# The committed rt.wasm must be exactly what its C sources build to.
check-rt: sysdeps-rt
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	bash wasm_guests/rt/build.sh "$$tmp/rt.wasm" >/dev/null && \
	if cmp -s "$$tmp/rt.wasm" wasm_guests/rt/rt.wasm; then \
	  echo "check-rt: wasm_guests/rt/rt.wasm matches its sources"; \
	else \
	  echo "check-rt: wasm_guests/rt/rt.wasm is stale: run 'make rt' and commit it" >&2; exit 1; \
	fi

# Tests that measure timing against a reference (`serial`) run after the parallel pass, alone,
# so the other workers' load does not skew what they measure. TEST_PROCS pytest processes on
# two cores: most end-to-end tests wait on servers they start (measured: 4 processes take the
# parallel pass from 515 s to 366 s on this 2-core machine, CPU 1.9 cores busy on average).
# --dist loadgroup: a module whose tests share an expensive module-scoped fixture (the demo,
# a served world, a built wheel) is marked xdist_group and set up once, not once per process.
TEST_PROCS ?= 4
test: venv sysdeps check-rt
	$(VPY) -m pytest -q -n $(TEST_PROCS) --dist loadgroup -m "not serial"
	$(VPY) -m pytest -q -m serial

test-fast: venv
	$(VPY) -m pytest -q -n $(TEST_PROCS) --dist loadgroup -m "not slow and not serial"

# `make test-min`: the lower bounds of pyproject.toml's dependencies are versions that work.
# .venv-min gets every runtime dependency pinned to its lower bound (each `NAME>=X` becomes
# `NAME==X`; a dependency without one is an error) and a fresh non-editable peerbox, then runs
# the tests of strict CBOR, COSE, envelopes, identities, capabilities, the trust path, pre-auth
# and the HTTP/2 server, client and worker (selected by name, wherever they live).
MIN_VENV := .venv-min
MIN_TESTS := cbor or cose or envelope or identity or caps or trust or preauth or h2server or client or worker or directory

test-min: sysdeps
	@test -x $(MIN_VENV)/bin/python || $(PYTHON) -m venv $(MIN_VENV)
	@$(PYTHON) -c 'import re, sys, tomllib; \
	deps = tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]; \
	pins = [re.sub(r"\s*>=\s*([^,;\s]+).*", r"==\1", d) for d in deps]; \
	bad = [d for d, p in zip(deps, pins) if "==" not in p]; \
	sys.exit(f"test-min: no lower bound: {bad}") if bad else print("\n".join(pins))' \
	> $(MIN_VENV)/constraints.txt
	@echo "test-min: $$(tr '\n' ' ' < $(MIN_VENV)/constraints.txt)"
	$(MIN_VENV)/bin/python -m pip install -q --constraint $(MIN_VENV)/constraints.txt '.[test]'
	$(MIN_VENV)/bin/python -m pip install -q --no-deps --force-reinstall .
	$(MIN_VENV)/bin/python -m pip check
	$(MIN_VENV)/bin/python -m pytest -q -n 2 -m "not serial" -k "$(MIN_TESTS)" -p no:cacheprovider

demo: venv-run
	@echo '$$ peerbox run examples/demo.rhai --param who=world --param n=10'
	@$(VENV)/bin/peerbox run examples/demo.rhai --param who=world --param n=10
	@root=$$(mktemp -d) && trap 'rm -rf "$$root"' EXIT && \
	echo && echo '$$ peerbox init alice && peerbox run examples/notes.rhai --peer alice --param text=hi  (twice)' && \
	$(VENV)/bin/peerbox init alice --root "$$root" >/dev/null && \
	$(VENV)/bin/peerbox run examples/notes.rhai --peer alice --root "$$root" --param text=hi >/dev/null && \
	$(VENV)/bin/peerbox run examples/notes.rhai --peer alice --root "$$root" --param text=hello
	@echo
	@echo '$$ peerbox run examples/demo.rhai --param n=5 --json    # {value, log, usage} as one JSON document'
	@$(VENV)/bin/peerbox run examples/demo.rhai --param n=5 --json
	@echo
	@echo '=== over the network: alice, bob and carol, a shared worker, HTTP/2, signed requests and replies, a published function ==='
	@PEERBOX=$(CURDIR)/$(VENV)/bin/peerbox PATH="$(CURDIR)/$(VENV)/bin:$$PATH" bash examples/network/demo.sh

bench: venv
	$(VPY) bench/run.py

DEV_DIR ?= .peerbox-dev
up: venv
	$(VENV)/bin/peerbox dev up --dir $(DEV_DIR)

down:
	@if test -x $(VENV)/bin/peerbox; then $(VENV)/bin/peerbox dev down --dir $(DEV_DIR); fi

lint: venv
	$(VENV)/bin/ruff check runtime wasm_guests hostcalls policy
	$(VENV)/bin/mypy -p peerbox
	$(VENV)/bin/mypy --strict --explicit-package-bases tests
	$(VENV)/bin/lint-imports

rt: sysdeps-rt
	bash wasm_guests/rt/build.sh wasm_guests/rt/rt.wasm

clean:
	rm -rf $(VENV) $(MIN_VENV) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache .hypothesis
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
