"""Commands for the regulator's evidence, registered on the main command in ``censustrace.cli``:

* ``censustrace article30 [--csv FILE] [--pdf FILE] [--json]``: the record of processing, from what
  happened;
* ``censustrace notices [--out DIR] [--dry-run] [--json]``: Article 19 notices to past recipients.
"""

from __future__ import annotations

import getpass
from pathlib import Path
from typing import Annotated

import typer

from censustrace.cli.common import JsonFlag, emit, load_settings


def article30(
    csv_file: Annotated[Path | None, typer.Option("--csv", help="Also write the record as CSV here.")] = None,
    pdf_file: Annotated[Path | None, typer.Option("--pdf", help="Also write the record as PDF here.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """The record of processing (UK GDPR Art 30) from the shares delivered, refused attempts and
    approved agreements not yet used; controller and DPO from configuration."""
    from censustrace.compliance.article30 import record_of_processing, to_csv, to_pdf

    record = record_of_processing(load_settings())
    if csv_file is not None:
        csv_file.write_text(to_csv(record), encoding="utf-8")
    if pdf_file is not None:
        pdf_file.write_bytes(to_pdf(record))
    lines = [f"controller: {record['controller']['name']}; DPO: {record['dpo']['name'] or 'not configured'}"]
    lines += [
        f"  {a['agreement']} -> {a['recipient']} ({a['purpose']}, {a['lawful_basis']}): "
        f"{a['shares']} share(s), {a['pupils']} record(s); sent {', '.join(a['fields_sent'])}"
        for a in record["activities"]
    ]
    lines.append(f"refused attempts: {len(record['refused'])}; planned: {len(record['planned'])}")
    emit(record, as_json, lines)


def notices(
    out: Annotated[
        Path | None, typer.Option("--out", help="Folder for the notices (default: $HOME/notices).")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only list what is due; record nothing.")
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Article 19: tell past recipients of rectified, erased or objected data (one CSV and PDF per
    recipient), and record each notice as sent so it is not sent again."""
    from censustrace.compliance.article19 import pending_notices, send_notices, summary

    settings = load_settings()
    if dry_run:
        due = summary(pending_notices(settings))
        emit(
            {"due": due},
            as_json,
            [f"{d['recipient']}: {d['records']} {d['kind']}" for d in due] or ["none due"],
        )
        return
    try:
        user = f"os:{getpass.getuser()}"
    except (KeyError, OSError):
        user = "os:unknown"
    result = send_notices(settings, out or settings.home / "notices", sent_by=user)
    lines = [f"{n['recipient']}: {n['records']} record(s) -> {n['pdf']}" for n in result["notices"]]
    emit(result, as_json, lines or ["no notice due"])
