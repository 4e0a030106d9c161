"""What the share DAG file needs to know at parse time: one spec per agreement file.

Parsing reads the agreement files only (no database, no policy check): a DAG exists for every file, even
an invalid one, so that a broken agreement shows up in the Airflow UI as a share that fails its check
with the file and line named, rather than as a DAG that silently vanished.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

#: When each agreed frequency runs (UTC). Termly shares go out on the 1st of the month after each census
#: return is due (autumn: November, spring: February, summer: June), once the term's extracts are loaded.
SCHEDULES: Final[dict[str, str]] = {
    "once": "@once",
    "termly": "0 6 1 2,6,11 *",
    "monthly": "0 6 1 * *",
    "weekly": "0 6 * * 1",
    "daily": "0 6 * * *",
}
_SAFE_ID: Final = re.compile(r"[^A-Za-z0-9_.-]")


@dataclass(frozen=True, slots=True)
class ShareDagSpec:
    agreement_id: str
    dag_id: str
    schedule: str | None  # None: manual runs only (expired, unknown frequency, unreadable file)
    start_date: dt.date
    recipient: str
    purpose: str
    doc: str
    tags: tuple[str, ...]


def share_dag_specs(policies_dir: Path, today: dt.date) -> list[ShareDagSpec]:
    """One spec per ``agreements/*.yaml`` file, in file order."""
    from censustrace.consent.policies import agreement_files

    return [_spec(path, policies_dir, today) for path in agreement_files(policies_dir)]


def _spec(path: Path, policies_dir: Path, today: dt.date) -> ShareDagSpec:
    # Read as the check step reads it, so a file it cannot read is named (file:line) the same way.
    from censustrace.consent.policies import read_agreement

    agreement_id = path.stem
    problem = ""
    data: dict[str, Any] = {}
    loaded, problems = read_agreement(path, policies_dir)
    if problems:
        problem = f"the file cannot be read ({problems[0]})"
    elif isinstance(loaded, dict):
        data = loaded
    else:
        problem = "the file is not a mapping"
    recipient = data.get("recipient") if isinstance(data.get("recipient"), dict) else {}
    name = str((recipient or {}).get("name") or "unknown recipient")
    purpose = str(data.get("purpose") or "unknown purpose")
    frequency = str(data.get("frequency") or "")
    valid_from, valid_to = _day(data.get("valid_from")), _day(data.get("valid_to"))
    schedule = SCHEDULES.get(frequency)
    tags = ["share", purpose.split(".")[0]]
    state = "scheduled " + frequency if schedule else "manual runs only"
    if problem or schedule is None:
        schedule = None
    elif valid_to is not None and valid_to < today:
        schedule, state = None, f"manual runs only: the agreement ended on {valid_to.isoformat()}"
        tags.append("expired")
    doc = (
        f"### Share under agreement `{agreement_id}`\n"
        f"**Recipient:** {name}  \n**Purpose:** `{purpose}`  \n**Frequency:** {frequency or '?'} "
        f"({state})  \n**Agreement file:** `{path.name}`"
        + (f"  \n**Problem:** {problem}: the check step will refuse it, naming the file." if problem else "")
        + "\n\n1. **check**: the agreement against `policies/` for today in Europe/London (never the "
        "run's logical date); a refusal records one *blocked share* with its reasons and fails the run "
        "(no retries);\n"
        "2. **build**: the current pupils in scope, minus objections, transformed, refused codes "
        "suppressed; the outbound file and its manifest, not yet visible;\n"
        "3. **release**: judged again for the day it leaves (refused: blocked; objections or agreement "
        "changed: rebuilt), then share record, disclosure log and lineage event committed, and the file "
        "moves into `outbox/<recipient>/` (no lineage, no share)."
    )
    return ShareDagSpec(
        agreement_id=agreement_id,
        dag_id="census_share__" + _SAFE_ID.sub("_", agreement_id),
        schedule=schedule,
        start_date=valid_from or dt.date(2026, 1, 1),
        recipient=name,
        purpose=purpose,
        doc=doc,
        tags=tuple(tags),
    )


def _day(value: Any) -> dt.date | None:
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        return None
