"""``censustrace shares verify``: reconcile the share outbox with the share register, the disclosure log
and the lineage store.

Problems (each makes the command exit 1):

* CT-VERIFY-UNREGISTERED: a file in the outbox that no delivered share accounts for;
* CT-VERIFY-MISSING: a delivered share whose file (or manifest) is not in the outbox;
* CT-VERIFY-SHA256: a file whose bytes no longer match the sha256 its share recorded (or a manifest);
* CT-VERIFY-ROWS: a file whose data rows differ from the share's pupil count;
* CT-VERIFY-DISCLOSURES: a delivered share whose disclosure rows differ from its pupil count;
* CT-VERIFY-LINEAGE: a delivered share whose release run, with its file at the share's sha256, is not in
  the lineage store (found by run id and version, never by path: a moved home verifies the same);
* CT-VERIFY-BLOCKED-FILE: a blocked share with a file;
* CT-AUDIT-<KIND>: a problem of the audit trail (``censustrace audit verify``, also under ``audit``):
  a tampered, deleted or inserted row of the share register or the access log, or a chain that ends
  before a head recorded elsewhere (truncated / rewritten).

Shares still on their way (``checked``, ``built``, ``recorded``) and hidden part files are listed as
``pending``: a release that failed is completed by the next run of its agreement.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, Final

from sqlalchemy import func, select
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import SQLAlchemyError

from censustrace.audit.verify import verify_audit
from censustrace.compliance.erasure import outbox_current
from censustrace.config import Settings
from censustrace.intake.archive import sha256_of
from censustrace.lineage.naming import FILE_NAMESPACE
from censustrace.shares.build import manifest_name
from censustrace.shares.errors import ShareLineageError
from censustrace.shares.lineage import release_run_id
from censustrace.shares.register import ShareRow, list_shares
from censustrace.shares.release import outbox_path
from censustrace.shares.tables import BLOCKED, DELIVERED, UNFINISHED, disclosures
from censustrace.warehouse.db import warehouse_engine

UNREGISTERED: Final = "CT-VERIFY-UNREGISTERED"
MISSING: Final = "CT-VERIFY-MISSING"
SHA256: Final = "CT-VERIFY-SHA256"
ROWS: Final = "CT-VERIFY-ROWS"
DISCLOSURES: Final = "CT-VERIFY-DISCLOSURES"
LINEAGE: Final = "CT-VERIFY-LINEAGE"
BLOCKED_FILE: Final = "CT-VERIFY-BLOCKED-FILE"


def _problem(code: str, message: str, share_id: str | None = None, file: str | None = None) -> dict[str, Any]:
    return {"code": code, "message": message, "share_id": share_id, "file": file}


def verify_shares(settings: Settings) -> dict[str, Any]:
    """``{"ok", "shares", "files", "problems": [{code, message, share_id, file}], "pending": [...]}``."""
    rows = list_shares(settings)
    problems: list[dict[str, Any]] = []
    pending: list[dict[str, Any]] = []
    expected: dict[Path, ShareRow] = {}
    counts = _disclosure_counts(settings)
    lineage = _released_versions(
        settings, [s.lineage_run_id or release_run_id(s.share_id) for s in rows if s.status == DELIVERED]
    )
    erased = outbox_current(settings)
    for share in rows:
        if share.status in UNFINISHED:
            pending.append(
                {"share_id": share.share_id, "status": share.status, "agreement": share.agreement_id}
            )
            continue
        if share.status == BLOCKED:
            if share.file_path:
                problems.append(
                    _problem(BLOCKED_FILE, f"blocked share {share.share_id} names a file", share.share_id)
                )
            continue
        # Where it is now: the register holds it relative to the share outbox (see register.located).
        target = Path(share.file_path) if share.file_path else outbox_path(settings, share)
        manifest = target.with_name(manifest_name(target.name))
        expected[target.resolve()] = share
        expected[manifest.resolve()] = share
        problems += _check_delivered(share, target, manifest, counts, lineage, erased.get(share.share_id))
    files = 0
    root = settings.share_outbox_dir
    for path in sorted(root.rglob("*")) if root.is_dir() else []:
        if not path.is_file():
            continue
        if path.name.startswith("."):
            pending.append({"file": str(path), "status": "part file of an unfinished release"})
            continue
        files += 1
        if path.resolve() not in expected:
            problems.append(
                _problem(
                    UNREGISTERED,
                    f"{path.name} is in the outbox but no delivered share sent it",
                    file=str(path),
                )
            )
    audit = verify_audit(settings)
    problems += [
        _problem(f"CT-AUDIT-{p['kind'].upper()}", p["message"], p.get("share_id")) for p in audit["problems"]
    ]
    return {
        "ok": not problems,
        "audit": audit,
        "shares": sum(1 for s in rows if s.status == DELIVERED),
        "blocked": sum(1 for s in rows if s.status == BLOCKED),
        "files": files,
        "problems": problems,
        "pending": pending,
    }


def _check_delivered(
    share: ShareRow,
    target: Path,
    manifest: Path,
    counts: dict[str, int],
    lineage: set[tuple[str, str]],
    erased: tuple[str, bool] | None = None,
) -> list[dict[str, Any]]:
    """``erased``: (sha256, withheld whole) of the outbox copy after retention erasure, if any."""
    found: list[dict[str, Any]] = []
    sid = share.share_id
    expected_sha = erased[0] if erased else share.sha256
    if not target.is_file():
        found.append(
            _problem(MISSING, f"delivered share {sid}: {target.name} is not in the outbox", sid, str(target))
        )
    elif erased is not None and erased[1]:
        if sha256_of(target) != expected_sha:
            found.append(
                _problem(
                    SHA256, f"{target.name}: bytes differ from share {sid}'s tombstone", sid, str(target)
                )
            )
    else:
        if sha256_of(target) != expected_sha:
            found.append(
                _problem(SHA256, f"{target.name}: bytes differ from share {sid}'s sha256", sid, str(target))
            )
        else:
            rows = _data_rows(target)
            if rows != share.pupils:
                found.append(
                    _problem(
                        ROWS, f"{target.name}: {rows} data rows, share {sid} recorded {share.pupils}", sid
                    )
                )
    if not manifest.is_file():
        found.append(_problem(MISSING, f"delivered share {sid}: {manifest.name} is not in the outbox", sid))
    elif share.manifest_sha256 and sha256_of(manifest) != share.manifest_sha256:
        found.append(_problem(SHA256, f"{manifest.name}: bytes differ from share {sid}'s record", sid))
    disclosed = counts.get(sid, 0)
    if disclosed != share.pupils:
        found.append(
            _problem(
                DISCLOSURES, f"share {sid}: {disclosed} disclosure rows for {share.pupils} pupils sent", sid
            )
        )
    if (share.lineage_run_id or release_run_id(sid), share.sha256 or "") not in lineage:
        found.append(
            _problem(
                LINEAGE, f"share {sid}: no lineage for {target.name} at its sha256 in the lineage store", sid
            )
        )
    return found


def _data_rows(path: Path) -> int:
    with path.open(encoding="utf-8", newline="") as fh:
        return max(sum(1 for _ in csv.reader(fh)) - 1, 0)


def _disclosure_counts(settings: Settings) -> dict[str, int]:
    with warehouse_engine(settings.warehouse_db_url).connect() as conn:
        rows = conn.execute(select(disclosures.c.share_id, func.count()).group_by(disclosures.c.share_id))
        return {str(share_id): int(count) for share_id, count in rows}


def _released_versions(settings: Settings, run_ids: list[str]) -> set[tuple[str, str]]:
    """(run id, version) of every file the runs ``run_ids`` wrote in the ``file`` namespace."""
    from censustrace.lineage.store.db import make_engine
    from censustrace.lineage.store.queries import chunks

    engine = make_engine(settings.lineage_db_url)
    found: set[tuple[str, str]] = set()
    try:
        with engine.connect() as conn:
            for batch in chunks(sorted(set(run_ids))):
                found |= _released(conn, batch)
        return found
    except SQLAlchemyError as exc:
        shown = make_url(settings.lineage_db_url).render_as_string(hide_password=True)
        raise ShareLineageError(f"cannot read the lineage store {shown} ({type(exc).__name__})") from exc
    finally:
        engine.dispose()


def _released(conn: Connection, run_ids: list[str]) -> set[tuple[str, str]]:
    from censustrace.lineage.store.tables import (
        dataset_versions,
        datasets,
        namespaces,
        run_dataset_versions,
        runs,
    )

    rows = conn.execute(
        select(runs.c.run_uuid, dataset_versions.c.version)
        .join(run_dataset_versions, run_dataset_versions.c.run_id == runs.c.id)
        .join(dataset_versions, dataset_versions.c.id == run_dataset_versions.c.dataset_version_id)
        .join(datasets, datasets.c.id == dataset_versions.c.dataset_id)
        .join(namespaces, namespaces.c.id == datasets.c.namespace_id)
        .where(
            namespaces.c.name == FILE_NAMESPACE,
            run_dataset_versions.c.direction == "output",
            runs.c.run_uuid.in_(run_ids),
        )
    ).tuples()
    return {(str(run), str(version)) for run, version in rows}


__all__ = ["verify_shares"]
