"""Every warehouse table, whichever package declares it: Alembic and the schema test use this ``metadata``.

Packages that own warehouse tables (audit, compliance, consent, quality, shares) declare them on
``censustrace.warehouse.tables.metadata`` in their own ``tables`` module; importing them here registers
them, so one Alembic history covers the whole warehouse. This module sits above all of them (only the
warehouse's Alembic ``env.py`` and tests import it), so ``censustrace.warehouse`` itself imports none.
"""

from __future__ import annotations

import censustrace.audit.tables
import censustrace.compliance.tables
import censustrace.consent.tables
import censustrace.quality.tables
import censustrace.shares.tables  # noqa: F401  (registers the tables)
from censustrace.warehouse.tables import metadata

__all__ = ["metadata"]
