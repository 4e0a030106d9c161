"""Alembic environment of the viewer's tables: see ``censustrace.db.run_alembic_env``.

They share the lineage store's database; autogenerate here compares the viewer's own tables only, and
the lineage store's chain compares its own.
"""

from censustrace.db import run_alembic_env
from censustrace.viewer.db import VERSION_TABLE
from censustrace.viewer.tables import metadata

run_alembic_env(metadata, VERSION_TABLE, "viewer")
