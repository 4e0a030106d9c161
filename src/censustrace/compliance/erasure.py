"""Erasure in every copy of a file, with evidence (tombstones).

When the first item in a received file reaches the end of its retention (``fields.yaml``:
``retention_days`` from the census reference date, or ``never_share`` legacy items at once), the
archived file is replaced by a redacted copy (``censustrace.compliance.redact``; a new sha256, stored
under that sha256 like any archived file) and the original bytes are deleted. A tombstone keeps the
original sha256, the date, the rule and the fields: a row in ``file_tombstones`` and a JSON file
``archive/tombstones/<original sha256>.json`` outside the databases (so a restored old backup can
re-apply it, see ``reapply_tombstones``). The quarantine copy of a refused file follows the same rules.
A released share file in the outbox is withheld whole once the agreement's retention has passed
(``share_retention_ended``) and has an expired field's column emptied before that.

Each redaction is also a lineage event: input the copy as it was (its version, with a
``retentionErasure`` facet saying what was erased), output the redacted copy. Traces that reach the
original version therefore still resolve, and their source says what was erased.

Receiving the original bytes again, or retrying an erased quarantined file, fails with CT-ERASED-FILE.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import tempfile
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from openlineage.client.event_v2 import InputDataset, OutputDataset
from openlineage.client.generated.dataset_version_dataset import DatasetVersionDatasetFacet
from sqlalchemy import Connection, Engine, func, insert, select

from censustrace.compliance.redact import Redacted, redact, redact_csv, withheld
from censustrace.compliance.tables import ARCHIVE, OUTBOX, QUARANTINE, file_tombstones
from censustrace.config import Settings
from censustrace.errors import CensustraceError
from censustrace.intake.archive import archive_path_for
from censustrace.lineage.facets import RetentionErasureDatasetFacet
from censustrace.lineage.model import StepLineage
from censustrace.lineage.naming import FILE_NAMESPACE, file_dataset_name
from censustrace.warehouse.db import warehouse_engine, write_transaction
from censustrace.warehouse.tables import LOADED, extracts
from censustrace.warehouse.tables import QUARANTINED as QUARANTINED_STATUS

NEVER_SHARE_LEGACY: Final = "never_share_legacy"
RETENTION_ENDED: Final = "retention_ended"
SHARE_RETENTION_ENDED: Final = "share_retention_ended"
ERASED_FILE: Final = "CT-ERASED-FILE"
TOMBSTONE_DIR: Final = "tombstones"
#: Census years that can hold the legacy items (collected AUT 2016 to SUM 2018): other files are not
#: re-read for them every day.
_LEGACY_YEARS: Final = frozenset({2016, 2017, 2018})


class ErasedFileError(CensustraceError):
    """The file's content was erased under a retention rule: it cannot be received or retried again."""

    code = ERASED_FILE


@dataclass(slots=True)
class _Plan:
    """What is due in one copy: rule -> fields."""

    due: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    # The census year is unknown (a file refused before its header was read): the legacy rule then only
    # blanks items a reader can find, it never withholds a whole file a retry may still need.
    itemwise_only: bool = False

    def fields(self) -> list[str]:
        return sorted({f for fs in self.due.values() for f in fs})


# --- tombstones outside the databases -----------------------------------------------------------------
def tombstone_path(settings: Settings, original_sha256: str) -> Path:
    return settings.archive_dir / TOMBSTONE_DIR / f"{original_sha256}.json"


def is_erased(settings: Settings, sha256: str) -> bool:
    """The bytes with this sha256 were erased (archive, quarantine or outbox copy)."""
    return tombstone_path(settings, sha256).is_file()


def ensure_not_erased(settings: Settings, sha256: str, file: str = "") -> None:
    """Raise CT-ERASED-FILE if these bytes were erased: a retry or a new receipt must not bring them
    back. ``file``: the name to put in the message (never a value from the file)."""
    if is_erased(settings, sha256):
        data = json.loads(tombstone_path(settings, sha256).read_text(encoding="utf-8"))
        last = data["steps"][-1]
        raise ErasedFileError(
            f"{file or sha256[:16]}: its content was erased on {last['as_of']} under {last['rule']} "
            f"(original sha256 {sha256}); it cannot be received or retried again"
        )


