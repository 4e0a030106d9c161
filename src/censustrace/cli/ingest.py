"""Census files in: ``generate``, ``deliver``, ``status`` and ``ingest``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from censustrace.cli.common import Format, JsonFlag, Term, emit, load_settings
from censustrace.errors import UsageError

if TYPE_CHECKING:
    from censustrace.config import Settings


def generate(
    out: Annotated[Path, typer.Option(help="Folder to write the census files and manifest.json to.")],
    schools: Annotated[int, typer.Option(help="Number of schools.")] = 12,
    pupils_per_school: Annotated[int, typer.Option(help="Pupils on roll per school.")] = 340,
    term: Annotated[Term, typer.Option(help="Census term.", case_sensitive=False)] = Term.AUT,
    year: Annotated[int, typer.Option(help="Calendar year of the census day.")] = 2026,
    la: Annotated[str, typer.Option(help="3-digit LA number.")] = "330",
    seed: Annotated[int, typer.Option(help="Random seed: same arguments and seed, same bytes.")] = 1,
    fmt: Annotated[Format, typer.Option("--format", help="File layout.", case_sensitive=False)] = Format.xml,
    faults: Annotated[float, typer.Option(help="Share of pupils with an injected defect (0 to 1).")] = 0.0,
    consents: Annotated[bool, typer.Option("--consents", help="Also write consent/objection files.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Write a synthetic, deterministic census (with known injected faults) for tests and demos."""
    from censustrace.census.generator import GeneratorOptions
    from censustrace.census.generator import generate as run_generator

    options = GeneratorOptions(
        schools=schools,
        pupils_per_school=pupils_per_school,
        term=term.value,
        year=year,
        la=la,
        seed=seed,
        fmt=fmt.value,
        faults=faults,
        consents=consents,
        out=out,
    )
    manifest = run_generator(options)
    files = manifest["files"]
    summary = {
        "out": str(out),
        "files": len(files),
        "pupils": sum(int(f["pupils"]) for f in files),
        "faults": len(manifest["faults"]),
        "manifest": str(out / "manifest.json"),
    }
    emit(
        summary,
        as_json,
        [f"wrote {summary['files']} files ({summary['pupils']} pupils, {summary['faults']} faults) to {out}"],
    )


def deliver(
    source: Annotated[Path, typer.Argument(help="A generated folder (with manifest.json) or one file.")],
    as_json: JsonFlag = False,
) -> None:
    """Put census files into the landing folder, as a school's upload would.

    A same-named file still waiting there is never replaced: that file is refused (CT-LANDING-EXISTS,
    exit 1) and the others are delivered."""
    from censustrace.intake.landing import LandingError, deliver_into

    settings = load_settings()
    if source.is_file():
        files = [source]
    elif (source / "manifest.json").is_file():
        manifest = json.loads((source / "manifest.json").read_text())
        files = [source / f["file"] for f in manifest["files"]]
    elif source.is_dir():
        files = sorted(p for p in source.iterdir() if p.suffix.lower() in (".xml", ".csv"))
    else:
        raise UsageError(f"SOURCE {source}: no such file or folder")
    delivered: list[str] = []
    refused: list[dict[str, str]] = []
    for f in files:
        try:
            delivered.append(str(deliver_into(f, settings.landing_dir)))
        except LandingError as exc:
            refused.append({"file": f.name, **exc.as_dict()})
    lines = [f"delivered {len(delivered)} files to {settings.landing_dir}"]
    lines += [f"refused {r['file']}: {r['code']} {r['message']}" for r in refused]
    emit({"delivered": delivered, "refused": refused}, as_json, lines)
    if refused:
        raise typer.Exit(1)


def status(as_json: JsonFlag = False) -> None:
    """What is waiting, archived and quarantined in this home, and extracts by status."""
    from censustrace.intake.landing import pending_files

    settings = load_settings()
    result = {
        "home": str(settings.home),
        "landing": len(pending_files(settings.landing_dir)),
        "archived": sum(1 for p in settings.archive_dir.glob("??/*") if not p.name.startswith(".")),
        "quarantined": sum(1 for _ in settings.quarantine_dir.glob("*/reason.json")),
        "extracts": extract_counts(settings),
    }
    emit(result, as_json, [f"{k}: {v}" for k, v in result.items()])


def extract_counts(settings: Settings) -> dict[str, int]:
    from censustrace.intake.registry import list_extracts

    counts: dict[str, int] = {}
    for row in list_extracts(settings):
        counts[row.status] = counts.get(row.status, 0) + 1
    return dict(sorted(counts.items()))


def ingest(
    paths: Annotated[list[Path], typer.Argument(help="Census files to ingest (they are archived first).")],
    as_json: JsonFlag = False,
) -> None:
    """Ingest files now, through the same code path as census_ingest: archive, register, stage,
    validate, publish, in batches of CENSUSTRACE_INGEST_BATCH_FILES (one GX run per suite per batch,
    each file's lineage written in one transaction per batch).

    Each file is first copied into the landing folder's claim folder (your copy is left alone; a
    same-named upload waiting in the landing folder is not touched). One JSON object per
    file with --json. Exit code 1 if any file was quarantined or failed."""
    import uuid

    from censustrace.intake.batch import FAILED, ingest_batch, plan_batches
    from censustrace.intake.landing import claim_copy
    from censustrace.lineage.bulk import ParentRef, emit_bulk, parent_events

    settings = load_settings()
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise UsageError(f"PATH: no such file: {', '.join(missing)}")
    bad = False
    landed = {str(claim_copy(path, settings.landing_dir)): path for path in paths}
    for batch in plan_batches(list(landed), settings.ingest_batch_files, settings.ingest_batch_bytes):
        # The files' runs are children of one run of this command per batch, as of a task in Airflow.
        parent = ParentRef(settings.lineage_namespace, "census_ingest.ingest_batch", str(uuid.uuid4()))
        done = ingest_batch(batch, settings, parent=parent)
        emit_bulk(settings, parent_events(settings, parent, failed=bool(done.failed)))
        for outcome in done.outcomes:
            item = {**outcome.as_dict(), "file": str(landed.get(outcome.file, outcome.file))}
            bad |= item["status"] in ("quarantined", FAILED)
            if as_json:
                typer.echo(json.dumps(item, sort_keys=True))
            else:
                codes = " ".join(e["code"] for e in item["errors"])
                name = Path(item["file"]).name
                typer.echo(f"{name}: {item['status']} {item['extract_id'] or ''} {codes}".rstrip())
    if bad:
        raise typer.Exit(1)
