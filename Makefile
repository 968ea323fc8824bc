# PRTS: `make up` runs the appliance on embedded defaults; `make test` runs the whole suite
# against real servers. Both install what they need on a fresh Debian/Ubuntu machine.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
UV := $(VENV)/bin/uv
# The Debian packages the test suite starts real servers from (and tools it drives).
TEST_APT_PACKAGES := postgresql redis-server slapd ldap-utils clickhouse-server chromium nix-bin bubblewrap git
# The reference tools the benchmarks measure us against; the tests do not need them.
BENCH_APT_PACKAGES := ripgrep ansifilter
NATIVE_SOURCES := $(wildcard native/src/*.c native/src/*.h native/include/prts/*.h) native/build.py

.PHONY: up test install install-test native sanitize bench system-test-deps system-bench-deps clean

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

# Install the Debian packages of a list that are missing (as root), or name them and fail.
define apt_install
	@missing=""; for p in $(1); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ]; then \
			echo "installing:$$missing"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
		else \
			echo "missing Debian packages:$$missing (run make as root, or install them)" >&2; exit 1; \
		fi; \
	fi
endef

system-test-deps:
	$(call apt_install,$(TEST_APT_PACKAGES))

system-bench-deps:
	$(call apt_install,$(BENCH_APT_PACKAGES))

# The C engines again, built with AddressSanitizer and UBSan into their own directory so
# the real module is untouched: native/build.py's cdef gives the same cffi wrapper C, and
# gcc compiles it with every engine under the sanitizers instead of -O2.
SANITIZE_DIR := build/sanitize
SANITIZE_MODULE := $(SANITIZE_DIR)/appliance/_native.abi3.so
SANITIZE_CFLAGS := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer -g -O1
# The engines' own tests; an engine's new test file is picked up by its name.
NATIVE_TESTS = $(wildcard tests/unit/test_native*.py tests/unit/test_log_*.py)

$(SANITIZE_MODULE): $(NATIVE_SOURCES) | $(VENV)/.installed-test
	@mkdir -p $(@D)
	$(PY) -c 'import sys; sys.path.insert(0, "native"); import build; build.ffibuilder.emit_c_code(sys.argv[1])' \
		$(SANITIZE_DIR)/_native.c
	gcc -shared -fPIC -std=c11 -Wall -Wextra $(SANITIZE_CFLAGS) -Inative/include \
		-I"$$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["include"])')" \
		$(SANITIZE_DIR)/_native.c $(wildcard native/src/*.c) -lm -o $@

# pytest with appliance._native taken from the sanitized build. Putting its directory
# first on the package's __path__ before anything imports the module is all it takes: no
# copy of the package, nothing in the source tree or the tests knows, and the check below
# fails the run if the real module was loaded instead.
define SANITIZED_PYTEST
import sys, appliance
appliance.__path__.insert(0, "$(abspath $(SANITIZE_DIR))/appliance")
import appliance._native
assert appliance._native.__file__.startswith("$(abspath $(SANITIZE_DIR))/"), appliance._native.__file__
print("sanitized engines:", appliance._native.__file__)
import pytest
sys.exit(pytest.main(sys.argv[1:]))
endef
export SANITIZED_PYTEST

# Python is not built with the sanitizers, so their runtimes are preloaded (ASan must be
# the first library loaded). Leak checks are off: CPython's own allocations at exit would
# drown any report of ours. The first error aborts the run with a stack trace, which
# --capture=sys leaves on the terminal (pytest's default capture would swallow it with the
# aborted process). pycryptodome (under minio, which the fixtures import) dlopens with
# RTLD_DEEPBIND, which ASan refuses, unless told not to.
sanitize: $(SANITIZE_MODULE)
	LD_PRELOAD="$$(gcc -print-file-name=libasan.so) $$(gcc -print-file-name=libubsan.so)" \
	ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	PYCRYPTODOME_DISABLE_DEEPBIND=1 \
		$(PY) -c "$$SANITIZED_PYTEST" -q -p no:cacheprovider --capture=sys $(NATIVE_TESTS)

# The sanitized engine tests run first: a memory error fails the run before the suite.
test: system-test-deps $(VENV)/.installed-test sanitize
	@$(PY) -m compileall -q appliance webapp tests
	$(PY) -m pytest $(PYTEST_ARGS)

# Every benchmark side by side with its reference tool (bench/_*.py are their helpers).
bench: system-bench-deps $(VENV)/.installed-test
	@set -e; for f in $(filter-out bench/_%,$(wildcard bench/*.py)); do echo "== $$f"; $(PY) $$f; done

clean:
	rm -rf $(VENV) build *.egg-info appliance/_native*.so appliance/_native.c appliance/_native.o .pytest_cache