def _insert_tombstones(engine: Engine, steps: list[dict[str, Any]], **row: Any) -> None:
    """One ``file_tombstones`` row per rule applied to one copy of a file, in one transaction."""
    with write_transaction(engine) as conn:
        for step in steps:
            conn.execute(insert(file_tombstones).values(**row, rule=step["rule"], fields=step["fields"]))


def _steps(
    copy: str,
    todo: dict[str, set[str]],
    result: Redacted,
    *,
    from_sha: str,
    new_sha: str,
    from_path: Path,
    path: Path,
    as_of: dt.date,
    now: dt.datetime,
    **extra: Any,
) -> list[dict[str, Any]]:
    """The tombstone steps of one redaction of one copy: one per rule applied (``extra``: what only that
    kind of copy records, its landing path or its share)."""
    return [
        {
            "copy": copy,
            "from_sha256": from_sha,
            "redacted_sha256": new_sha,
            "from_path": str(from_path),
            "path": str(path),
            "as_of": as_of.isoformat(),
            "erased_at": now.isoformat(),
            "rule": rule,
            "fields": sorted(fields),
            "whole_file": result.whole_file,
            **extra,
        }
        for rule, fields in sorted(todo.items())
    ]


def _record_tombstone(settings: Settings, copy: str, original: str, step: dict[str, Any]) -> None:
    path = tombstone_path(settings, original)
    path.parent.mkdir(parents=True, exist_ok=True)
    data: dict[str, Any] = (
        json.loads(path.read_text(encoding="utf-8"))
        if path.is_file()
        else {"original_sha256": original, "steps": []}
    )
    key = (step["copy"], step["from_sha256"], step["redacted_sha256"], step["rule"])
    if all((s["copy"], s["from_sha256"], s["redacted_sha256"], s["rule"]) != key for s in data["steps"]):
        data["steps"].append(step)
    _write_atomic(path, (json.dumps(data, indent=2, sort_keys=True) + "\n").encode(), mode=0o644)


def _write_atomic(target: Path, data: bytes, *, mode: int) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".incoming-", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        Path(tmp).chmod(mode)
        os.replace(tmp, target)
    finally:
        Path(tmp).unlink(missing_ok=True)


# --- planning -------------------------------------------------------------------------------------------
def field_rules(policy: Any) -> list[tuple[str, str, int | None]]:
    """(rule, field, days after the census day; None: at once) from ``fields.yaml``."""
    rules: list[tuple[str, str, int | None]] = []
    for name in ("nationality", "country_of_birth"):
        entry = policy.fields.get(name)
        if entry is not None and entry.never_share:
            rules.append((NEVER_SHARE_LEGACY, name, None))
    for name, entry in policy.fields.items():
        days = getattr(entry, "retention_days", None)
        if isinstance(days, int) and days >= 0 and name not in ("nationality", "country_of_birth"):
            rules.append((RETENTION_ENDED, name, days))
    return rules


def _due(
    rules: list[tuple[str, str, int | None]], census_day: dt.date, year: int | None, as_of: dt.date
) -> _Plan:
    plan = _Plan()
    for rule, name, days in rules:
        if days is None:
            if year is None or year in _LEGACY_YEARS:
                plan.due[rule].add(name)
                plan.itemwise_only |= year is None
        elif census_day < as_of - dt.timedelta(days=days):
            plan.due[rule].add(name)
    return plan


def _erased_fields(conn: Connection, copy: str, original: str) -> tuple[set[str], str | None]:
    """Fields already erased from a copy, and its current sha256 (None: never redacted)."""
    rows = conn.execute(
        select(file_tombstones.c.fields, file_tombstones.c.redacted_sha256)
        .where(file_tombstones.c.copy == copy, file_tombstones.c.original_sha256 == original)
        .order_by(file_tombstones.c.id)
    ).all()
    done = {f for fields, _ in rows for f in fields}
    return done, (rows[-1].redacted_sha256 if rows else None)


