# Two commands do everything: `make test` and `make book` (see README.md).
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.recbook-installed
# Extra pytest arguments, e.g. PYTEST_ARGS="-x -k fm".
PYTEST_ARGS ?=
# Leaderboard runs at once (one torch thread each): one per core.
JOBS ?= $(shell nproc 2>/dev/null || echo 1)

.PHONY: venv test unit notebooks time-notebooks book bench bench-quick bench-libraries bench-speed scale data clean

$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -r requirements.txt
	# TorchRec (the scaling chapter) on CPU: the CPU build of FBGEMM first, then TorchRec without its
	# dependencies (they would pull the multi-GB CUDA fbgemm-gpu, which breaks the CPU one); its pure
	# Python dependencies are in requirements.txt. Both versions match torch 2.13.
	$(BIN)/python -m pip install -q fbgemm-gpu-cpu==1.8.0
	$(BIN)/python -m pip install -q --no-deps torchrec==1.8.0
	$(BIN)/python -m pip install -q --no-deps -e .
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $@

venv: $(STAMP)

# Fetch MovieLens-100K into the cache once (the notebooks and tests would do it on first use).
data: $(STAMP)
	$(BIN)/python -m recbook.data

# Unit tests, then every notebook under nbval.
test: $(STAMP) data
	# The Chinese catalogues of the translated pages against today's English (drift fails here).
	$(MAKE) --no-print-directory i18n-check
	$(BIN)/python -m pytest --nbval-lax $(PYTEST_ARGS) tests book
	$(BIN)/python -m pytest -m visible_code $(PYTEST_ARGS) tests/test_visible_code.py

unit: $(STAMP)
	$(BIN)/python -m pytest tests $(PYTEST_ARGS)

notebooks: $(STAMP) data
	$(BIN)/python -m pytest --nbval-lax book $(PYTEST_ARGS)
	# The code the reader sees, alone: the setup cell and the visible cells in a fresh kernel.
	$(BIN)/python -m pytest -m visible_code $(PYTEST_ARGS) tests/test_visible_code.py

# Execute each notebook in a fresh kernel and print its wall time (budget: 60 s each).
time-notebooks: $(STAMP) data
	$(BIN)/python tools/time_notebooks.py

# Execute every notebook and build the website into _build/html. Locally notebooks are cached
# (execute_notebooks: cache); with CI set the cache is dropped first, so every notebook runs.
book: $(STAMP) data
	@# Each figure is drawn in Chinese too as the notebooks run (recbook.i18n): the font first.
	@fc-list 'WenQuanYi Micro Hei' | grep -q . || { echo "make book: the Chinese figures need the font WenQuanYi Micro Hei: sudo apt-get install -y fonts-wqy-microhei" >&2; exit 1; }
	@if [ -n "$$CI" ]; then rm -rf _build/.jupyter_cache _build/jupyter_execute; fi
	$(BIN)/jupyter-book build . -W --keep-going
	@echo "Book: $(CURDIR)/_build/html/index.html"
	$(MAKE) --no-print-directory book-zh
	# The two editions must have the same pages, sections, figures, equations and exercises, and
	# every figure and chart drawn by code its labels in Chinese, with no glyph missing.
	$(BIN)/python _ext/recbook_i18n_tool.py compare _build/html _build/html/zh
	$(BIN)/python _ext/recbook_i18n_tool.py figures

# The Chinese edition (CONTRIBUTING.md, "Two editions"), built by `make book` after the English
# one from the same execution cache (nothing executes twice). These run Sphinx on the
# configuration that Jupyter Book writes (conf.py, gitignored), with the book's extensions on the
# path.
.PHONY: book-zh i18n-update i18n-check
I18N_LANG ?= zh_CN
I18N_ARGS ?=
SPHINX := PYTHONPATH=_ext $(BIN)/sphinx-build

# Extract the English of every page (no notebook runs) and merge it into
# locales/$(I18N_LANG)/LC_MESSAGES/*.po: changed English becomes fuzzy, the old English kept (#|).
i18n-update: $(STAMP)
	$(BIN)/jupyter-book config sphinx . >/dev/null
	rm -rf _build/gettext
	$(SPHINX) -b gettext -E -q -D nb_execution_mode=off -d _build/.doctrees-gettext . _build/gettext
	$(BIN)/python _ext/recbook_i18n_tool.py update $(I18N_ARGS)
	$(BIN)/python _ext/recbook_i18n_tool.py stats

# Pages listed in locales/$(I18N_LANG)/translated.txt: nothing untranslated, fuzzy or obsolete,
# glossary terms translated consistently.
i18n-check: $(STAMP)
	$(BIN)/jupyter-book config sphinx . >/dev/null
	rm -rf _build/gettext
	$(SPHINX) -b gettext -E -q -D nb_execution_mode=off -d _build/.doctrees-gettext . _build/gettext
	$(BIN)/python _ext/recbook_i18n_tool.py check

# The Chinese site, into _build/html/zh/, reusing the English build's execution cache (the cache
# is keyed on code cells only, so nothing runs twice). Run `make book` first. -E: every page is
# read again (no notebook runs), so a changed catalogue reaches every page's sidebar.
book-zh: $(STAMP) data
	$(BIN)/jupyter-book config sphinx . >/dev/null
	$(SPHINX) -b html -E -W --keep-going -D language=$(I18N_LANG) -D recbook_edition_links=1 \
		-D nb_execution_cache_path=$(CURDIR)/_build/.jupyter_cache \
		-d _build/zh/.doctrees . _build/zh/html
	rm -rf _build/html/zh && mkdir -p _build/html && cp -r _build/zh/html _build/html/zh
	@echo "Chinese edition: $(CURDIR)/_build/html/zh/index.html"

bench: $(STAMP) data
	$(BIN)/python -m recbook.bench --jobs $(JOBS) $(BENCH_ARGS)

bench-quick: $(STAMP) data
	$(BIN)/python -m recbook.bench --quick --jobs $(JOBS) $(BENCH_ARGS)

# The established libraries on the book's split, each in its own environment (benchmarks/libraries/).
bench-libraries: $(STAMP) data
	RECBOOK_PYTHON=$(BIN)/python bash benchmarks/libraries/run.sh

# Speed side by side in one run: recbook and each library's counterpart, seed 0, two epochs each,
# one after another -> book/results/speed.csv|md (about 25 minutes on 2 cores).
bench-speed: $(STAMP) data
	RECBOOK_PYTHON=$(BIN)/python bash benchmarks/libraries/run.sh --speed

# The scaling chapter's larger run: step time and memory per strategy up to 10M rows per table, a
# 100M-row streamed log (2 processes), IVF-PQ at 1M items -> book/results/scale_*.csv, scale_run.json.
scale: $(STAMP)
	$(BIN)/python -m recbook.scale.launch --out book/results
	$(BIN)/python -m recbook.scale.ann --n 1000000 --out book/results/scale_pq.csv

clean:
	rm -rf _build .pytest_cache
