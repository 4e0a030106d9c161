"""Alembic environment of the viewer's tables; run through ``censustrace.viewer.db.upgrade``."""
