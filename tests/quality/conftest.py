"""Quality tests run on the warehouse fixtures (SQLite, and PostgreSQL when reachable / CI=true)."""

from tests.warehouse.fixtures import warehouse_url, wh

__all__ = ["warehouse_url", "wh"]
