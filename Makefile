# The book's two commands: `make book` and `make test`. Everything installs into .venv on first use.
PYTHON  ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
CFF     := $(VENV)/cff/bin/cffconvert
VERSION ?=
PROFILE ?= quick
SEED    ?= 0
C       ?=
SEEDS   ?= 0-7
EXECUTOR ?= local

# Datasets that cannot be downloaded at build time live beside the project in ../shared/data (see README).
ifneq ($(wildcard ../shared/data),)
export BOOK_DATA_DIR ?= $(abspath ../shared/data)
endif
export BOOK_CACHE_DIR ?= $(abspath _build/cache)

.PHONY: help install book chapter seeds smoke full-gpu test lint sync setup-cells student assignments release clean

help:
	@echo "make book                      install, execute every chapter ($(PROFILE) profile), build the HTML"
	@echo "make test                      install, then every check CI runs"
	@echo "make chapter C=<slug> [PROFILE=full]   execute one chapter"
	@echo "make seeds [C=<slug>] [PROFILE=quick|full] [SEEDS=0-7] [EXECUTOR=local|slurm]   the seed study"
	@echo "make smoke [C=<slug>]          the full profile's smoke run on the CPU (loops cut short)"
	@echo "make full-gpu [C=\"<slug> ...\"]  the full profile on this machine's GPU, one chapter after another"
	@echo "make student                   the student edition (no solutions) in _build/student"
	@echo "make sync                      rewrite chapters/*.ipynb from chapters/*.md"
	@echo "make setup-cells               rewrite every chapter's setup cell from _config.yml and pyproject.toml"
	@echo "make assignments               otter-grader assignments of the chapters in _build/assignments"
	@echo "make release VERSION=x.y.z     set the version, point launch buttons and setup cells at it, test, tag"
	@echo "make clean                     remove _build"

$(STAMP): requirements.txt pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements.txt
	$(BIN)/python -m pip install -q --no-deps -e .
	@touch $(STAMP)

# cffconvert validates CITATION.cff; it pins an old jsonschema, so it lives in a venv of its own.
$(CFF):
	$(PYTHON) -m venv $(VENV)/cff
	$(VENV)/cff/bin/python -m pip install -q cffconvert==2.0.0

install: $(STAMP) $(CFF)

book: install
	@status=0; $(BIN)/python -m tools.execute --profile $(PROFILE) --seed $(SEED) || status=$$?; \
	$(BIN)/python -m tools.build || status=$$?; \
	if [ $$status -eq 0 ]; then echo "The book is at $(abspath _build/html/index.html)"; fi; exit $$status

chapter: install
	@test -n "$(C)" || { echo "usage: make chapter C=<slug> [PROFILE=full]"; exit 2; }
	$(BIN)/python -m tools.execute $(C) --profile $(PROFILE) --seed $(SEED) --force

seeds: install
	$(BIN)/python -m tools.seeds $(if $(C),--chapter $(C)) --profile $(PROFILE) --seeds $(SEEDS) --executor $(EXECUTOR)

smoke: install
	$(BIN)/python -m tools.execute --smoke $(C)

# On a GPU server, in an environment with a CUDA build of torch (not .venv's CPU wheel): pip install -e . jupytext
full-gpu:
	$(PYTHON) -m tools.full_gpu $(C)

lint: install
	$(BIN)/ruff check lib tests tools
	$(BIN)/ruff format --check lib tests tools
	$(BIN)/actionlint .github/workflows/*.yml
	$(CFF) --validate -i CITATION.cff

test: install lint
	$(BIN)/python -m pytest

sync: install
	$(BIN)/python -m tools.pairs format
	$(BIN)/python -m tools.pairs sync

setup-cells: install
	$(BIN)/python -m tools.setup_cells write

student: install
	$(BIN)/python -m tools.student

assignments: install
	$(BIN)/python -m tools.assignments

release: install
	@test -n "$(VERSION)" || { echo "usage: make release VERSION=x.y.z"; exit 2; }
	$(BIN)/python -m tools.release $(VERSION)

clean:
	rm -rf _build
