"""Alembic environment of the warehouse: see ``censustrace.db.run_alembic_env``.

Alembic loads this file by path; it sits above every package that declares warehouse tables, through
``censustrace.warehouse_schema`` (nothing in ``censustrace.warehouse`` imports it)."""

from censustrace.db import run_alembic_env
from censustrace.warehouse.db import VERSION_TABLE
from censustrace.warehouse_schema import metadata

run_alembic_env(metadata, VERSION_TABLE, "warehouse")
