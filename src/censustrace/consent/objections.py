"""Pupils' recorded decisions: consent files in, and the objection check that shares apply.

A school keeps one consent file (CSV ``upn, purpose, decision, recorded_on, source``). Ingesting it:

* archives its exact bytes (``archive/<sha[:2]>/<sha256>``, like a census file) before reading them;
* registers it in ``consent_files`` (``cns_`` + 20 hex digits of the sha256) and stores its valid rows in
  ``consent_decisions`` by **pupil key**: the UPN itself is never stored;
* keeps a decision for a pupil not seen yet (no census loaded for them): it is *pending* and applies as
  soon as the pupil appears, because shares match decisions by pupil key (an objection made under a
  former or temporary UPN applies to the pupil who carries that UPN as FormerUPN);
* the same bytes again are registered as a ``duplicate`` of the first receipt and **re-applied**
  idempotently: rows already in force are left as they are, any missing row is added (the outcome says
  so); nothing is ever applied twice;
* reports bad rows with counts and row numbers, never values, and applies the rest: no UPN
  (CT-CONSENT-UPN-MISSING), a date that is not
  ``YYYY-MM-DD`` (CT-CONSENT-DATE), an unknown decision (CT-CONSENT-DECISION), a purpose not in
  ``policies/purposes.yaml`` (CT-CONSENT-PURPOSE), a row with the wrong number of cells
  (CT-CONSENT-SHAPE). A file that is not UTF-8 or lacks a column is refused whole (CT-CONSENT-ENCODING,
  CT-CONSENT-HEADER).

Decisions are ``objected``, ``withdrawn`` or ``consented``; the generator's and some MIS exports'
``object``/``withdraw``/``consent`` are read as the same.

The check a share applies (:func:`agreement_consent_check`): per pupil and purpose the **latest**
decision wins (by ``recorded_on``; on the same day the file received later, then the later row).
Decisions about the share's purpose and about every purpose covering it (``evaluate.purpose_covers``:
an objection to ``research`` covers ``research.approved``) apply. A pupil whose latest decision for
any of those is ``objected`` or ``withdrawn`` is excluded: an objection wins over a consent for
another covering purpose, the safe reading. When the lawful basis is consent, a pupil with no such
``consented`` decision is excluded too (``no_consent``).

The right to object (UK GDPR Art 21) depends on the agreement (``evaluate.objection_mode``): objections
are ``honoured`` (the pupil is excluded) for public task and legitimate interests unless an approved
override is recorded (``overridden``), and for legal obligation they are ``recorded`` (counted in the share
register, the pupil is sent). Withdrawn consent always excludes when consent is the lawful basis.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from openlineage.client.event_v2 import InputDataset, OutputDataset
from openlineage.client.generated.base import DatasetFacet, OutputDatasetFacet
from openlineage.client.generated.column_lineage_dataset import (
    ColumnLineageDatasetFacet,
    Fields,
    InputField,
    Transformation,
)
from openlineage.client.generated.dataset_version_dataset import DatasetVersionDatasetFacet
from openlineage.client.generated.output_statistics_output_dataset import (
    OutputStatisticsOutputDatasetFacet,
)
from sqlalchemy import Connection, func, insert, select

from censustrace.census.formats.header import file_name_parts
from censustrace.config import Settings
from censustrace.consent.tables import (
    APPLIED,
    CONSENTED,
    DECISIONS,
    DUPLICATE,
    OBJECTED,
    REFUSED,
    WITHDRAWN,
    consent_decisions,
    consent_files,
)
from censustrace.errors import CensustraceError
from censustrace.intake.archive import ArchivedFile, archive_file
from censustrace.intake.quarantine import Reason, reason
from censustrace.intake.stage import pupil_key
from censustrace.lineage.facets import CensusExtractDatasetFacet
from censustrace.lineage.model import StepLineage
from censustrace.lineage.naming import FILE_NAMESPACE, file_dataset_name
from censustrace.warehouse.db import warehouse_engine, write_transaction
from censustrace.warehouse.load import bulk_insert
from censustrace.warehouse.naming import warehouse_dataset_name, warehouse_namespace
from censustrace.warehouse.tables import pupil

COLUMNS: Final = ("upn", "purpose", "decision", "recorded_on", "source")
ID_PREFIX: Final = "cns_"
#: Spellings read as each decision (lower-cased): the issue's words and the generator's.
DECISION_WORDS: Final[Mapping[str, str]] = {
    "objected": OBJECTED,
    "object": OBJECTED,
    "objection": OBJECTED,
    "withdrawn": WITHDRAWN,
    "withdraw": WITHDRAWN,
    "consented": CONSENTED,
    "consent": CONSENTED,
}
#: Row numbers listed per problem, at most (the count is always complete).
MAX_LISTED_ROWS: Final = 50
_KEYS_PER_QUERY: Final = 500

# Stable codes.
ENCODING: Final = "CT-CONSENT-ENCODING"
HEADER: Final = "CT-CONSENT-HEADER"
SHAPE: Final = "CT-CONSENT-SHAPE"
UPN_MISSING: Final = "CT-CONSENT-UPN-MISSING"
BAD_DATE: Final = "CT-CONSENT-DATE"
BAD_DECISION: Final = "CT-CONSENT-DECISION"
BAD_PURPOSE: Final = "CT-CONSENT-PURPOSE"

_PROBLEMS: Final[Mapping[str, str]] = {
    SHAPE: "with the wrong number of cells",
    UPN_MISSING: "without a UPN",
    BAD_DATE: "with a recorded_on that is not a YYYY-MM-DD date",
    BAD_DECISION: "with a decision other than objected, withdrawn or consented",
    BAD_PURPOSE: "with a purpose not in policies/purposes.yaml",
}


class ConsentError(CensustraceError):
    """A consent file could not be taken at all (missing file, no policy to check purposes against)."""

    code = "CT-CONSENT"


# --- ingest ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ConsentOutcome:
    """What happened to one consent file; ``as_dict()`` is the CLI's ``--json`` shape."""

    file: str
    sha256: str
    consent_file_id: str
    status: str  # applied | duplicate | refused
    rows_read: int
    rows_applied: int
    rows_rejected: int
    errors: tuple[Reason, ...]
    lineage: StepLineage = field(default_factory=StepLineage)
    rows_pending: int = 0  # applied rows of pupils not seen yet: they apply when the pupil appears
    rows_in_force: int = 0  # a resent file: rows already applied by its first receipt
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "sha256": self.sha256,
            "consent_file_id": self.consent_file_id,
            "status": self.status,
            "rows": {
                "read": self.rows_read,
                "applied": self.rows_applied,
                "rejected": self.rows_rejected,
                "pending": self.rows_pending,
                "in_force": self.rows_in_force,
            },
            "errors": [dict(e) for e in self.errors],
            "note": self.note,
        }


