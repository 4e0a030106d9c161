"""Alembic environment of the lineage store; run through ``censustrace.lineage.store.db.upgrade``."""
