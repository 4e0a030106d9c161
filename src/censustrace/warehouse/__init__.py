"""The warehouse: the extract registry, the canonical pupil tables and their staging twins (SQLite or
PostgreSQL, migrated with Alembic by ``db.upgrade``), bulk loading and the current view.

Kept free of imports so that ``import censustrace.warehouse.tables`` stays cheap; see ``db``, ``tables``,
``load``, ``current`` and ``naming``. The use cases that fill it are in ``censustrace.intake``.
"""
