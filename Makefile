# The course's two commands:  `make lab`  and  `make test`.
# Both create .venv on first use (any Python 3.10+ as PYTHON), install the package with
# its dependencies, and keep it up to date when pyproject.toml changes.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# torch is installed first, pinned: where a local CPU wheel of it is provided (our CI), that
# takes seconds; elsewhere pip takes PyPI's wheel (on Linux it carries CUDA: several GB, and
# it uses a GPU if there is one). For a small CPU-only install elsewhere:
#   make test TORCH="torch --index-url https://download.pytorch.org/whl/cpu"
TORCH  ?= torch==2.13.0
STAMP  := $(VENV)/.installed
# JupyterLab refuses to run as root (as in many containers) unless told it may.
LAB_ARGS ?= $(if $(filter 0,$(shell id -u)),--allow-root)

.PHONY: lab test lint pytest nbval install clean student book

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else "diffusion-lessons needs Python 3.10 or newer; set PYTHON=python3.x")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check $(TORCH)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

lab: $(STAMP)  ## open the course in JupyterLab
	$(BIN)/jupyter lab --notebook-dir=notebooks $(LAB_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .

pytest: $(STAMP)
	$(BIN)/python -m pytest -q tests

# Notebooks run on the smoke budget here (DIFFUSION_LESSONS_BUDGET=smoke: short training);
# cells whose output depends on the budget carry the tag nbval-ignore-output.
nbval: $(STAMP)  ## execute every notebook and compare its outputs with the committed ones
	DIFFUSION_LESSONS_BUDGET=smoke MPLBACKEND=Agg $(BIN)/python -m pytest -q --nbval --nbval-current-env --nbval-cell-timeout=600 \
		-p no:cacheprovider notebooks

test: lint pytest nbval  ## everything CI runs

# For teachers (docs/teaching.md): student editions, and the course book as a static site.
student: $(STAMP)  ## student editions of every lesson, solutions replaced by stubs, in _build/student
	$(BIN)/diffusion-lessons student _build/student

book: $(STAMP)  ## the course book (HTML, works offline) in _build/book; open _build/book/index.html
	$(BIN)/diffusion-lessons book --out _build/book

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