# --- the use case ---------------------------------------------------------------------------------------
def erase_files(
    settings: Settings, as_of: dt.date, *, lineage: StepLineage | None = None
) -> list[dict[str, Any]]:
    """Redact every archive, quarantine and outbox copy whose items are due on ``as_of``; what was done,
    one entry per copy changed (``{copy, original_sha256, from_sha256, redacted_sha256, rules, fields,
    whole_file, values}``). Idempotent: a second run on the same day changes nothing."""
    from censustrace.consent.policies import load_policy

    policy = load_policy(settings.policies_dir)
    rules = field_rules(policy)
    engine = warehouse_engine(settings.warehouse_db_url)
    now = dt.datetime.now(dt.UTC)
    done: list[dict[str, Any]] = []
    with engine.connect() as conn:
        head = extracts.alias("head")
        files = conn.execute(
            select(
                extracts.c.sha256,
                # An LA CSV table's census day and year are its pupilonroll table's (the extract head).
                func.min(func.coalesce(extracts.c.reference_date, head.c.reference_date)),
                func.min(extracts.c.received_at),
                func.min(func.coalesce(extracts.c.year, head.c.year)),
                func.min(extracts.c.original_name),
            )
            .outerjoin(head, head.c.extract_id == extracts.c.part_of)
            # Only files that are done with: an unfinished receipt still needs its bytes to be staged.
            .where(extracts.c.status.in_((LOADED, QUARANTINED_STATUS)))
            .group_by(extracts.c.sha256)
            .order_by(extracts.c.sha256)
        ).all()
    for sha, reference_date, received_at, year, name in files:
        census_day = reference_date or received_at.date()
        plan = _due(rules, census_day, year, as_of)
        if not plan.due:
            continue
        for copy, path in _received_copies(settings, sha):
            changed = _redact_copy(settings, engine, copy, sha, path, plan, as_of, now, name)
            if changed is not None:
                done.append(changed)
    done += _erase_outbox(settings, engine, rules, as_of, now)
    if lineage is not None and done:
        lineage.extend(_lineage(as_of, done))
    return done


def _received_copies(settings: Settings, sha: str) -> list[tuple[str, Path | None]]:
    """The archive copy (its path found later from the tombstones) and the quarantine copy, if any."""
    copies: list[tuple[str, Path | None]] = [(ARCHIVE, None)]
    reason = settings.quarantine_dir / sha / "reason.json"
    if reason.is_file():
        name = json.loads(reason.read_text(encoding="utf-8")).get("file")
        if name:
            copies.append((QUARANTINE, settings.quarantine_dir / sha / name))
    return copies


def _redact_copy(
    settings: Settings,
    engine: Any,
    copy: str,
    original: str,
    quarantine_path: Path | None,
    plan: _Plan,
    as_of: dt.date,
    now: dt.datetime,
    name: str,
) -> dict[str, Any] | None:
    with engine.connect() as conn:
        erased, current = _erased_fields(conn, copy, original)
    todo = {rule: fields - erased for rule, fields in plan.due.items() if fields - erased}
    if not todo:
        return None
    current = current or original
    if copy == ARCHIVE:
        path = archive_path_for(settings.archive_dir, current)
    else:
        assert quarantine_path is not None
        path = quarantine_path
    if not path.is_file():
        return None  # nothing left to redact (a copy removed by hand stays removed)
    data = path.read_bytes()
    fields = sorted(erased | {f for fs in todo.values() for f in fs})
    rule = "+".join(sorted(todo))
    result = redact(data, fields) if not _is_note(data) else Redacted(data, 0, True)
    if result is None:
        if plan.itemwise_only and set(todo) == {NEVER_SHARE_LEGACY}:
            return None
        result = withheld(original, rule, fields, as_of.isoformat())
    if result.data == data:
        return None  # none of the items is in this file: nothing to erase
    new_sha: str = hashlib.sha256(result.data).hexdigest()
    target = archive_path_for(settings.archive_dir, new_sha) if copy == ARCHIVE else path
    steps = _steps(
        copy,
        todo,
        result,
        from_sha=current,
        new_sha=new_sha,
        from_path=path,
        path=target,
        as_of=as_of,
        now=now,
        landing_path=str(settings.landing_dir / name) if copy == ARCHIVE else None,
    )
    # Order: the redacted copy and the tombstone file first, the rows, then the old bytes go. A crash
    # in between leaves the old bytes to redact again (the same result), never a trace without bytes.
    _write_atomic(target, result.data, mode=0o444 if copy == ARCHIVE else 0o644)
    for step in steps:
        _record_tombstone(settings, copy, original, step)
    _insert_tombstones(
        engine,
        steps,
        copy=copy,
        original_sha256=original,
        from_sha256=current,
        redacted_sha256=new_sha,
        path=str(target),
        erased_at=now,
        as_of=as_of,
        whole_file=result.whole_file,
        share_id=None,
    )
    if copy == ARCHIVE and path != target:
        path.chmod(0o644)
        path.unlink()
    return _summary(
        copy,
        name,
        original,
        current,
        new_sha,
        path,
        target,
        todo,
        result,
        landing_path=str(settings.landing_dir / name) if copy == ARCHIVE else None,
    )