@dataclass(slots=True)
class _Parsed:
    rows: list[tuple[int, str, str, str, dt.date, str | None]] = field(default_factory=list)
    read: int = 0
    problems: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    refused: Reason | None = None

    @property
    def rejected(self) -> int:
        return len({n for numbers in self.problems.values() for n in numbers})


def ingest_consent_file(path: Path, settings: Settings) -> ConsentOutcome:
    """Archive one consent file, check its rows and store the valid ones by pupil key.

    ``path`` is left where it is. The same bytes received again register a ``duplicate`` and change
    nothing. Purposes are checked against the policy in ``settings.policies_dir``."""
    from censustrace.consent.policies import load_policy

    if not path.is_file():
        raise ConsentError(f"{path.name}: no such consent file")
    purposes = frozenset(load_policy(settings.policies_dir).purposes)
    archived = archive_file(path, settings.archive_dir)
    received_at = dt.datetime.now(dt.UTC)
    engine = warehouse_engine(settings.warehouse_db_url)
    secret = settings.pupil_key_secret_value()
    parsed = _parse(archived.archive_path.read_bytes(), archived.original_name, secret, purposes)
    names = file_name_parts(Path(archived.original_name))
    columns = ("consent_file_id", "row_number", "pupil_key", "purpose", "decision", "recorded_on", "source")
    with write_transaction(engine) as conn:
        earlier = conn.execute(
            select(consent_files.c.consent_file_id, consent_files.c.status)
            .where(consent_files.c.sha256 == archived.sha256)
            .order_by(consent_files.c.id)
        ).all()
        file_id = _file_id(archived.sha256, len(earlier) + 1)
        first = next((row.consent_file_id for row in earlier if row.status != DUPLICATE), None)
        first_status = next((row.status for row in earlier if row.status != DUPLICATE), None)
        errors: tuple[Reason, ...]
        in_force = added = 0
        note = ""
        if first is not None and first_status == APPLIED:
            # Re-applied idempotently: every row stays under the first receipt; missing ones are added.
            stored = set(
                conn.execute(
                    select(consent_decisions.c.row_number).where(consent_decisions.c.consent_file_id == first)
                ).scalars()
            )
            missing = [row for row in parsed.rows if row[0] not in stored]
            in_force, added = len(parsed.rows) - len(missing), len(missing)
            bulk_insert(conn, consent_decisions, columns, [(first, *row) for row in missing])
            status, applied, errors = DUPLICATE, added, ()
            note = (
                f"already received as {first}: re-applied, {in_force} decision(s) already in force, "
                f"{added} added"
            )
        elif first is not None:
            status, applied, errors = DUPLICATE, 0, ()
            note = f"already received as {first} ({first_status}): nothing applied"
        elif parsed.refused is not None:
            status, applied, errors = REFUSED, 0, (parsed.refused,)
        else:
            status, applied, errors = APPLIED, len(parsed.rows), _reasons(archived.original_name, parsed)
        conn.execute(
            insert(consent_files).values(
                consent_file_id=file_id,
                sha256=archived.sha256,
                size=archived.size,
                original_name=archived.original_name,
                received_at=received_at,
                laestab=f"{names.la}{names.estab}" if names else None,
                term=names.term if names else None,
                year=names.year if names else None,
                status=status,
                duplicate_of=first,
                rows_read=parsed.read,
                rows_applied=applied,
                rows_rejected=parsed.rejected if status == APPLIED else parsed.read - applied - in_force,
                reasons=list(errors),
            )
        )
        if status == APPLIED:
            bulk_insert(conn, consent_decisions, columns, [(file_id, *row) for row in parsed.rows])
        pending = _pending(conn, secret, {row[1] for row in parsed.rows}) if applied or in_force else 0
    outcome_id = first if status == DUPLICATE and first else file_id
    return ConsentOutcome(
        file=str(path),
        sha256=archived.sha256,
        consent_file_id=outcome_id,
        status=status,
        rows_read=parsed.read if status != DUPLICATE or first_status == APPLIED else 0,
        rows_applied=applied,
        rows_rejected=(parsed.rejected if status != REFUSED else parsed.read)
        if status != DUPLICATE or first_status == APPLIED
        else 0,
        errors=errors,
        lineage=_lineage(settings, path, archived, received_at, names, file_id, status, applied),
        rows_pending=pending,
        rows_in_force=in_force,
        note=note,
    )


