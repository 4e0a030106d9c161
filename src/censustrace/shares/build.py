"""Step 2 of a share: select the population, exclude objections, transform, write the outbound file and
manifest aside, and record the disclosure rows.

* **Population**: the current warehouse (per school and census, the latest accepted extract), one
  record per pupil key: the latest census, a main or single registration before a subsidiary dual one.
  Then the agreement's scope (LA, LAESTAB, NC years) is applied to that record: a pupil who moved out of
  scope is out.
* **Objections**: see ``censustrace.consent.objections`` (latest decision per pupil and purpose; the
  share's purpose and every purpose covering it; consent required when the lawful basis is consent).
* **Values**: refused and not-obtained codes (``consent.policies.refused_codes``) are blanked before the
  transform; then each field's transform (``censustrace.shares.transforms``); cells are made safe from
  spreadsheet formula injection.
* **Files**: ``$CENSUSTRACE_HOME/shares/staging/<share id>/``: the CSV (UTF-8, CRLF, header row of the
  agreement's field names, one row per pupil, ordered by pupil key, which reveals nothing) and
  ``<name>.manifest.json``. Written under a temporary name and renamed, hashed while written.
* **Record**: one transaction inserts the disclosure rows (share id, pupil key, source extract and record,
  the fields sent blank) and marks the share ``built`` with its counts and sha256.

The read takes no lock (a snapshot); disclosure rows are spooled to a temporary file while the CSV is
written, so memory stays flat whatever the number of pupils and the write lock is held only to copy
them in.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
import os
import tempfile
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from operator import itemgetter
from pathlib import Path
from typing import IO, Any, Final

from sqlalchemy import Connection, Engine, and_, case, func, select, update

from censustrace.audit.heads import manifest_heads
from censustrace.audit.register import seal_share
from censustrace.config import Settings
from censustrace.consent.objections import ConsentCheck, agreement_consent_check
from censustrace.csvsafe import safe_cell
from censustrace.lineage.model import StepLineage
from censustrace.lineage.naming import file_dataset_name
from censustrace.shares.check import agreement_values
from censustrace.shares.errors import FIELD, STATE, ShareBlocked, ShareError
from censustrace.shares.lineage import (
    ADDRESS_FIELDS,
    FSM_FIELD,
    register_output,
    share_inputs,
    share_output,
)
from censustrace.shares.register import ShareRow, find_share, get_share
from censustrace.shares.tables import BLOCKED, BUILT, CHECKED, disclosures, shares
from censustrace.shares.transforms import pseudonym_key, suppress, transformer
from censustrace.warehouse.current import current_fsm_period, current_pupil, current_pupil_address
from censustrace.warehouse.db import warehouse_engine, write_transaction
from censustrace.warehouse.load import BATCH_SIZE, CopyStream, bulk_insert
from censustrace.warehouse.tables import ADDRESS_COLUMNS, extracts

MANIFEST_VERSION: Final = 1
DISCLOSURE_COLUMNS: Final = ("share_id", "pupil_key", "extract_id", "record_number", "blank_fields")
_OWN_COLUMNS: Final = frozenset({"extract_id", "record_number", "pupil_key"})


def staging_dir(settings: Settings, share_id: str) -> Path:
    """Where a share's file and manifest wait until release."""
    return settings.shares_dir / "staging" / share_id


def file_name_for(share: ShareRow) -> str:
    return f"{share.agreement_id}_{share.as_of.isoformat()}_{share.share_id}.csv"


def manifest_name(file_name: str) -> str:
    return file_name.removesuffix(".csv") + ".manifest.json"


@dataclass(slots=True)
class _Built:
    pupils: int = 0
    excluded: Counter[str] = field(default_factory=Counter)
    suppressed: dict[str, int] = field(default_factory=dict)
    extracts: set[str] = field(default_factory=set)
    consent_files: set[str] = field(default_factory=set)
    decisions_applied: int = 0
    sha256: str = ""
    size: int = 0


class _HashingWriter:
    """A text sink for ``csv.writer`` that writes UTF-8 bytes and hashes them on the way."""

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw = raw
        self.digest = hashlib.sha256()
        self.size = 0

    def write(self, text: str) -> int:
        data = text.encode("utf-8")
        self.digest.update(data)
        self.raw.write(data)
        self.size += len(data)
        return len(text)


