# make run  : set everything up, then serve the app with a Celery worker and the demo project.
# make test : the whole test suite against PostgreSQL and Redis on 127.0.0.1.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000
# Local state (SQLite, media, broker folders, logs); settings read the same variable.
VAR_DIR ?= $(CURDIR)/var
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: run test venv venv-dev frontend services browser bench clean local-env

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip wheel

# Reinstall only when the requirement files change.
$(VENV)/.installed-run: requirements.txt | $(VENV)/bin/python
	$(PY) -m pip install -q -r requirements.txt
	touch $@
$(VENV)/.installed-dev: requirements.txt requirements-dev.txt | $(VENV)/bin/python
	$(PY) -m pip install -q -r requirements-dev.txt
	touch $@ $(VENV)/.installed-run

venv: $(VENV)/.installed-run
venv-dev: $(VENV)/.installed-dev

frontend:
	@if [ -f frontend/vite.config.js ]; then \
	  cd frontend && { [ -d node_modules ] && [ node_modules/.package-lock.json -nt package-lock.json ] || npm ci --no-audit --no-fund; } && npm run build; \
	elif [ -f frontend/package.json ]; then \
	  cd frontend && { [ -d node_modules ] || npm ci --no-audit --no-fund; }; \
	fi

services:
	@./scripts/ensure_services.sh

browser:
	@./scripts/ensure_browser.sh

run: export DEBUG ?= 1
run: export VAR_DIR := $(VAR_DIR)
# The laptop's settings for every command outside make run (engine/settings.py reads the file).
local-env:
	@mkdir -p $(VAR_DIR); [ -f $(VAR_DIR)/local.env ] || { \
	  echo "# Written by make run: what python manage.py reads outside make run (the environment wins)."; \
	  echo "DEBUG=1"; echo "SECRET_KEY=$$($(PYTHON) -c 'import secrets; print(secrets.token_urlsafe(48))')"; \
	} > $(VAR_DIR)/local.env

run: venv frontend local-env
	$(PY) manage.py migrate --noinput -v0
	$(PY) manage.py demo
	$(PY) manage.py generate --project demo
	@echo; echo "Starting a Celery worker (log: $(VAR_DIR)/worker.log) and the web app..."
	@# A worker that exits stalled (code 75, engine/worker_watchdog.py) is started again.
	@set -m; : > $(VAR_DIR)/worker.log; \
	  while :; do $(VENV)/bin/celery -A engine worker -B -Q default,model --concurrency 1 -l INFO \
	  >> $(VAR_DIR)/worker.log 2>&1; [ $$? -eq 75 ] || break; echo "== started again" >> $(VAR_DIR)/worker.log; \
	  done & worker=$$!; \
	  trap "kill -- -$$worker 2>/dev/null; wait $$worker 2>/dev/null" EXIT INT TERM; \
	  echo "Open http://$(HOST):$(PORT)/ and log in with one of the demo logins above."; \
	  $(PY) manage.py runserver --noreload $(HOST):$(PORT)

test: venv-dev services browser frontend
	cd frontend && npm test
	$(VENV)/bin/lint-imports --no-cache
	$(PY) -m pytest $(PYTEST_ARGS)
	@echo "== The laptop's path: the annotation and engine tests again, on SQLite (make run's database)"
	DATABASE_URL=sqlite:///$(VAR_DIR)/test-sqlite.db $(PY) -m pytest tests/annotation tests/engine -m "not postgresql" -q

bench: venv-dev services
	@for b in $(filter-out bench/harness.py,$(wildcard bench/*.py)); do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf $(VAR_DIR) staticfiles frontend/dist
