# peerbox developer entry points. Every target that needs Python creates or
# refreshes .venv in the repo root first; nothing is installed by hand.
#
#   make demo    compile and run examples/demo.rhai through the peerbox CLI
#   make test    rt reproducibility check + the whole pytest suite (2 processes, then the
#                timing-sensitive `serial` tests alone)
#   make test-fast  the suite without `slow` and `serial` tests, in 2 processes (for developers)
#   make bench   the benchmark table (bench/run.py), written to bench/results/
#   make lint    ruff + mypy --strict
#   make rt      rebuild wasm_guests/rt/rt.wasm from its C sources
#   make clean   remove the venv and build/test caches

SHELL := /bin/bash
.DEFAULT_GOAL := test

PYTHON ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
# Debian packages: clang + lld build rt.wasm (the reproducibility check),
# wabt + binaryen validate wasm in tests; curl and nghttp2-client (nghttp, h2load) are
# the real HTTP/2 clients of the worker tests. Checked by the command each provides.
SYSDEPS := clang:clang wasm-ld:lld wasm-validate:wabt wasm-opt:binaryen curl:curl nghttp:nghttp2-client h2load:nghttp2-client

# The venv is refreshed when pyproject.toml changes or when a file is added to
# or removed from the packages: a strict editable install links every package
# file at install time and does not see files created later.
VENV_KEY := $(shell { cat pyproject.toml; find runtime wasm_guests hostcalls policy -type f \
	\( -name '*.py' -o -name '*.wasm' -o -name 'py.typed' -o -name '*.md' \) 2>/dev/null | LC_ALL=C sort; } \
	| sha256sum | cut -c1-16)
STAMP := $(VENV)/.peerbox-stamp-$(VENV_KEY)

.PHONY: venv sysdeps test test-fast check-rt demo bench lint rt clean

venv: $(STAMP)

$(STAMP):
	@$(MAKE) --no-print-directory sysdeps
	@test -x $(VPY) || $(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install -q --config-settings editable_mode=strict -e '.[test,dev]'
	@rm -f $(VENV)/.peerbox-stamp-*
	@touch $@

sysdeps:
	@missing=""; \
	for pair in $(SYSDEPS); do \
	  command -v "$${pair%%:*}" >/dev/null 2>&1 || missing="$$missing $${pair##*:}"; \
	done; \
	if [ -n "$$missing" ]; then \
	  sudo=""; [ "$$(id -u)" = 0 ] || sudo="sudo"; \
	  echo "installing Debian packages:$$missing"; \
	  $$sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	  $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi

# The committed rt.wasm must be exactly what its C sources build to.
check-rt: sysdeps
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	bash wasm_guests/rt/build.sh "$$tmp/rt.wasm" >/dev/null && \
	if cmp -s "$$tmp/rt.wasm" wasm_guests/rt/rt.wasm; then \
	  echo "check-rt: wasm_guests/rt/rt.wasm matches its sources"; \
	else \
	  echo "check-rt: wasm_guests/rt/rt.wasm is stale: run 'make rt' and commit it" >&2; exit 1; \
	fi

# Tests that measure timing against a reference (`serial`) run after the parallel pass, alone,
# so the other worker's load does not skew what they measure.
test: venv check-rt
	$(VPY) -m pytest -q -n 2 -m "not serial"
	$(VPY) -m pytest -q -m serial

test-fast: venv
	$(VPY) -m pytest -q -n 2 -m "not slow and not serial"

demo: venv
	@echo '$$ peerbox run examples/demo.rhai --param who=world --param n=10'
	@$(VENV)/bin/peerbox run examples/demo.rhai --param who=world --param n=10
	@root=$$(mktemp -d) && trap 'rm -rf "$$root"' EXIT && \
	echo && echo '$$ peerbox init alice && peerbox run examples/notes.rhai --peer alice --param text=hi  (twice)' && \
	$(VENV)/bin/peerbox init alice --root "$$root" >/dev/null && \
	$(VENV)/bin/peerbox run examples/notes.rhai --peer alice --root "$$root" --param text=hi >/dev/null && \
	$(VENV)/bin/peerbox run examples/notes.rhai --peer alice --root "$$root" --param text=hello
	@echo
	@echo '$$ peerbox run examples/demo.rhai --param n=5 --json    # the value as one JSON document (log on stderr)'
	@$(VENV)/bin/peerbox run examples/demo.rhai --param n=5 --json
	@echo
	@echo '=== over the network: alice and bob, a shared worker, HTTP/2, signed requests and replies ==='
	@PEERBOX=$(CURDIR)/$(VENV)/bin/peerbox PATH="$(CURDIR)/$(VENV)/bin:$$PATH" bash examples/network/demo.sh

bench: venv
	$(VPY) bench/run.py

lint: venv
	$(VENV)/bin/ruff check runtime wasm_guests hostcalls policy
	$(VENV)/bin/mypy -p peerbox

rt: sysdeps
	bash wasm_guests/rt/build.sh wasm_guests/rt/rt.wasm

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache .hypothesis
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