def _summary(
    copy: str,
    file: str,
    original: str,
    from_sha: str,
    new_sha: str,
    from_path: Path,
    path: Path,
    todo: dict[str, set[str]],
    result: Redacted,
    **where: str | None,
) -> dict[str, Any]:
    """What was done to one copy: ``where`` (``landing_path`` of a received file, ``share_id`` of a
    released one) comes after the file's name."""
    return {
        "copy": copy,
        "file": file,
        **where,
        "original_sha256": original,
        "from_sha256": from_sha,
        "redacted_sha256": new_sha,
        "from_path": str(from_path),
        "path": str(path),
        "rules": sorted(todo),
        "fields": sorted({f for fs in todo.values() for f in fs}),
        "by_rule": {r: sorted(fs) for r, fs in sorted(todo.items())},
        "whole_file": result.whole_file,
        "values": result.values,
    }


def _is_note(data: bytes) -> bool:
    return data.startswith(b"{") and b'"censustrace": "content erased"' in data[:200]


def _erase_outbox(
    settings: Settings,
    engine: Any,
    rules: list[tuple[str, str, int | None]],
    as_of: dt.date,
    now: dt.datetime,
) -> list[dict[str, Any]]:
    """Released share files: withheld whole after the agreement's retention; an expired field's column
    emptied before that (the census day of the oldest source extract decides)."""
    from censustrace.shares.register import list_shares
    from censustrace.shares.tables import DELIVERED

    done: list[dict[str, Any]] = []
    for share in list_shares(settings):
        if share.status != DELIVERED or not share.file_path or not share.sha256:
            continue
        path = Path(share.file_path)
        with engine.connect() as conn:
            erased, current = _erased_fields(conn, OUTBOX, share.sha256)
            days = conn.execute(
                select(func.min(extracts.c.reference_date)).where(
                    extracts.c.extract_id.in_(share.source_extracts or [])
                )
            ).scalar_one_or_none()
        plan = _Plan()
        until = share.retain_until
        if until is not None and as_of > until:
            plan.due[SHARE_RETENTION_ENDED] |= set(share.fields)
        elif days is not None:
            for rule, name, keep in rules:
                if name in share.fields and (keep is None or days < as_of - dt.timedelta(days=keep)):
                    plan.due[rule].add(name)
        todo = {r: fs - erased for r, fs in plan.due.items() if fs - erased}
        if not todo or not path.is_file():
            continue
        data = path.read_bytes()
        fields = sorted(erased | {f for fs in todo.values() for f in fs})
        if SHARE_RETENTION_ENDED in todo:
            header = data.split(b"\n", 1)[0] + b"\n"
            result = Redacted(header, 0, True)  # the header row only: no pupil is left in it
        else:
            result = redact_csv(data, fields, {f: (f,) for f in share.fields}) or Redacted(data, 0, False)
        if result.data == data:
            continue
        new_sha: str = hashlib.sha256(result.data).hexdigest()
        from_sha = current or share.sha256
        steps = _steps(
            OUTBOX,
            todo,
            result,
            from_sha=from_sha,
            new_sha=new_sha,
            from_path=path,
            path=path,
            as_of=as_of,
            now=now,
            share_id=share.share_id,
        )
        for step in steps:
            _record_tombstone(settings, OUTBOX, share.sha256, step)
        _write_atomic(path, result.data, mode=0o644)
        _insert_tombstones(
            engine,
            steps,
            copy=OUTBOX,
            original_sha256=share.sha256,
            from_sha256=from_sha,
            redacted_sha256=new_sha,
            path=str(path),
            erased_at=now,
            as_of=as_of,
            whole_file=result.whole_file,
            share_id=share.share_id,
        )
        done.append(
            _summary(
                OUTBOX,
                path.name,
                share.sha256,
                from_sha,
                new_sha,
                path,
                path,
                todo,
                result,
                share_id=share.share_id,
            )
        )
    return done