def _pending(conn: Connection, secret: bytes, keys: set[str]) -> int:
    """How many of these pupil keys are of no pupil seen yet (neither a UPN nor a FormerUPN)."""
    known = _known_keys(conn, secret, keys)
    return len(keys - known)


def _known_keys(conn: Connection, secret: bytes, keys: set[str]) -> set[str]:
    ordered = sorted(keys)
    known: set[str] = set()
    for start in range(0, len(ordered), _KEYS_PER_QUERY):
        batch = ordered[start : start + _KEYS_PER_QUERY]
        known.update(
            conn.execute(select(pupil.c.pupil_key).where(pupil.c.pupil_key.in_(batch)).distinct()).scalars()
        )
    if known != keys:
        known.update(former_upn_keys(conn, secret).keys() & keys)
    return known


def former_upn_keys(conn: Connection, secret: bytes) -> dict[str, set[str]]:
    """Pupil key of each FormerUPN (or temporary UPN) -> the pupil keys of the pupils who carry it."""
    out: dict[str, set[str]] = defaultdict(set)
    rows = conn.execute(
        select(pupil.c.pupil_key, pupil.c.former_upn)
        .where(pupil.c.former_upn.is_not(None), pupil.c.pupil_key.is_not(None))
        .distinct()
    )
    for key, former in rows:
        former = former.strip().upper()
        if former:
            alias = pupil_key(secret, former)
            if alias != key:
                out[alias].add(key)
    return out


