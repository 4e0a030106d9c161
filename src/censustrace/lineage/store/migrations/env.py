"""Alembic environment of the lineage store: see ``censustrace.db.run_alembic_env``.

The viewer's tables (``censustrace.viewer.tables``) share this database under their own chain
(``censustrace/viewer/migrations``; in homes made before it, this chain's revisions 0002 and 0004 had
created them); autogenerate here compares the lineage store's own tables only, so the store never imports
the viewer.
"""

from censustrace.db import run_alembic_env
from censustrace.lineage.store.db import VERSION_TABLE
from censustrace.lineage.store.tables import metadata

run_alembic_env(metadata, VERSION_TABLE, "lineage store")
