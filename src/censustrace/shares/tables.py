"""Warehouse tables of shares: the share register (every share and every blocked attempt), the
disclosure log (one row per pupil per share, by pupil key) and the erasures done under retention rules.

What each column means is in ``docs/shares.md``. Changing a table needs a new Alembic revision.
"""

from __future__ import annotations

from typing import Final

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    Column,
    Date,
    Index,
    Integer,
    String,
    Table,
    Text,
)

from censustrace.warehouse.tables import EXTRACT_ID_LENGTH, UtcDateTime, in_check, metadata

# --- share statuses, in the order a share moves through them ----------------------------------------------
BLOCKED: Final = "blocked"  # the policy check refused it: reasons recorded, nothing built or sent
CHECKED: Final = "checked"  # the policy check allowed it; not built yet
BUILT: Final = "built"  # outbound file and manifest written aside, disclosure rows recorded
RECORDED: Final = "recorded"  # its lineage event is committed to the lineage store
DELIVERED: Final = "delivered"  # the file is visible in the recipient's outbox folder
SHARE_STATUSES: Final = (BLOCKED, CHECKED, BUILT, RECORDED, DELIVERED)
#: A share in one of these states is resumed (not started again) by the next run of its agreement.
UNFINISHED: Final = (CHECKED, BUILT, RECORDED)

SHARE_ID_LENGTH: Final = 40


shares = Table(
    "shares",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("share_id", String(SHARE_ID_LENGTH), nullable=False, unique=True),
    Column("agreement_id", String, nullable=False),
    # The caller's idempotency key (the Airflow run id); NULL when started from the command line.
    Column("run_key", String),
    Column("status", String(10), nullable=False),
    Column("as_of", Date, nullable=False),
    # What the agreement said when it was checked (the agreement file may change later).
    Column("agreement_sha256", String(64)),
    Column("recipient", String),
    Column("recipient_type", String),
    Column("purpose", String),
    Column("lawful_basis", String),
    Column("special_category_condition", String),
    Column("legal_gateway", String),
    Column("approval", JSON(none_as_null=True)),  # {reference, approved_by, approved_on} or NULL
    Column("policy_version", String(64)),
    Column("flags", JSON, nullable=False),
    Column("reasons", JSON, nullable=False),  # [{code, message, field}]: why it was blocked
    Column("fields", JSON, nullable=False),
    Column("transforms", JSON, nullable=False),
    Column("retention_days", Integer),  # the agreement's: the recipient deletes the file this long after
    # Filled by build: counts only (no pupil data).
    Column("pupils", Integer),
    Column("excluded", JSON(none_as_null=True)),  # {reason: pupils}
    Column("suppressed", JSON(none_as_null=True)),  # {field: values blanked as refused/not obtained}
    Column("source_extracts", JSON(none_as_null=True)),  # [extract_id]: the exact versions used
    Column("consent_files", JSON(none_as_null=True)),  # [consent_file_id] whose decisions applied
    # {covering: [purpose], consent_required, decisions_applied}: how recorded decisions were applied.
    Column("consent_check", JSON(none_as_null=True)),
    Column("file_name", String),
    Column("sha256", String(64)),
    Column("size", BigInteger),
    Column("manifest_sha256", String(64)),
    # Filled by release.
    Column("file_path", String),  # where the file became visible
    Column("lineage_run_id", String(36)),
    Column("lineage_event", Text),  # the exact event committed, re-sent unchanged by a retry
    Column("created_at", UtcDateTime, nullable=False),
    Column("built_at", UtcDateTime),
    Column("recorded_at", UtcDateTime),
    Column("delivered_at", UtcDateTime),
    CheckConstraint(in_check("status", SHARE_STATUSES), name="status"),
    Index("ix_shares_agreement_id_run_key", "agreement_id", "run_key"),
)

disclosures = Table(
    "disclosures",
    metadata,
    # No foreign keys (they cost a query per row on PostgreSQL): the share build writes only its own,
    # locked share id and checks once that every extract id is registered (shares.build).
    Column("share_id", String(SHARE_ID_LENGTH), primary_key=True),
    Column("pupil_key", String(64), primary_key=True),
    # The pupil record the values came from: the exact source extract and its record number.
    Column("extract_id", String(EXTRACT_ID_LENGTH), nullable=False),
    Column("record_number", Integer, nullable=False),
    # Fields of the share sent empty for this pupil (absent, or a refused/not-obtained code); NULL: none.
    Column("blank_fields", JSON(none_as_null=True)),
    # Subject access: every share that included a pupil.
    Index("ix_disclosures_pupil_key", "pupil_key"),
)

erasures = Table(
    "erasures",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("erased_at", UtcDateTime, nullable=False),
    Column("as_of", Date, nullable=False),
    Column("rule", String, nullable=False),
    Column("table_name", String, nullable=False),
    Column("field", String, nullable=False),
    Column("rows", Integer, nullable=False),
    Column("extracts", JSON, nullable=False),  # [extract_id] whose rows were changed
)

__all__ = [
    "BLOCKED",
    "BUILT",
    "CHECKED",
    "DELIVERED",
    "RECORDED",
    "SHARE_STATUSES",
    "UNFINISHED",
    "disclosures",
    "erasures",
    "shares",
]