def _file_id(sha256: str, receipt: int) -> str:
    base = ID_PREFIX + sha256[:20]
    return base if receipt == 1 else f"{base}-{receipt}"


def _parse(data: bytes, name: str, secret: bytes, purposes: frozenset[str]) -> _Parsed:
    parsed = _Parsed()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        parsed.refused = reason(ENCODING, f"{name}: not UTF-8 (invalid byte at offset {exc.start})", name)
        return parsed
    reader = csv.reader(io.StringIO(text, newline=""))
    header = [cell.strip().lower() for cell in next(reader, [])]
    missing = [column for column in COLUMNS if column not in header]
    if missing:
        parsed.refused = reason(
            HEADER,
            f"{name}: the header row lacks column(s) {', '.join(missing)}; expected {', '.join(COLUMNS)}",
            f"{name}, header",
        )
        return parsed
    at = {column: header.index(column) for column in COLUMNS}
    for number, cells in enumerate(reader, start=1):
        if not any(cell.strip() for cell in cells):
            continue  # a blank line is no row
        parsed.read += 1
        if len(cells) != len(header):
            parsed.problems[SHAPE].append(number)
            continue
        upn = cells[at["upn"]].strip().upper()
        purpose = cells[at["purpose"]].strip()
        decision = DECISION_WORDS.get(cells[at["decision"]].strip().lower())
        recorded_on = _date(cells[at["recorded_on"]].strip())
        source = cells[at["source"]].strip() or None
        bad = [
            code
            for code, wrong in (
                (UPN_MISSING, not upn),
                (BAD_PURPOSE, purpose not in purposes),
                (BAD_DECISION, decision is None),
                (BAD_DATE, recorded_on is None),
            )
            if wrong
        ]
        for code in bad:
            parsed.problems[code].append(number)
        if not bad and decision is not None and recorded_on is not None:
            parsed.rows.append((number, pupil_key(secret, upn), purpose, decision, recorded_on, source))
    return parsed


def _date(text: str) -> dt.date | None:
    if len(text) != 10:
        return None
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        return None


def _reasons(name: str, parsed: _Parsed) -> tuple[Reason, ...]:
    out: list[Reason] = []
    for code, numbers in sorted(parsed.problems.items()):
        numbers = sorted(numbers)
        listed = ", ".join(str(n) for n in numbers[:MAX_LISTED_ROWS])
        more = f" and {len(numbers) - MAX_LISTED_ROWS} more" if len(numbers) > MAX_LISTED_ROWS else ""
        rows = "row" if len(numbers) == 1 else "rows"
        out.append(
            reason(
                code,
                f"{name}: {len(numbers)} {rows} {_PROBLEMS[code]}, not applied ({rows} {listed}{more})",
                f"{name}, {rows} {listed}{more}",
            )
        )
    return tuple(out)


def _lineage(
    settings: Settings,
    source: Path,
    archived: ArchivedFile,
    received_at: dt.datetime,
    names: Any,
    file_id: str,
    status: str,
    applied: int,
) -> StepLineage:
    """The consent file as received -> its archived copy -> ``consent_decisions`` at version = file id."""
    census = CensusExtractDatasetFacet(
        sha256=archived.sha256,
        size=archived.size,
        originalName=archived.original_name,
        receivedAt=received_at.isoformat(),
        laestab=f"{names.la}{names.estab}" if names else None,
        term=names.term if names else None,
        year=names.year if names else None,
    )
    file_facets: dict[str, DatasetFacet] = {
        "version": DatasetVersionDatasetFacet(datasetVersion=archived.sha256),
        "censusExtract": census,
    }
    archived_name = file_dataset_name(archived.archive_path)
    lineage = StepLineage(
        inputs=[InputDataset(namespace=FILE_NAMESPACE, name=file_dataset_name(source), facets=file_facets)],
        outputs=[OutputDataset(namespace=FILE_NAMESPACE, name=archived_name, facets=dict(file_facets))],
    )
    if status != APPLIED:
        return lineage

    def item(column: str, subtype: str = "IDENTITY", masking: bool = False) -> Fields:
        description = "HMAC-SHA256 of the UPN with the instance's pupil-key secret" if masking else None
        if column == "decision":
            description = "read as objected, withdrawn or consented"
        transformation = Transformation(
            type="DIRECT", subtype=subtype, description=description, masking=masking
        )
        return Fields(
            inputFields=[
                InputField(
                    namespace=FILE_NAMESPACE,
                    name=archived_name,
                    field=column,
                    transformations=[transformation],
                )
            ]
        )

    url = settings.warehouse_db_url
    facets: dict[str, DatasetFacet] = {
        "version": DatasetVersionDatasetFacet(datasetVersion=file_id),
        "columnLineage": ColumnLineageDatasetFacet(
            fields={
                "pupil_key": item("upn", "TRANSFORMATION", masking=True),
                "purpose": item("purpose"),
                "decision": item("decision", "TRANSFORMATION"),
                "recorded_on": item("recorded_on"),
                "source": item("source"),
            }
        ),
    }
    statistics: dict[str, OutputDatasetFacet] = {
        "outputStatistics": OutputStatisticsOutputDatasetFacet(rowCount=applied)
    }
    lineage.outputs.append(
        OutputDataset(
            namespace=warehouse_namespace(url),
            name=warehouse_dataset_name(url, consent_decisions.name),
            facets=facets,
            outputFacets=statistics,
        )
    )
    return lineage


