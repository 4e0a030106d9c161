"""Warehouse test fixtures (defined in ``tests.warehouse.fixtures`` so the intake tests can share them)."""

from tests.warehouse.fixtures import postgres_server, postgres_url, warehouse_url, wh

__all__ = ["postgres_server", "postgres_url", "warehouse_url", "wh"]