def outbox_current(settings: Settings) -> dict[str, tuple[str, bool]]:
    """share id -> (sha256 its outbox file has after erasure, withheld whole): for ``shares verify``."""
    found: dict[str, tuple[str, bool]] = {}
    with warehouse_engine(settings.warehouse_db_url).connect() as conn:
        rows = conn.execute(
            select(
                file_tombstones.c.share_id, file_tombstones.c.redacted_sha256, file_tombstones.c.whole_file
            )
            .where(file_tombstones.c.copy == OUTBOX)
            .order_by(file_tombstones.c.id)
        ).all()
    for share_id, sha, whole in rows:
        previous = found.get(str(share_id), ("", False))
        found[str(share_id)] = (sha, bool(whole) or previous[1])
    return found


def tombstones_of(conn: Connection, sha256s: list[str]) -> dict[str, list[dict[str, Any]]]:
    """original sha256 -> its tombstone rows (oldest first), for traces and subject access."""
    found: dict[str, list[dict[str, Any]]] = defaultdict(list)
    if not sha256s:
        return found
    rows = conn.execute(
        select(file_tombstones)
        .where(file_tombstones.c.original_sha256.in_(sorted(set(sha256s))))
        .order_by(file_tombstones.c.id)
    ).mappings()
    for row in rows:
        found[row["original_sha256"]].append(
            {
                "copy": row["copy"],
                "rule": row["rule"],
                "fields": list(row["fields"]),
                "as_of": row["as_of"].isoformat(),
                "redacted_sha256": row["redacted_sha256"],
                "whole_file": bool(row["whole_file"]),
            }
        )
    return found


def reapply_tombstones(settings: Settings) -> dict[str, Any]:
    """After ``restore`` of an older backup: put back the tombstone rows the backup predates (from the
    tombstone files, which live outside the databases) and re-run the warehouse erasures of every day
    a file was erased on. What was re-applied."""
    from censustrace.shares.retention import erase_warehouse_values

    folder = settings.archive_dir / TOMBSTONE_DIR
    engine = warehouse_engine(settings.warehouse_db_url)
    restored = 0
    days: set[dt.date] = set()
    replay: list[dict[str, Any]] = []  # restored steps, to describe again in the lineage store
    with write_transaction(engine) as conn:
        known = {
            (r.copy, r.from_sha256, r.redacted_sha256, r.rule)
            for r in conn.execute(
                select(
                    file_tombstones.c.copy,
                    file_tombstones.c.from_sha256,
                    file_tombstones.c.redacted_sha256,
                    file_tombstones.c.rule,
                )
            )
        }
        for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
            data = json.loads(path.read_text(encoding="utf-8"))
            for step in data["steps"]:
                days.add(dt.date.fromisoformat(step["as_of"]))
                key = (step["copy"], step["from_sha256"], step["redacted_sha256"], step["rule"])
                if key in known:
                    continue
                conn.execute(
                    insert(file_tombstones).values(
                        copy=step["copy"],
                        original_sha256=data["original_sha256"],
                        from_sha256=step["from_sha256"],
                        redacted_sha256=step["redacted_sha256"],
                        path=step["path"],
                        erased_at=dt.datetime.fromisoformat(step["erased_at"]),
                        as_of=dt.date.fromisoformat(step["as_of"]),
                        rule=step["rule"],
                        fields=step["fields"],
                        whole_file=bool(step["whole_file"]),
                        share_id=step.get("share_id"),
                    )
                )
                known.add(key)
                restored += 1
                if step.get("from_path"):
                    replay.append(
                        {
                            "copy": step["copy"],
                            "original_sha256": data["original_sha256"],
                            "from_sha256": step["from_sha256"],
                            "redacted_sha256": step["redacted_sha256"],
                            "from_path": step["from_path"],
                            "landing_path": step.get("landing_path"),
                            "path": step["path"],
                            "by_rule": {step["rule"]: step["fields"]},
                            "whole_file": bool(step["whole_file"]),
                            "values": 0,
                            "as_of": step["as_of"],
                        }
                    )
    journal = _journal_days(settings)
    rows = 0
    for day in sorted(days | journal):
        rows += int(erase_warehouse_values(settings, day)["rows"])
    # The restored lineage store predates these erasures too: describe them again, so traces say what
    # was erased (the store keeps an identical event once).
    lineage_runs = []
    for day in sorted({item["as_of"] for item in replay}):
        step = _lineage(dt.date.fromisoformat(day), [i for i in replay if i["as_of"] == day])
        from censustrace.lineage.emit import emit_step

        lineage_runs.append(emit_step(settings, "censustrace.retention_reapplied", step))
    return {
        "tombstones_restored": restored,
        "days_reapplied": len(days | journal),
        "rows_erased": rows,
        "lineage_runs": lineage_runs,
    }


