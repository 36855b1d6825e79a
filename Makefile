# Two commands do all the set-up: `make report` and `make test`. See README.md.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
NPM_DIR := .cache/npm
AXE    := $(NPM_DIR)/node_modules/axe-core/axe.min.js
# Extra flags for the pipeline, e.g. `make report RUN_ARGS="--workers 4"`.
RUN_ARGS ?=

.PHONY: setup report test check lab bench bench-deps browser-deps fonts ingest lint clean help

help:
	@echo "make report   set up .venv, ingest the demo data, run every chapter, write outputs/index.html"
	@echo "make test     set up .venv if needed and run the whole test suite (what CI runs)"
	@echo "make check    the fast tier for the inner loop: no full report, no browser (about a minute)"
	@echo "make lab      JupyterLab on the project kernel"
	@echo "make bench    benchmarks against their peers (bench/)"

# The environment, keyed on pyproject.toml: re-installs only when it changes.
$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is needed; found " + sys.version.split()[0] + ". Run make PYTHON=python3.11 ..."'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	$(PY) -m ipykernel install --sys-prefix --name analysis --display-name "Python (analysis)" >/dev/null
	touch $(STAMP)

setup: $(STAMP) fonts

# Noto fonts (Debian) for the figures in Arabic and Chinese (src/analysis/figures.py, FONT_FAMILIES):
# installed when we are root and they are missing; otherwise those figures fall back to DejaVu Sans
# (no Chinese glyphs) and tests/test_i18n_figures.py skips and says why (fails in CI).
fonts:
	@if command -v fc-list >/dev/null 2>&1 && fc-list | grep -q "Noto Sans Arabic" && fc-list | grep -q "Noto Sans CJK"; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "installing Debian fonts-noto-core and fonts-noto-cjk for figures in Arabic and Chinese"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fonts-noto-core fonts-noto-cjk >/dev/null) \
	    || echo "could not install the Noto fonts: Arabic and Chinese figure tests will skip"; \
	else echo "Noto fonts (fonts-noto-core, fonts-noto-cjk) missing and not root: Arabic and Chinese figure tests will skip"; fi

ingest: setup
	$(PY) -m analysis ingest

report: setup
	$(PY) -m analysis ingest
	$(PY) -m analysis run $(RUN_ARGS)
	$(PY) -m analysis export
	@echo "Open outputs/index.html"

# One PDF of the front page and the chapter pages, printed by headless Chromium (builds the report
# first when it is missing; PDF_ARGS="--one-per-chapter" for the front page and one page per chapter).
PDF_ARGS ?=
report-pdf: setup browser-deps
	@test -f outputs/index.html || $(MAKE) report
	$(PY) -m analysis.pipeline.pdf $(PDF_ARGS)

# Chromium (Debian) and axe-core (npm) for the browser tests. Installed when we are root and
# they are missing; otherwise the browser tests skip and say why.
browser-deps:
	@if ! command -v chromium >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing Debian chromium for the browser tests"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	      || echo "could not install chromium: browser tests will skip"; \
	  else echo "chromium missing and not root: browser tests will skip"; fi; \
	fi
	@if [ ! -f $(AXE) ] && command -v npm >/dev/null 2>&1; then \
	  mkdir -p $(NPM_DIR) && npm install --silent --no-audit --no-fund --prefix $(NPM_DIR) axe-core@4 >/dev/null \
	    || echo "could not install axe-core: accessibility tests will skip"; \
	fi

test: setup browser-deps
	$(PY) -m pytest

# The fast tier: everything but the slow-marked tests and the browser suite (which builds the
# whole demo report), on every core (pytest-xdist; 74 s on 2 quiet cores against 127 s on one).
# For the inner loop; `make test` runs everything, in one process.
check: setup
	$(PY) -m pytest -m "not slow and not browser" -q -n auto

lint: setup
	$(VENV)/bin/ruff check src tests bench

lab: setup
	$(VENV)/bin/jupyter lab --notebook-dir=. 

# R with the survey and data.table packages (Debian) for the side-by-side benchmarks against R
# (bench/bench_scale.py, bench/bench_estimation.py): installed when we are root and they are missing;
# otherwise those benchmarks skip R and say why.
bench-deps:
	@if command -v Rscript >/dev/null 2>&1 && Rscript -e 'library(survey); library(data.table)' >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "installing Debian r-base-core, r-cran-survey and r-cran-data.table for the benchmarks against R"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq r-base-core r-cran-survey r-cran-data.table >/dev/null) \
	    || echo "could not install R and its survey package: the benchmarks will skip R"; \
	else echo "R with survey and data.table (r-base-core, r-cran-survey, r-cran-data.table) missing and not root: the benchmarks will skip R"; fi

bench: setup bench-deps
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev,bench]'
	$(PY) bench/run_all.py

clean:
	rm -rf outputs/* data/processed/*.parquet data/processed/*.json