def build_share(share_id: str, settings: Settings, *, lineage: StepLineage | None = None) -> dict[str, Any]:
    """Build the share ``share_id`` (``checked`` -> ``built``); a share already built is left as it is.

    Returns the share's summary. If the policy changed since the check, the agreement is checked again:
    a deny now marks the share blocked and raises :class:`ShareBlocked`."""
    from censustrace.shares.locks import share_lock

    engine = warehouse_engine(settings.warehouse_db_url)
    with share_lock(settings, share_id):  # a concurrent run of the same share waits, then finds it built
        share = find_share(settings, share_id)
        if share.status == BLOCKED:
            raise ShareError(f"share {share_id} is blocked: nothing to build", code=STATE)
        if share.status == CHECKED:
            agreement = _current_agreement(settings, engine, share)
            _build(settings, engine, share, agreement)
            share = find_share(settings, share_id)
    if lineage is not None:
        lineage.extend(build_lineage(settings, share))
    return share.summary()


def build_lineage(settings: Settings, share: ShareRow) -> StepLineage:
    """What building read (the exact warehouse versions) and wrote (the staged file, the disclosures)."""
    step = StepLineage(inputs=share_inputs(settings, share))
    if share.file_name and share.sha256:
        staged = staging_dir(settings, share.share_id) / share.file_name
        step.outputs.append(share_output(settings, share, file_dataset_name(staged)))
    step.outputs.append(register_output(settings, disclosures.name, share.share_id))
    return step


def _current_agreement(settings: Settings, engine: Engine, share: ShareRow) -> Any:
    """The agreement to build with; checked again (and the share updated or blocked) if the policy
    files changed since the check."""
    from censustrace.consent.evaluate import check_agreement
    from censustrace.consent.policies import load_policy, policy_version
    from censustrace.consent.policy_model import PolicyError

    if policy_version(settings.policies_dir) == share.policy_version:
        return load_policy(settings.policies_dir).agreement(share.agreement_id)
    verdict = check_agreement(share.agreement_id, share.as_of, settings.policies_dir)
    reasons = [{"code": r.code, "message": r.message, "field": r.field} for r in verdict.reasons]
    agreement = None
    if verdict.verdict == "allow":
        try:
            agreement = load_policy(settings.policies_dir).agreement(share.agreement_id)
        except PolicyError:
            agreement = None
    changes: dict[str, Any] = {"policy_version": verdict.policy_version, "flags": list(verdict.flags)}
    if agreement is None:
        changes.update(status=BLOCKED, reasons=reasons)
    else:
        changes.update(agreement_values(agreement))
    with write_transaction(engine) as conn:
        conn.execute(
            update(shares)
            .where(shares.c.share_id == share.share_id, shares.c.status == CHECKED)
            .values(**changes)
        )
        if agreement is None:
            seal_share(conn, share.share_id)  # blocked: final, into the audit chain
    if agreement is None:
        blocked = find_share(settings, share.share_id)
        raise ShareBlocked(
            f"share {share.share_id}: the policy changed since its check and now refuses agreement "
            f"{share.agreement_id}; blocked, nothing sent",
            blocked.summary(),
        )
    return agreement


def _build(settings: Settings, engine: Engine, share: ShareRow, agreement: Any) -> None:
    share = find_share(settings, share.share_id)  # the values the policy check just recorded
    fields = list(share.fields)
    folder = staging_dir(settings, share.share_id)
    folder.mkdir(parents=True, exist_ok=True)
    name = file_name_for(share)
    built = _Built()
    with _disclosure_log(engine, share, folder) as log:
        if log is None:
            return  # built meanwhile by another run: left as it is
        with engine.connect() as conn:
            if conn.dialect.name == "postgresql":
                # The population is sorted by pupil key on the server: in memory, not in temporary files.
                conn.exec_driver_sql(f"SET LOCAL work_mem = '{_SORT_MEMORY}'")
            check = agreement_consent_check(conn, agreement, settings.pupil_key_secret_value())
            consent_required = check.consent_required
            fsm = _fsm_periods(conn) if FSM_FIELD in fields else {}
            query, at = _population_query(fields)
            plan = _plan(settings, share, at, fsm, built)
            decisions = check.decisions
            # A name of this build's own: a concurrent build of the same share never writes into it.
            handle, part = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=".part")
            tmp = Path(part)
            add = log.add
            with os.fdopen(handle, "wb") as raw:
                sink = _HashingWriter(raw)
                buffer = io.StringIO()
                writer = csv.writer(buffer, lineterminator="\r\n")
                writer.writerow(fields)
                for row in _population(conn, query, agreement.scope):
                    pupil_key = row[0]
                    if pupil_key in decisions or consent_required:
                        decided = list(check.files_of(pupil_key))
                        built.decisions_applied += len(decided)
                        built.consent_files.update(decided)
                        why = check.reason(pupil_key)
                        if why is not None:
                            built.excluded[why] += 1
                            continue
                    cells = [cell(row) for cell in plan]
                    writer.writerow(cells)
                    if all(cells):
                        add(pupil_key, row[1], row[2], None)
                    else:
                        add(
                            pupil_key,
                            row[1],
                            row[2],
                            [f for f, c in zip(fields, cells, strict=True) if not c],
                        )
                    built.pupils += 1
                    built.extracts.add(row[1])
                    if buffer.tell() > _FLUSH_AT:
                        sink.write(buffer.getvalue())
                        buffer.seek(0)
                        buffer.truncate()
                sink.write(buffer.getvalue())
                raw.flush()
                os.fsync(raw.fileno())
            built.sha256, built.size = sink.digest.hexdigest(), sink.size
        try:
            manifest = _manifest(share, name, built, check)
            # The audit chains' heads as the share is built: the recipient's copy remembers them.
            manifest["audit"] = manifest_heads(settings)
            manifest_bytes = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()

            def publish() -> None:
                """Only the build that records the share puts its file and manifest in place."""
                os.replace(tmp, folder / name)
                _write_atomic(folder / manifest_name(name), manifest_bytes)

            values = _built_values(name, built, check, hashlib.sha256(manifest_bytes).hexdigest())
            log.commit(values, built, publish)
        finally:
            tmp.unlink(missing_ok=True)


