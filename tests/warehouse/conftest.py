"""Warehouse test fixtures (defined in ``tests.warehouse.fixtures`` so the intake tests can share them)."""

from tests.warehouse.fixtures import warehouse_url, wh

__all__ = ["warehouse_url", "wh"]
