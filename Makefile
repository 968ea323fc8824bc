# PRTS: `make up` runs the appliance on embedded defaults; `make test` runs the whole suite
# against real servers. Both install what they need on a fresh Debian/Ubuntu machine.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
UV := $(VENV)/bin/uv
# The Debian packages the test suite starts real servers from (and tools it drives).
TEST_APT_PACKAGES := postgresql redis-server slapd ldap-utils clickhouse-server chromium nix-bin bubblewrap git
NATIVE_SOURCES := $(wildcard native/src/*.c native/include/prts/*.h) native/build.py

.PHONY: up test install install-test native system-test-deps clean

up: $(VENV)/.installed
	@$(PY) -m compileall -q appliance webapp
	$(VENV)/bin/prts up

# The installed stamp depends on what decides the installation, so a second `make up`
# skips straight to starting the appliance.
# Bytecode is compiled at install time: where PYTHONDONTWRITEBYTECODE is set, Python would
# otherwise recompile every module at every start (seconds for this stack).
$(VENV)/.installed: pyproject.toml setup.py $(NATIVE_SOURCES) | $(VENV)/bin/python
	$(UV) pip install --quiet --compile-bytecode --python $(PY) -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(UV) pip install --quiet --compile-bytecode --python $(PY) -e '.[test]'
	touch $@

$(VENV)/bin/python:
	@$(PYTHON) -m venv --help >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-venv python3-dev gcc; }
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check uv

install: $(VENV)/.installed

# Rebuild the C engines in place (the editable install finds appliance/_native*.so).
native: $(VENV)/.installed
	$(UV) pip install --quiet --compile-bytecode --python $(PY) --reinstall-package prts -e .

system-test-deps:
	@missing=""; for p in $(TEST_APT_PACKAGES); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ]; then \
			echo "installing:$$missing"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
		else \
			echo "missing Debian packages:$$missing (run make test as root, or install them)" >&2; exit 1; \
		fi; \
	fi

test: system-test-deps $(VENV)/.installed-test
	@$(PY) -m compileall -q appliance webapp tests
	$(PY) -m pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info appliance/_native*.so appliance/_native.c appliance/_native.o .pytest_cache