class _SpooledLog:
    """SQLite: disclosure rows spooled to a temporary file while the share is built, then copied in by
    one short write transaction (SQLite has one writer at a time: the lock is not held while building)."""

    def __init__(self, engine: Engine, share_id: str, spool: IO[str]) -> None:
        self.engine, self.share_id, self.spool = engine, share_id, spool

    def add(self, pupil_key: str, extract_id: str, record_number: int, blank: list[str] | None) -> None:
        self.spool.write(f"{pupil_key},{extract_id},{record_number},{';'.join(blank or ())}\n")

    def commit(self, values: dict[str, Any], built: _Built, publish: Callable[[], None]) -> None:
        self.spool.seek(0)
        with write_transaction(self.engine) as conn:
            current = get_share(conn, self.share_id, lock=True)
            if current is None or current.status != CHECKED:
                return
            batch: list[tuple[Any, ...]] = []
            for line in self.spool:
                pupil_key, extract_id, record_number, blank = line.rstrip("\n").split(",")
                fields = blank.split(";") if blank else None
                batch.append((self.share_id, pupil_key, extract_id, int(record_number), fields))
                if len(batch) >= BATCH_SIZE:
                    bulk_insert(conn, disclosures, DISCLOSURE_COLUMNS, batch)
                    batch = []
            bulk_insert(conn, disclosures, DISCLOSURE_COLUMNS, batch)
            _check_extracts(conn, built.extracts)
            publish()
            conn.execute(update(shares).where(shares.c.share_id == self.share_id).values(**values))


class _StreamedLog:
    """PostgreSQL: the share row is locked first (a second build of it waits, then finds it built), and
    the disclosure rows stream into the table with COPY while the file is written, so the server stores
    them on the other core. One transaction: the rows and the share marked built, or nothing."""

    def __init__(self, conn: Connection, share_id: str) -> None:
        self.conn, self.share_id = conn, share_id
        self.stream = CopyStream(conn, disclosures, DISCLOSURE_COLUMNS)
        self.lines: list[str] = []

    def add(self, pupil_key: str, extract_id: str, record_number: int, blank: list[str] | None) -> None:
        # COPY's CSV: ids are hex or [a-z0-9_] (nothing to quote); the JSON list is quoted, NULL is empty.
        cell = '"' + json.dumps(blank).replace('"', '""') + '"' if blank else ""
        self.lines.append(f"{self.share_id},{pupil_key},{extract_id},{record_number},{cell}\n")
        if len(self.lines) >= BATCH_SIZE:
            self.stream.write("".join(self.lines))
            self.lines.clear()

    def commit(self, values: dict[str, Any], built: _Built, publish: Callable[[], None]) -> None:
        self.stream.write("".join(self.lines))
        self.stream.close()
        _check_extracts(self.conn, built.extracts)
        publish()
        self.conn.execute(update(shares).where(shares.c.share_id == self.share_id).values(**values))


