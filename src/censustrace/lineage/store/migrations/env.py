"""Alembic environment of the lineage store: see ``censustrace.db.run_alembic_env``."""

# The viewer's tables share this database and, for now, this chain (revisions 0002 and 0004): they
# register on ``metadata`` when imported, so that autogenerate sees them.
import censustrace.viewer.tables  # noqa: F401
from censustrace.db import run_alembic_env
from censustrace.lineage.store.db import VERSION_TABLE
from censustrace.lineage.store.tables import metadata

run_alembic_env(metadata, VERSION_TABLE, "lineage store")
