# `make demo` and `make test` work on a fresh machine: they create (or reuse)
# .venv and install the project with everything its tests need; the package
# build itself compiles the static env wrapper (setup.py), so it needs a C
# compiler with a static libc, installed here when missing.
SHELL := /bin/bash
# Debian's python3 is reachable by any uid, so the kubelet player can run the
# agent as the app's non-root user; fall back to whatever python3 there is.
PYTHON ?= $(shell test -x /usr/bin/python3 && echo /usr/bin/python3 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: all install system-deps container-deps toolchain images test lint demo bench clean

all: test

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml setup.py sidecar/envexec.c | $(BIN)/python toolchain
	$(BIN)/python -m pip install --quiet -e '.[test,aws]'
	touch $@

toolchain:
	@command -v cc >/dev/null || (apt-get update -qq && apt-get install -y -qq gcc libc6-dev)

# PostgreSQL gives the leased-secret tests a real dynamic-secret engine to renew.
POSTGRES := $(firstword $(wildcard /usr/lib/postgresql/*/bin/postgres))
system-deps:
	@test -n "$(POSTGRES)" || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null)

# The container suite builds and runs the real images with podman (runc: crun
# refuses this machine's cgroup layout) from stand-in bases made by debootstrap.
container-deps:
	@command -v podman >/dev/null && command -v runc >/dev/null && command -v debootstrap >/dev/null \
		|| (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman runc debootstrap >/dev/null)

install: $(STAMP)

images: install container-deps
	$(BIN)/python hack/images.py

lint: install system-deps
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

test: lint images
	$(BIN)/pytest -q

demo: install
	$(BIN)/python hack/demo.py

bench: install
	$(BIN)/python hack/bench/webhook.py
	$(BIN)/python hack/bench/burst.py
	$(BIN)/python hack/bench/agent.py
	$(BIN)/python hack/bench/idle.py  # 10 minutes at rest

clean:
	rm -rf $(VENV) sidecar/bin build .pytest_cache .mypy_cache .hypothesis *.egg-info
