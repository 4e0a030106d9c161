# censustrace: `make demo` and `make test` are the two commands; see README.md.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: install demo pipeline pipeline-postgres pipeline-celery serve test test-quick lint format constraints clean

$(STAMP): requirements.txt requirements-dev.txt constraints.txt pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "censustrace needs Python 3.11 or newer")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt -c constraints.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	@touch $(STAMP)

install: $(STAMP)

## Set up, run the pipeline DAGs once on generated sample data, then serve Airflow.
demo: pipeline serve

## Set up and run the pipeline DAGs once on the sample census; exits when done.
pipeline: install
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/censustrace pipeline

## The same on the local PostgreSQL (Airflow metadata DB, warehouse, lineage store), LocalExecutor with
## parallelism 2. PG_SERVER points at the server; the databases are created when missing.
PG_SERVER ?= postgresql+psycopg2://postgres@127.0.0.1:5432
PG_HOME   ?= $(CURDIR)/.censustrace-pg
pipeline-postgres: install
	PATH="$(CURDIR)/$(BIN):$$PATH" CENSUSTRACE_HOME="$(PG_HOME)" \
	CENSUSTRACE_WAREHOUSE_URL="$(PG_SERVER)/censustrace_warehouse" \
	CENSUSTRACE_LINEAGE_URL="$(PG_SERVER)/censustrace_lineage" \
	CENSUSTRACE_AIRFLOW_DB_URL="$(PG_SERVER)/censustrace_airflow" \
	CENSUSTRACE_AIRFLOW_PARALLELISM=2 \
	$(BIN)/censustrace pipeline --create-databases --use-executor

# `censustrace pipeline` writes the demo agreements, dated onto the academic year containing today, into
# the home's policies/ folder: serve them when they are there (docs/policies.md, "Shipped agreements").
DEMO_POLICIES ?= $(CURDIR)/.censustrace/policies
## The same on CeleryExecutor: Redis (CELERY_BROKER, its own DB number) as broker, Airflow's metadata DB,
## the warehouse and the lineage store on PostgreSQL under their own names, two Celery workers started
## and stopped by the command. State under CENSUSTRACE_HOME when set, else .censustrace-celery/.
CELERY_BROKER ?= redis://127.0.0.1:6379/5
CELERY_HOME   ?= $(if $(CENSUSTRACE_HOME),$(CENSUSTRACE_HOME),$(CURDIR)/.censustrace-celery)
CELERY_PORT   ?= 8093
pipeline-celery: install
	PATH="$(CURDIR)/$(BIN):$$PATH" CENSUSTRACE_HOME="$(CELERY_HOME)" \
	CENSUSTRACE_WAREHOUSE_URL="$(PG_SERVER)/censustrace_celery_warehouse" \
	CENSUSTRACE_LINEAGE_URL="$(PG_SERVER)/censustrace_celery_lineage" \
	CENSUSTRACE_AIRFLOW_DB_URL="$(PG_SERVER)/censustrace_celery_airflow" \
	CENSUSTRACE_CELERY_BROKER_URL="$(CELERY_BROKER)" \
	CENSUSTRACE_CELERY_WORKERS=2 CENSUSTRACE_AIRFLOW_PORT=$(CELERY_PORT) \
	$(BIN)/censustrace pipeline --create-databases --executor celery

serve: install
	PATH="$(CURDIR)/$(BIN):$$PATH" $(if $(wildcard $(DEMO_POLICIES)),CENSUSTRACE_POLICIES_DIR="$(DEMO_POLICIES)") \
	$(BIN)/censustrace serve

## Lint, type-check and run the whole test suite.
test: install lint
	@PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests"; exit 0; fi; exit $$rc

## The same without the real Airflow runs (marker dagrun: dag.test(), pipeline on an executor) and the
## browser tests (marker browser): the edit-test loop.
test-quick: install lint
	@PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/pytest -m "not dagrun and not browser" $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests"; exit 0; fi; exit $$rc

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

constraints: install
	(echo "# Every package of a working install, as resolved on the project machine (regenerate: make constraints)."; \
	 $(BIN)/pip freeze --exclude-editable | grep -v '^censustrace') > constraints.txt

clean:
	rm -rf $(VENV) .censustrace .censustrace-pg .censustrace-celery .mypy_cache .ruff_cache .pytest_cache