# --- the check a share applies -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Decision:
    """The latest decision of one pupil for one purpose, and the consent file it came from."""

    purpose: str
    decision: str
    consent_file_id: str


@dataclass(frozen=True, slots=True)
class ConsentCheck:
    """Pupils' latest decisions for the purposes that apply to one share purpose."""

    purpose: str
    covering: tuple[str, ...]
    consent_required: bool
    decisions: Mapping[str, tuple[Decision, ...]]  # pupil key -> latest decision per covering purpose
    #: ``honoured`` (objections exclude), ``overridden`` or ``recorded`` (objections do not exclude).
    objections: str = "honoured"

    def reason(self, key: str) -> str | None:
        """Why this pupil is kept out of the share (``objected``, ``withdrawn``, ``no_consent``), or None."""
        found = self.decisions.get(key, ())
        kinds = {d.decision for d in found}
        if OBJECTED in kinds and self.objections == "honoured":
            return OBJECTED
        if WITHDRAWN in kinds and (self.objections == "honoured" or self.consent_required):
            return WITHDRAWN
        if self.consent_required and CONSENTED not in kinds:
            return "no_consent"
        return None

    def files_of(self, key: str) -> Iterable[str]:
        return (d.consent_file_id for d in self.decisions.get(key, ()))


def consent_check(
    conn: Connection,
    share_purpose: str,
    *,
    consent_required: bool = False,
    objections: str = "honoured",
    secret: bytes | None = None,
) -> ConsentCheck:
    """The latest decision per pupil for ``share_purpose`` and every purpose covering it.

    With the pupil-key ``secret``, decisions made under a FormerUPN (or temporary UPN) also apply to
    the pupil who carries it (an objection under either UPN then wins over a consent under the other)."""
    from censustrace.consent.evaluate import purpose_covers

    recorded = conn.execute(select(consent_decisions.c.purpose).distinct()).scalars().all()
    covering = tuple(sorted(p for p in recorded if purpose_covers(p, share_purpose)))
    decisions: dict[str, list[Decision]] = defaultdict(list)
    if covering:
        for key, purpose, decision, file_id in conn.execute(latest_decisions_query(covering)):
            decisions[key].append(Decision(purpose, decision, file_id))
        if secret is not None:
            for alias, holders in former_upn_keys(conn, secret).items():
                for key in holders:
                    decisions[key].extend(d for d in decisions.get(alias, ()) if d not in decisions[key])
    return ConsentCheck(
        share_purpose,
        covering,
        consent_required,
        {k: tuple(v) for k, v in decisions.items() if v},
        objections,
    )


def agreement_consent_check(conn: Connection, agreement: Any, secret: bytes) -> ConsentCheck:
    """The check a share under ``agreement`` applies: its purpose, consent if that is the lawful basis,
    objections as the right to object says (``evaluate.objection_mode``), FormerUPNs followed."""
    from censustrace.consent.evaluate import objection_mode

    return consent_check(
        conn,
        agreement.purpose,
        consent_required=agreement.lawful_basis == "consent",
        objections=objection_mode(agreement),
        secret=secret,
    )