@contextmanager
def _disclosure_log(
    engine: Engine, share: ShareRow, folder: Path
) -> Iterator[_SpooledLog | _StreamedLog | None]:
    """Where this build's disclosure rows go (None: the share is no longer ``checked``)."""
    if engine.dialect.name != "postgresql":
        with tempfile.TemporaryFile("w+", encoding="utf-8", newline="", dir=folder) as spool:
            yield _SpooledLog(engine, share.share_id, spool)
        return
    with write_transaction(engine) as conn:
        current = get_share(conn, share.share_id, lock=True)
        if current is None or current.status != CHECKED:
            yield None
            return
        log = _StreamedLog(conn, share.share_id)
        try:
            yield log
        except BaseException as exc:
            log.stream.close(exc if isinstance(exc, Exception) else RuntimeError("share build stopped"))
            raise


def _check_extracts(conn: Connection, extract_ids: set[str]) -> None:
    """Every disclosure row names a registered extract (once per share, in place of a per-row key)."""
    ids = sorted(extract_ids)
    found = 0
    for start in range(0, len(ids), 1000):
        chunk = ids[start : start + 1000]
        found += conn.execute(
            select(func.count()).select_from(extracts).where(extracts.c.extract_id.in_(chunk))
        ).scalar_one()
    if found != len(ids):
        raise ShareError(
            f"{len(ids) - found} source extract(s) of this share are not in the extract registry; "
            "nothing recorded",
            code=STATE,
        )


def _built_values(name: str, built: _Built, check: ConsentCheck, manifest_sha256: str) -> dict[str, Any]:
    return {
        "status": BUILT,
        "pupils": built.pupils,
        "excluded": dict(sorted(built.excluded.items())),
        "suppressed": dict(sorted(built.suppressed.items())),
        "source_extracts": sorted(built.extracts),
        "consent_files": sorted(built.consent_files),
        "consent_check": {
            "covering": list(check.covering),
            "consent_required": check.consent_required,
            "decisions_applied": built.decisions_applied,
            "objections": check.objections,
        },
        "file_name": name,
        "sha256": built.sha256,
        "size": built.size,
        "manifest_sha256": manifest_sha256,
        "built_at": dt.datetime.now(dt.UTC),
    }


# Row positions fixed by _population_query.
_KEY, _EXTRACT, _RECORD, _LAESTAB, _NC_YEAR = range(5)
_FLUSH_AT: Final = 1 << 20
_SORT_MEMORY: Final = "256MB"  # per sort; one population sort per share build


def _population_query(fields: list[str]) -> tuple[Any, dict[str, int]]:
    """The population query and the position of each column in its rows."""
    p = current_pupil
    wanted = [f for f in fields if f not in ADDRESS_FIELDS and f != FSM_FIELD]
    for name in wanted:
        if name not in p.c or name in _OWN_COLUMNS:
            raise ShareError(f"field {name} cannot be shared: no such warehouse column", code=FIELD)
    columns: list[Any] = [p.c.pupil_key, p.c.extract_id, p.c.record_number, p.c.laestab, p.c.nc_year]
    columns += [p.c[name] for name in dict.fromkeys(wanted) if name not in ("laestab", "nc_year")]
    source: Any = p
    if any(f in ADDRESS_FIELDS for f in fields):
        a = current_pupil_address
        columns += [a.c[name].label(f"address_{name}") for name in (*ADDRESS_COLUMNS, "postcode", "uprn")]
        source = p.outerjoin(
            a, and_(a.c.extract_id == p.c.extract_id, a.c.record_number == p.c.record_number)
        )
    query = (
        select(*columns)
        .select_from(source)
        .where(p.c.pupil_key.is_not(None))
        .order_by(
            p.c.pupil_key,
            p.c.reference_date.desc(),
            case((p.c.enrol_status == "S", 1), else_=0),
            p.c.extract_id,
            p.c.record_number,
        )
    )
    return query, {column.name: i for i, column in enumerate(query.selected_columns)}


def _population(conn: Connection, query: Any, scope: Any) -> Iterator[Any]:
    """One current record per pupil key (the latest census; main before subsidiary registration), then
    the agreement's scope applied to it; in pupil key order."""
    las, laestabs, years = set(scope.la or ()), set(scope.laestab or ()), set(scope.nc_years or ())
    previous = None
    for row in conn.execution_options(yield_per=BATCH_SIZE).execute(query):
        key = row[_KEY]
        if key == previous:
            continue
        previous = key
        laestab = row[_LAESTAB] or ""
        if las and laestab[:3] not in las:
            continue
        if laestabs and laestab not in laestabs:
            continue
        if years and row[_NC_YEAR] not in years:
            continue
        yield row


