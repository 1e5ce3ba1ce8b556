# provkit developer commands. Needs only Python 3.11+ and make; everything else goes into .venv.
#
#   make demo    install into .venv, then run the workbook against the simulated tenant
#   make test    install into .venv (and Chromium for the browser tests), then ruff (format and lint), the layer
#                contracts (lint-imports), the type checker (mypy) and the whole suite
#   make browser install Debian's Chromium for the browser tests when it is missing (needs root)
#   make lint    ruff check and ruff format --check
#   make bench   run every bench/bench_*.py in turn
#   make clean   remove caches and build output (keeps .venv, reports/ and bench results)
#
# Set VENV_PYTHON=/path/to/python3.x to choose the interpreter that creates .venv.

SHELL := /bin/sh
.DEFAULT_GOAL := help

VENV := .venv
VPY := $(VENV)/bin/python
# Written after a successful install; older than pyproject.toml means "install again".
STAMP := $(VENV)/.provkit-installed
PIP_FLAGS := --quiet --disable-pip-version-check --progress-bar off

.PHONY: help install test demo lint structure bench clean browser

help:
	@echo "make demo    install into $(VENV), report on every app of the simulated tenant into reports/demo"
	@echo "make test    install into $(VENV), run ruff, lint-imports, mypy and the pytest suite (browser tests need Chromium)"
	@echo "make browser install Chromium for the browser tests (apt-get, as root) when it is missing"
	@echo "make lint    ruff check and ruff format --check"
	@echo "make structure  the layer contracts (lint-imports) and the type checker (mypy)"
	@echo "make bench   run every bench/bench_*.py"
	@echo "make clean   remove caches and build output (keeps $(VENV))"

# Create the virtualenv with python3.11, or python3 when it is 3.11 or newer. A candidate counts only if it
# runs: a pyenv shim for an uninstalled version is on PATH but fails. A half-made venv (for example when the
# venv/ensurepip module is missing) is removed so the next run starts over.
$(VPY):
	@py=""; \
	if [ -n "$(VENV_PYTHON)" ]; then cands="$(VENV_PYTHON)"; else cands="python3.11 python3"; fi; \
	for c in $$cands; do \
	  if command -v "$$c" >/dev/null 2>&1 && \
	     "$$c" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' >/dev/null 2>&1; then \
	    py="$$c"; break; \
	  fi; \
	done; \
	if [ -z "$$py" ]; then \
	  echo "error: provkit needs Python 3.11 or newer to create $(VENV)." >&2; \
	  for c in $$cands; do \
	    if command -v "$$c" >/dev/null 2>&1; then \
	      echo "  $$c is $$("$$c" --version 2>&1 || echo 'not runnable')" >&2; \
	    else \
	      echo "  $$c is not on PATH" >&2; \
	    fi; \
	  done; \
	  echo "Install Python 3.11 (python3.11 on PATH), or run: make VENV_PYTHON=/path/to/python3.11 ..." >&2; \
	  exit 1; \
	fi; \
	echo "Creating $(VENV) with $$py ($$("$$py" --version 2>&1))"; \
	if ! "$$py" -m venv $(VENV); then \
	  rm -rf $(VENV); \
	  echo "error: '$$py -m venv' failed; on Debian/Ubuntu the venv module is the python3.11-venv package." >&2; \
	  exit 1; \
	fi

$(STAMP): pyproject.toml | $(VPY)
	@echo "Installing provkit and its test tools into $(VENV) (pip install -e '.[test]')"
	$(VPY) -m pip install $(PIP_FLAGS) -e '.[test]'
	@touch $(STAMP)

install: $(STAMP)

test: $(STAMP) browser
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy
	$(VPY) -m pytest

# The browser tests (tests/browser) drive the system's Chromium with Playwright, which cannot download its own
# browsers here. As root, a missing Chromium is installed with apt; otherwise say what to do and go on (those
# tests are then skipped, with the same advice in pytest's summary). PROVKIT_CHROMIUM names another binary.
browser:
	@if [ -n "$$PROVKIT_CHROMIUM" ] || command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then \
	  :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "Installing Chromium for the browser tests (apt-get install -y chromium)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null || \
	    { echo "error: apt-get could not install chromium; install it and run make test again." >&2; exit 1; }; \
	else \
	  echo "note: Chromium is not installed, so the browser tests (tests/browser) will be skipped." >&2; \
	  echo "  Install it as root: apt-get install chromium (Debian) or chromium-browser (Ubuntu), then run make test;" >&2; \
	  echo "  or set PROVKIT_CHROMIUM=/path/to/chromium." >&2; \
	fi

# The report prints the path of reports/demo/index.html as its last line.
demo: $(STAMP)
	$(VENV)/bin/provkit report --demo --all-apps --out reports/demo

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# The package's structure: the layer contracts (pyproject's [tool.importlinter]) and the type checker.
structure: $(STAMP)
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy

bench: $(STAMP)
	@found=0; \
	for f in bench/bench_*.py; do \
	  [ -e "$$f" ] || continue; \
	  found=1; \
	  echo "== $$f"; \
	  $(VPY) "$$f" || exit 1; \
	done; \
	if [ "$$found" = 0 ]; then echo "no benchmarks yet (bench/bench_*.py)"; fi

clean:
	rm -rf build dist *.egg-info .pytest_cache .ruff_cache
	find . -path ./$(VENV) -prune -o -type d -name __pycache__ -prune -exec rm -rf {} +
