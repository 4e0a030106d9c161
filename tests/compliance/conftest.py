from tests.shares.fixtures import census, lineage_url, policies, sh
from tests.warehouse.fixtures import warehouse_url, wh

__all__ = ["census", "lineage_url", "policies", "sh", "warehouse_url", "wh"]