def _fsm_periods(conn: Connection) -> dict[tuple[str, int], str]:
    """``start..end`` (``end`` empty while open) of each current record's FSM periods, ``;``-joined."""
    f = current_fsm_period
    periods: dict[tuple[str, int], list[str]] = defaultdict(list)
    for row in conn.execute(
        select(f.c.extract_id, f.c.record_number, f.c.start_date, f.c.end_date).order_by(
            f.c.extract_id, f.c.record_number, f.c.period_number
        )
    ):
        end = row.end_date.isoformat() if row.end_date else ""
        periods[(row.extract_id, row.record_number)].append(f"{row.start_date.isoformat()}..{end}")
    return {k: ";".join(v) for k, v in periods.items()}


def _plain_text(kind: type[Any]) -> Callable[[Any], str]:
    """Outbound text of a value of one SQL type, without the generic type tests of ``transforms.text``."""
    if kind is dt.date:
        return lambda v: "" if v is None else v.isoformat()
    if kind is bool:
        return lambda v: "" if v is None else ("true" if v else "false")
    return lambda v: "" if v is None else str(v)


def _getter(name: str, at: Mapping[str, int], fsm: Mapping[tuple[str, int], str]) -> Callable[[Any], Any]:
    if name == "address_lines":
        items = [at[f"address_{item}"] for item in ADDRESS_COLUMNS]
        return lambda row: ", ".join(row[i] for i in items if row[i]) or None
    if name in ADDRESS_FIELDS:
        return itemgetter(at[f"address_{name}"])
    if name == FSM_FIELD:
        return lambda row: fsm.get((row[_EXTRACT], row[_RECORD]))
    return itemgetter(at[name])


def _python_type(name: str) -> type[Any]:
    column = current_pupil.c.get(name)
    try:
        return column.type.python_type if column is not None else str
    except NotImplementedError:
        return str


def _plan(
    settings: Settings,
    share: ShareRow,
    at: Mapping[str, int],
    fsm: Mapping[tuple[str, int], str],
    built: _Built,
) -> list[Callable[[Any], str]]:
    """One function per outbound column, row -> cell: the value, refused codes blanked (and counted),
    the transform, a formula made text."""
    from censustrace.consent.policy_model import refused_codes

    key = pseudonym_key(settings.pupil_key_secret_value(), share.agreement_id)
    plan = []
    for name in share.fields:
        transform = share.transforms.get(name, "none")
        convert = (
            _plain_text(_python_type(name)) if transform == "none" else transformer(name, transform, key)
        )
        refused = refused_codes(name)
        if refused:
            built.suppressed[name] = 0
        plan.append(_cell(name, _getter(name, at, fsm), convert, refused, built.suppressed))
    return plan


def _cell(
    name: str,
    get: Callable[[Any], Any],
    convert: Callable[[Any], str],
    refused: frozenset[str],
    suppressed: dict[str, int],
) -> Callable[[Any], str]:
    if not refused:

        def plain(row: Any) -> str:
            return safe_cell(convert(get(row)))

        return plain

    def checked(row: Any) -> str:
        value = get(row)
        if value.__class__ is str and (value in refused or ";" in value):
            value, removed = suppress(value, refused)
            if removed:
                suppressed[name] += 1
        return safe_cell(convert(value))

    return checked


def _manifest(share: ShareRow, name: str, built: _Built, check: ConsentCheck) -> dict[str, Any]:
    """What the recipient gets beside the file: its hash, counts and the terms it was sent under."""
    return {
        "manifest_version": MANIFEST_VERSION,
        "share_id": share.share_id,
        "agreement": share.agreement_id,
        "recipient": {"name": share.recipient, "type": share.recipient_type},
        "purpose": share.purpose,
        "lawful_basis": share.lawful_basis,
        "special_category_condition": share.special_category_condition,
        "legal_gateway": share.legal_gateway,
        "approval": share.approval,
        "policy_version": share.policy_version,
        "as_of": share.as_of.isoformat(),
        "file": name,
        "format": "csv",
        "sha256": built.sha256,
        "size": built.size,
        "pupils": built.pupils,
        "excluded": dict(sorted(built.excluded.items())),
        "suppressed": dict(sorted(built.suppressed.items())),
        "fields": list(share.fields),
        "transforms": {f: share.transforms.get(f, "none") for f in share.fields},
        "flags": list(share.flags),
        # The agreement's retention: the recipient deletes the file this many days after receiving it.
        "retention_days": share.retention_days,
        "consent_check": {
            "covering_purposes": list(check.covering),
            "consent_required": check.consent_required,
        },
    }


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.part")
    with tmp.open("wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


__all__ = ["build_lineage", "build_share", "file_name_for", "manifest_name", "staging_dir"]
