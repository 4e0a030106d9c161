"""Alembic environment of the lineage store: see ``censustrace.db.run_alembic_env``."""

from censustrace.db import run_alembic_env
from censustrace.lineage.store.db import VERSION_TABLE
from censustrace.lineage.store.tables import metadata

run_alembic_env(metadata, VERSION_TABLE, "lineage store")
