"""Alembic environment of the warehouse; run through ``censustrace.warehouse.db.upgrade``."""