# --- the journal of retention days (outside the databases) ------------------------------------------------
def journal_day(settings: Settings, as_of: dt.date) -> None:
    """Note a day retention ran on, so a restore can run it again."""
    path = settings.home / "retention-journal.jsonl"
    if as_of in _journal_days(settings):
        return
    with path.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps({"as_of": as_of.isoformat()}) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def _journal_days(settings: Settings) -> set[dt.date]:
    path = settings.home / "retention-journal.jsonl"
    if not path.is_file():
        return set()
    return {
        dt.date.fromisoformat(json.loads(line)["as_of"])
        for line in path.read_text(encoding="utf-8").splitlines()
        if line.strip()
    }


# --- lineage --------------------------------------------------------------------------------------------
def _lineage(as_of: dt.date, done: list[dict[str, Any]]) -> StepLineage:
    step = StepLineage()
    for item in done:
        facet = RetentionErasureDatasetFacet(
            asOf=as_of.isoformat(),
            erasures=[
                {
                    "rule": rule,
                    "field": name,
                    "rows": item["values"],
                    "copy": item["copy"],
                    "originalSha256": item["original_sha256"],
                    "redactedSha256": item["redacted_sha256"],
                    "wholeFile": item["whole_file"],
                }
                for rule, names in item["by_rule"].items()
                for name in names
            ],
        )
        step.inputs.append(
            InputDataset(
                namespace=FILE_NAMESPACE,
                name=file_dataset_name(Path(item["from_path"])),
                facets={
                    "version": DatasetVersionDatasetFacet(datasetVersion=item["from_sha256"]),
                    "retentionErasure": facet,
                },
            )
        )
        if item.get("landing_path"):
            # A trace's source is the landed file at the original sha256 (receive: landing -> archive):
            # the facet on it is what the trace shows as "erased".
            step.inputs.append(
                InputDataset(
                    namespace=FILE_NAMESPACE,
                    name=file_dataset_name(Path(item["landing_path"])),
                    facets={
                        "version": DatasetVersionDatasetFacet(datasetVersion=item["original_sha256"]),
                        "retentionErasure": facet,
                    },
                )
            )
        step.outputs.append(
            OutputDataset(
                namespace=FILE_NAMESPACE,
                name=file_dataset_name(Path(item["path"])),
                facets={
                    "version": DatasetVersionDatasetFacet(datasetVersion=item["redacted_sha256"]),
                    "retentionErasure": facet,
                },
            )
        )
    return step


__all__ = [
    "ERASED_FILE",
    "ErasedFileError",
    "ensure_not_erased",
    "erase_files",
    "is_erased",
    "journal_day",
    "outbox_current",
    "reapply_tombstones",
    "tombstones_of",
]
