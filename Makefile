# The course's two commands:  `make lab`  and  `make test`.
# They use two virtual environments, each created on first use (any Python 3.10+ as PYTHON)
# and kept up to date when pyproject.toml changes:
#   .venv      the learner's (`make lab`): the package, JupyterLab and ipykernel, `.[lab]` only;
#   .venv-dev  tests and teaching tools (`make test`, `make student`, `make book`, grading):
#              `.[dev]`, with pytest, nbval, ruff and nbgrader.
# So nbgrader's JupyterLab extension (its menus, "Create Assignment") never shows in the
# learner's JupyterLab. `make lab` opens the learner's own copy of the lessons (lessons/,
# git-ignored, never overwritten); `make lab-solutions` opens the solved ones (notebooks/).

PYTHON   ?= python3
VENV     ?= .venv
DEV_VENV ?= .venv-dev
BIN      := $(VENV)/bin
DEV_BIN  := $(DEV_VENV)/bin
# torch is installed first, pinned: where a local CPU wheel of it is provided (our CI), that
# takes seconds; elsewhere pip takes PyPI's wheel (on Linux it carries CUDA: several GB, and
# it uses a GPU if there is one). For a small CPU-only install elsewhere:
#   make test TORCH="torch --index-url https://download.pytorch.org/whl/cpu"
TORCH  ?= torch==2.13.0
STAMP     := $(VENV)/.installed-lab
DEV_STAMP := $(DEV_VENV)/.installed-dev
# The learner's copy of the lessons: a git-ignored folder beside notebooks/ (same depth, so
# relative links work), not under _build/ (which is thrown away). REFRESH=01_markov_noising
# replaces that chapter's copy on purpose (the old one moves to lessons/.replaced/).
LESSONS ?= lessons
REFRESH ?=
# JupyterLab refuses to run as root (as in many containers) unless told it may.
LAB_ARGS ?= $(if $(filter 0,$(shell id -u)),--allow-root)
JUPYTER_LAB ?= $(BIN)/jupyter lab
CHECK_PYTHON := $(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else "diffusion-lessons needs Python 3.10 or newer; set PYTHON=python3.x")'

.PHONY: lab lab-solutions test lint pytest nbval install install-dev clean student book

# The learner's environment. A .venv made by an older Makefile (with `.[dev]`) still holds
# nbgrader and its JupyterLab extension: they are removed (they live in .venv-dev now).
$(STAMP): pyproject.toml
	@$(CHECK_PYTHON)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check $(TORCH)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[lab]"
	@if $(BIN)/python -m pip show --quiet nbgrader >/dev/null 2>&1; then \
		echo "removing the teaching tools (nbgrader) from $(VENV): they live in $(DEV_VENV) now"; \
		$(BIN)/python -m pip uninstall --quiet --yes nbgrader jupyter-server-mathjax; fi
	touch $(STAMP)

# Tests and teaching tools.
$(DEV_STAMP): pyproject.toml
	@$(CHECK_PYTHON)
	test -x $(DEV_BIN)/python || $(PYTHON) -m venv $(DEV_VENV)
	$(DEV_BIN)/python -m pip install --quiet --disable-pip-version-check $(TORCH)
	$(DEV_BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[dev]"
	touch $(DEV_STAMP)

install: $(STAMP)

install-dev: $(DEV_STAMP)

lab: $(STAMP)  ## your own copy of the lessons (written where missing, never overwritten), in JupyterLab
	$(BIN)/diffusion-lessons learner $(LESSONS) $(if $(REFRESH),--refresh $(REFRESH))
	$(JUPYTER_LAB) --notebook-dir=$(LESSONS) $(LAB_ARGS)

lab-solutions: $(STAMP)  ## the solved lessons (notebooks/, the teacher's source) in JupyterLab
	$(JUPYTER_LAB) --notebook-dir=notebooks $(LAB_ARGS)

lint: $(DEV_STAMP)
	$(DEV_BIN)/ruff check .

pytest: $(DEV_STAMP)
	$(DEV_BIN)/python -m pytest -q tests

# Notebooks run on the smoke budget here (DIFFUSION_LESSONS_BUDGET=smoke: short training);
# cells whose output depends on the budget carry the tag nbval-ignore-output.
nbval: $(DEV_STAMP)  ## execute every notebook and compare its outputs with the committed ones
	DIFFUSION_LESSONS_BUDGET=smoke MPLBACKEND=Agg $(DEV_BIN)/python -m pytest -q --nbval --nbval-current-env --nbval-cell-timeout=600 \
		-p no:cacheprovider notebooks

test: lint pytest nbval  ## everything CI runs

# For teachers (docs/teaching.md): student editions, and the course book as a static site.
student: $(DEV_STAMP)  ## student editions of every lesson, solutions replaced by stubs, in _build/student
	$(DEV_BIN)/diffusion-lessons student _build/student

book: $(DEV_STAMP)  ## the course book (HTML, works offline) in _build/book; open _build/book/index.html
	$(DEV_BIN)/diffusion-lessons book --out _build/book

# Leaves lessons/ alone: it holds the learner's work.
clean:
	rm -rf $(VENV) $(DEV_VENV) .pytest_cache .ruff_cache
