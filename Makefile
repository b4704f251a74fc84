# The README's commands. Each target creates .venv and installs what it needs when missing,
# so on a fresh clone `make demo` and `make test` are the only set-up.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
# nbgrader shells out to alembic when it creates a gradebook: the venv's bin must be on PATH.
export PATH := $(abspath $(BIN)):$(PATH)
export MPLBACKEND := Agg

.PHONY: help demo test lint lab lab-solutions release screenshots lite serve-lite bench bench-layers bench-grading clean-demo

help:
	@echo "make demo           release, grade the bundled sample class, print the score table"
	@echo "make test           the whole test suite (nbval on the source notebooks included; installs the torch oracle,"
	@echo "                    TORCH=0 without it)"
	@echo "make lint           ruff over grader/, workbook/, tests/, bench/ and the source notebooks"
	@echo "make lab            JupyterLab on the student notebooks"
	@echo "make lab-solutions  JupyterLab on the source notebooks (instructors)"
	@echo "make release        regenerate notebooks/ from solutions/"
	@echo "make lite           build/lite: the student notebooks as a static JupyterLite site (Python in the browser)"
	@echo "make serve-lite     serve build/lite on http://localhost:8000/lab/index.html"
	@echo "make screenshots    the README's pictures (docs/img/) from the browser tests, in headless Chromium"
	@echo "make bench          bench-layers, then bench-grading"
	@echo "make bench-layers   the fast layers (references and given) against torch (installs torch==2.13.0);"
	@echo "                    BENCH_ARGS=--quick for a smoke run, BENCH_ARGS='--json run.json' to keep the numbers,"
	@echo "                    BENCH_ARGS='--against REV' to time a git revision's layers beside these, in the same run"
	@echo "make bench-grading  grading throughput only: stock nbgrader vs grader autograde (1, 2 workers, Dask); QUICK=1 for a smoke run"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(INSTALLED): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

demo: $(INSTALLED)
	$(BIN)/grader demo

# One pytest process per core (TEST_WORKERS=0 for one process), a whole test file to each, so a file's fixtures (a
# graded class, a JupyterLab server) are built once; the slowest tests are listed at the end.
# The comparisons with PyTorch are part of the suite, so the test target installs the oracle first (torch==2.13.0, the
# CPU build, as the bench does); TORCH=0 leaves it out, and those tests then skip (CI=true makes them fail instead).
TEST_WORKERS ?= auto
TORCH ?= 1
test: $(INSTALLED) $(if $(filter 0,$(TORCH)),,$(VENV)/.torch)
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile --durations=15 --nbval-lax tests solutions

# ruff reads the source notebooks itself (cell by cell, magics included); its settings are in pyproject.toml.
lint: $(INSTALLED)
	$(BIN)/ruff check

lab: $(INSTALLED)
	$(BIN)/jupyter lab --notebook-dir=notebooks

lab-solutions: $(INSTALLED)
	$(BIN)/jupyter lab --notebook-dir=solutions

release: $(INSTALLED)
	$(BIN)/grader release

# The README's two pictures are what the browser tests see (tests/test_browser.py): a notebook's figure drawn by
# the student's own layer, and a feedback page's verdict. Needs /usr/bin/chromium (apt-get install chromium
# fonts-noto-cjk); without it the tests would skip and leave the old pictures, so this target stops first.
SCREENSHOTS := docs/img
screenshots: $(INSTALLED)
	@test -x "$${WORKBOOK_CHROMIUM:-/usr/bin/chromium}" || { echo "make screenshots: $${WORKBOOK_CHROMIUM:-/usr/bin/chromium} is missing (apt-get install chromium fonts-noto-cjk)"; exit 1; }
	WORKBOOK_SCREENSHOTS=$(abspath $(SCREENSHOTS)) $(BIN)/python -m pytest -p no:cacheprovider tests/test_browser.py \
		-k "solves_conv_forward or feedback_page"
	@ls -l $(SCREENSHOTS)/notebook-figure.png $(SCREENSHOTS)/feedback.png

# A static site: the released notebooks, the student package and Pyodide (numpy, matplotlib) from PyPI, no CDN.
lite: $(INSTALLED)
	$(BIN)/python -m grader.lite

serve-lite: lite
	$(BIN)/python -m http.server --bind 127.0.0.1 --directory build/lite 8000

# torch is a benchmark baseline and test oracle only; pin the CPU build (an unpinned torch is a multi-GB CUDA build).
$(VENV)/.torch: | $(INSTALLED)
	$(BIN)/python -m pip install --quiet torch==2.13.0 threadpoolctl
	touch $@

# OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE are set on some machines and slow numpy's BLAS: unset for the bench only.
BENCH_ARGS ?=
bench: bench-layers bench-grading

bench-layers: $(INSTALLED) $(VENV)/.torch
	@test -z "$$OPENBLAS_CORETYPE$$OPENBLAS_L2_SIZE" || echo "make bench: running with OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset (were '$$OPENBLAS_CORETYPE' '$$OPENBLAS_L2_SIZE')"
	env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE $(BIN)/python bench/conv_speed.py $(BENCH_ARGS)

# Grading a class: (a) stock nbgrader autograde, (b) grader --workers 1, (c) --workers 2, (d) a 2-worker Dask cluster.
bench-grading: $(INSTALLED)
	$(BIN)/python bench/grading_throughput.py $(if $(QUICK),--quick)

clean-demo:
	rm -rf submitted/sample-* autograded/sample-* feedback/sample-* scores.csv
