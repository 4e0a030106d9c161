"""Alembic environment of the warehouse: see ``censustrace.db.run_alembic_env``."""

from censustrace.db import run_alembic_env
from censustrace.warehouse.db import VERSION_TABLE
from censustrace.warehouse.schema import metadata

run_alembic_env(metadata, VERSION_TABLE, "warehouse")
