# The README's two commands: `make demo` runs the whole path on the local cloud,
# `make test` runs the test suite. Both create .venv first when needed, from the
# pinned versions in requirements-dev.lock (installed by uv); `make lock` refreshes
# the lock files.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The tool that installs the lock into .venv and writes the lock files (`make lock`).
UV_VERSION := 0.13.9
# Runs a command with its output in .venv/make.log, shown only if the command fails.
QUIETLY := .ci/quietly $(VENV)/make.log
UV_PIP := $(BIN)/uv pip install --quiet --python $(BIN)/python
COMPILE := $(BIN)/uv pip compile pyproject.toml --universal --python-version 3.11 \
	--generate-hashes --quiet --custom-compile-command 'make lock'

.PHONY: venv lock lock-upgrade image-tools browser demo test chaos lint clean

venv: $(STAMP)

# uv installs the lock (hashes required, as pip would) in about 5 s where pip takes 40.
$(STAMP): pyproject.toml requirements-dev.lock | $(BIN)/uv
	@$(QUIETLY) $(UV_PIP) --require-hashes -r requirements-dev.lock
	@$(QUIETLY) $(UV_PIP) --no-deps -e .
	@$(BIN)/python .ci/check_lock.py
	@touch $(STAMP)

$(BIN)/uv:
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(QUIETLY) $(BIN)/python -m pip install 'uv==$(UV_VERSION)'

# Pins what pyproject.toml names, keeping the versions already locked where they
# still fit; `make lock-upgrade` moves every pin to the newest release.
lock: | $(BIN)/uv
	@$(COMPILE) $(UPGRADE) -o requirements.lock
	@$(COMPILE) $(UPGRADE) --extra dev --constraint requirements.lock -o requirements-dev.lock

lock-upgrade:
	@$(MAKE) --no-print-directory lock UPGRADE=--upgrade

# buildah and debootstrap, for the test that builds and runs the image.
image-tools:
	@.ci/image-tools

demo: venv
	$(BIN)/localcloud demo

# Headless Chromium, for the console's browser test.
browser:
	@.ci/browser-tools

# The suite runs in TEST_WORKERS processes (pytest-xdist; 0: in pytest's own), each test
# file whole on one worker so that its module fixtures start once (docs/testing.md).
TEST_WORKERS ?= 2

test: venv image-tools browser
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

chaos: venv
	$(BIN)/localcloud chaos

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