def latest_decisions_query(purposes: Sequence[str]) -> Any:
    """``(pupil_key, purpose, decision, consent_file_id)``: the latest decision per pupil and purpose."""
    ranked = (
        select(
            consent_decisions.c.pupil_key,
            consent_decisions.c.purpose,
            consent_decisions.c.decision,
            consent_decisions.c.consent_file_id,
            func.row_number()
            .over(
                partition_by=(consent_decisions.c.pupil_key, consent_decisions.c.purpose),
                order_by=(
                    consent_decisions.c.recorded_on.desc(),
                    consent_files.c.id.desc(),
                    consent_decisions.c.row_number.desc(),
                ),
            )
            .label("rank"),
        )
        .join(consent_files, consent_files.c.consent_file_id == consent_decisions.c.consent_file_id)
        .where(consent_decisions.c.purpose.in_(list(purposes)), consent_files.c.status == APPLIED)
        .subquery()
    )
    return select(ranked.c.pupil_key, ranked.c.purpose, ranked.c.decision, ranked.c.consent_file_id).where(
        ranked.c.rank == 1
    )


def latest_decisions(conn: Connection, key: str) -> list[dict[str, Any]]:
    """Every purpose's latest decision for one pupil (subject access): purpose, decision, date."""
    rows = conn.execute(
        select(
            consent_decisions.c.purpose,
            consent_decisions.c.decision,
            consent_decisions.c.recorded_on,
            consent_files.c.id,
            consent_decisions.c.row_number,
        )
        .join(consent_files, consent_files.c.consent_file_id == consent_decisions.c.consent_file_id)
        .where(consent_decisions.c.pupil_key == key, consent_files.c.status == APPLIED)
    ).all()
    latest: dict[str, Any] = {}
    for row in sorted(rows, key=lambda r: (r.recorded_on, r.id, r.row_number)):
        latest[row.purpose] = row
    return [
        {"purpose": p, "decision": r.decision, "recorded_on": r.recorded_on.isoformat()}
        for p, r in sorted(latest.items())
    ]


def decision_upns(
    conn: Connection, archive_dir: Path, rows: Iterable[tuple[str, int]]
) -> dict[tuple[str, int], str]:
    """The UPN of each ``(consent_file_id, row_number)``, read again from the archived bytes of its file
    (the only place a UPN of a decision is kept): how ``rekey`` re-keys objections of pupils not seen."""
    from censustrace.intake.archive import archive_path_for

    wanted: dict[str, set[int]] = defaultdict(set)
    for file_id, number in rows:
        wanted[file_id].add(number)
    if not wanted:
        return {}
    shas = dict(
        conn.execute(
            select(consent_files.c.consent_file_id, consent_files.c.sha256).where(
                consent_files.c.consent_file_id.in_(sorted(wanted))
            )
        ).all()
    )
    out: dict[tuple[str, int], str] = {}
    for file_id, numbers in wanted.items():
        try:
            text = archive_path_for(archive_dir, shas[file_id]).read_bytes().decode("utf-8-sig")
        except (KeyError, OSError, UnicodeDecodeError):
            continue
        reader = csv.reader(io.StringIO(text, newline=""))
        header = [cell.strip().lower() for cell in next(reader, [])]
        if "upn" not in header:
            continue
        at = header.index("upn")
        for number, cells in enumerate(reader, start=1):  # numbered exactly as when it was applied
            if number in numbers and len(cells) > at:
                out[(file_id, number)] = cells[at].strip().upper()
    return out


def file_counts(conn: Connection) -> Counter[str]:
    """Consent files by status."""
    return Counter(
        dict(
            conn.execute(select(consent_files.c.status, func.count()).group_by(consent_files.c.status)).all()
        )
    )


__all__ = [
    "COLUMNS",
    "DECISIONS",
    "ConsentCheck",
    "ConsentError",
    "ConsentOutcome",
    "Decision",
    "agreement_consent_check",
    "consent_check",
    "former_upn_keys",
    "ingest_consent_file",
    "latest_decisions",
    "latest_decisions_query",
]
