# studio: `make run` to use it, `make test` to check it. `make help` lists every target.
SHELL := /bin/bash
.DEFAULT_GOAL := help

# Django 6 needs Python >= 3.12: the first of these that exists builds the virtualenv.
PYTHON ?= $(firstword $(shell for p in python3.13 python3.12 /root/.pyenv/versions/3.13*/bin/python /root/.pyenv/versions/3.12*/bin/python; do \
	command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null && command -v $$p; done))
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
TEST_PG_URL ?= postgres://postgres@127.0.0.1:5432/studio
TEST_REDIS_URL ?= redis://127.0.0.1:6379/15
PYTEST_ARGS ?=
# make chaos: runs per backend, runs at a time, and any other option of `python -m studio.chaos --help`
CHAOS_RUNS ?= 50
CHAOS_JOBS ?= 6
CHAOS_ARGS ?=
BENCH_ARGS ?=
# make run / make serve: the port the web server listens on (HOST: the address, 0.0.0.0 for every interface)
PORT ?= 8000
HOST ?= 127.0.0.1

.PHONY: help setup run serve test test-sqlite test-scaled bench chaos chaos-short lint format clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -n "$(PYTHON)" || { echo "Python >= 3.12 is required (none found)"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[test]"
	touch $(STAMP)

setup: $(STAMP) ## Create the virtualenv and install the studio with its test tools

run: setup ## Migrate, demo login, dev web server + worker + emulator (PORT=N; Ctrl-C stops all)
	$(PY) manage.py migrate --noinput -v0
	$(PY) manage.py collectstatic --noinput -v0
	$(PY) manage.py ensure_demo
	$(PY) manage.py devstack --addr $(HOST):$(PORT)

serve: setup ## Production stack here: gunicorn (+ whitenoise), worker cluster, emulator without a key (PORT=N)
	$(PY) manage.py migrate --noinput -v0
	$(PY) manage.py collectstatic --noinput -v0
	$(PY) manage.py check --deploy --fail-level CRITICAL  # printed for the operator, not a stop
	$(PY) manage.py serve --addr $(HOST):$(PORT)

test: test-sqlite test-scaled ## The whole suite: SQLite + ORM broker, then PostgreSQL + Redis

test-sqlite: setup ## The suite on the embedded default (SQLite, django-q2 ORM broker)
	STUDIO_DATA_DIR=$(CURDIR)/var/test-sqlite STUDIO_Q_NAME=studio-test $(PY) -m pytest $(PYTEST_ARGS)

test-scaled: setup ## The suite on PostgreSQL + Redis (skips with a reason if they are not running)
	STUDIO_DATA_DIR=$(CURDIR)/var/test-scaled DATABASE_URL=$(TEST_PG_URL) REDIS_URL=$(TEST_REDIS_URL) \
		STUDIO_SCALED_OUT=1 STUDIO_Q_NAME=studio-test $(PY) -m pytest $(PYTEST_ARGS)

bench: setup ## Measured speed: poller cadence at the gateway with 300/1,000/3,000 renders in flight, pages (BENCH_ARGS="--renders 300 --poller-only")
	STUDIO_DATA_DIR=$(CURDIR)/var/bench $(PY) -m studio.bench $(BENCH_ARGS)

chaos: setup ## Kill a real cluster at random moments (CHAOS_RUNS per backend); count what was lost or done twice
	$(PY) -m studio.chaos --runs $(CHAOS_RUNS) --jobs $(CHAOS_JOBS) --dir $(CURDIR)/var/chaos $(CHAOS_ARGS)

chaos-short: ## make chaos with 3 runs per backend, all at once (CI)
	$(MAKE) chaos CHAOS_RUNS=3 CHAOS_JOBS=6

lint: setup ## ruff lint and format check, mypy with django-stubs
	$(PY) -m ruff check studio tests
	$(PY) -m ruff format --check studio tests
	$(PY) -m mypy studio

format: setup ## ruff format and fix
	$(PY) -m ruff format studio tests
	$(PY) -m ruff check --fix studio tests

clean: ## Remove the virtualenv and all local data (database, clips)
	rm -rf $(VENV) var
