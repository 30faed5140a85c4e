# DICOMPlus developer commands. `make test` and `make demo` install what a fresh Debian machine lacks.
# `make test-stock` runs the stock-Slicer tier (Testing/stock) in its own venv, .venv-stock.
# `make test-312` runs the library suite under Python 3.12 (Slicer 5.12's) in .venv-312.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STOCK_VENV ?= .venv-stock
VENV_312 ?= .venv-312
PY_312 := $(VENV_312)/bin/python
APT_PACKAGES := dcmtk orthanc orthanc-dicomweb dicom3tools hyperfine cmake g++ postgresql \
	libgl1 libegl1 libxkbcommon0 libfontconfig1 libfreetype6 libglib2.0-0 libdbus-1-3 fonts-dejavu-core

.PHONY: test test-312 venv-312 test-stock stock-venv demo deps system-deps venv lint format bench clean

# The suite runs in TEST_WORKERS pytest-xdist workers (most tests wait on peers, not on a core);
# --dist loadfile keeps a file on one worker, so its module fixtures (a PACS, a loaded database)
# start once. The timing-sensitive tests (marker `timing`: GUI latency, thread starvation) then run
# alone, after it: both runs always happen, and either failing (exit 5, no test ran, included)
# fails the target. TEST_WORKERS=0 runs the first part serially (for comparison). 3 suits a 2-core
# machine: serial 447 s, 3 workers 219 s, 4 workers 283-401 s (and a pynetdicom response race in
# test_peers under that load), measured on a shared 2-core machine, Dec 2026.
TEST_WORKERS ?= 3

test: deps lint
	@status=0; \
	for run in parallel timing; do \
	  if [ $$run = parallel ]; then args=(-n $(TEST_WORKERS) --dist loadfile -m "not timing"); \
	  else args=(-p no:xdist -m timing); fi; \
	  echo "pytest ($$run): $${args[*]}"; \
	  QT_QPA_PLATFORM=offscreen $(PY) -m pytest Testing "$${args[@]}" $(PYTEST_ARGS); rc=$$?; \
	  if [ $$rc = 5 ]; then echo "pytest ($$run) ran no test: failing"; rc=1; fi; \
	  if [ $$rc != 0 ] && [ $$status = 0 ]; then status=$$rc; fi; \
	done; \
	exit $$status

# The suite under CPython 3.12, the Python of Slicer 5.12 (where the engine process runs
# DICOMPlusLib), in its own venv with the same editable install and test extra as .venv. The
# interpreter is found as for the stock tier (Testing/python312.sh: $STOCK_PYTHON, python3.12 on
# PATH, pyenv's 3.12.x); without one the target fails, it never skips. It runs the parallel part of
# `make test` except the tests marked same_on_every_python (static checks, PostgreSQL's own
# behaviour: Testing/conftest.py says which and why); the timing tests measure the machine, not the
# Python version. ~1,430 tests, ~20% less time than the parallel part of `make test`.
TEST_312_MARKS := not timing and not same_on_every_python
test-312: system-deps venv-312
	@echo "pytest (3.12): $$($(PY_312) -V) -n $(TEST_WORKERS) --dist loadfile -m \"$(TEST_312_MARKS)\""; \
	QT_QPA_PLATFORM=offscreen $(PY_312) -m pytest Testing -n $(TEST_WORKERS) --dist loadfile -m "$(TEST_312_MARKS)" $(PYTEST_ARGS); \
	rc=$$?; if [ $$rc = 5 ]; then echo "pytest (3.12) ran no test: failing"; exit 1; fi; exit $$rc

# Rebuilt when pyproject.toml changes, or when it is not a 3.12 venv (made by another Python).
$(VENV_312)/.installed: pyproject.toml Testing/python312.sh
	@python=$$(Testing/python312.sh) || exit 1; \
	if ! $(PY_312) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))' 2>/dev/null; then \
	  echo "$(VENV_312) from $$python ($$($$python -V))"; rm -rf $(VENV_312); $$python -m venv $(VENV_312) || exit 1; \
	fi
	$(PY_312) -m pip install -q --upgrade pip
	$(PY_312) -m pip install -q -e ".[test]"
	touch $@

venv-312: $(VENV_312)/.installed

# The stock-Slicer tier: Slicer 5.12.3's Python packages only (Testing/stock/setup_venv.sh), the
# extension installed with CMake, the module loaded from the install tree. --confcutdir keeps the
# main suite's Testing/conftest.py (and what it imports) out.
test-stock: system-deps stock-venv
	QT_QPA_PLATFORM=offscreen $(STOCK_VENV)/bin/python -m pytest Testing/stock --confcutdir=Testing/stock $(PYTEST_ARGS); \
	rc=$$?; if [ $$rc = 5 ]; then echo "pytest ran no test: failing"; exit 1; fi; exit $$rc

stock-venv:
	Testing/stock/setup_venv.sh $(STOCK_VENV)

demo: deps
	$(VENV)/bin/dicomplus demo --out demo-output

deps: system-deps venv

system-deps:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q "install ok installed" || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing: $$missing"; apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	  else \
	    echo "missing Debian packages: $$missing"; echo "run as root: apt-get install $$missing"; exit 1; \
	  fi; \
	fi

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[test]"
	touch $@

venv: $(VENV)/.installed

lint: venv
	$(VENV)/bin/ruff check DICOMPlusLib DICOMPlus Testing bench
	$(VENV)/bin/ruff format --check DICOMPlusLib DICOMPlus Testing bench
	$(PY) -m mypy  # DICOMPlusLib, configured in pyproject.toml: 0 errors or the build fails

format: venv
	$(VENV)/bin/ruff format DICOMPlusLib DICOMPlus Testing bench
	$(VENV)/bin/ruff check --fix DICOMPlusLib DICOMPlus Testing bench

bench: deps
	$(PY) -m bench all

clean:
	rm -rf $(VENV) $(VENV_312) $(STOCK_VENV) Testing/output bench/_work
