"""Share files recorded relative to the share outbox (``<recipient>/<file>``), not by absolute path, so a
home moved or restored to another folder still finds them.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_shares = sa.table("shares", sa.column("id", sa.Integer), sa.column("file_path", sa.String))


def upgrade() -> None:
    conn = op.get_bind()
    rows = conn.execute(sa.select(_shares.c.id, _shares.c.file_path).where(_shares.c.file_path.like("/%")))
    for share_id, path in rows.all():
        # The outbox layout is always <outbox>/<recipient folder>/<file>.
        relative = "/".join(path.rstrip("/").split("/")[-2:])
        conn.execute(sa.update(_shares).where(_shares.c.id == share_id).values(file_path=relative))


def downgrade() -> None:
    """Nothing to undo in the schema; paths stay relative (an older release then reports those shares
    as missing in ``shares verify`` until its outbox path is prepended again)."""
