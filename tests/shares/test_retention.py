"""Retention on SQLite and PostgreSQL: never-share legacy items erased with a lineage event saying what,
how many rows and under which rule; earlier shares still trace to their files; a second run is a no-op."""

from __future__ import annotations

import json
from collections.abc import Callable

from sqlalchemy import func, or_, select

from censustrace.compliance.retention import apply_retention
from censustrace.config import Settings
from censustrace.lineage.emit import run_event
from censustrace.lineage.facets import schema_documents
from censustrace.lineage.model import StepLineage
from censustrace.lineage.spec import validate_event
from censustrace.lineage.store.ingest import store_event
from censustrace.lineage.traceback import trace_target
from censustrace.shares.steps import run_share
from censustrace.shares.tables import erasures
from censustrace.warehouse.db import warehouse_engine
from censustrace.warehouse.tables import pupil, pupil_address
from tests.plugins.helpers.privacy import identifiers_in, leaks
from tests.plugins.helpers.shares import AS_OF, Census, ingest_census, lineage_engine


def legacy_values(settings: Settings) -> tuple[int, int]:
    with warehouse_engine(settings.warehouse_db_url).connect() as conn:
        nationality = conn.execute(
            select(func.count()).select_from(pupil).where(pupil.c.nationality.is_not(None))
        ).scalar_one()
        country = conn.execute(
            select(func.count()).select_from(pupil).where(pupil.c.country_of_birth.is_not(None))
        ).scalar_one()
    return int(nationality), int(country)


def address_values(settings: Settings) -> dict[str, int]:
    """Non-empty values per address column (the columns address_lines, postcode and uprn live in)."""
    columns = [c for c in pupil_address.columns if c.name not in ("extract_id", "record_number")]
    with warehouse_engine(settings.warehouse_db_url).connect() as conn:
        return {
            c.name: int(
                conn.execute(
                    select(func.count()).select_from(pupil_address).where(c.is_not(None))
                ).scalar_one()
            )
            for c in columns
        }


def test_legacy_items_are_erased_with_lineage_and_earlier_shares_still_trace(
    sh: Settings, census: Callable[..., Census]
) -> None:
    generated = census(term="AUT", year=2017, seed=41)  # nationality was collected in 2016/17-2017/18
    folder, manifest = generated
    ingest_census(sh, generated)
    nationality, country = legacy_values(sh)
    assert nationality
    assert country
    share = run_share("t-research", sh)
    engine = lineage_engine(sh)
    target = f"dataset:file:{share['file']}@{share['sha256']}"
    before = trace_target(engine, target)["sources"]

    addressed = address_values(sh)
    assert addressed["postcode"] > 0

    step = StepLineage()
    result = apply_retention(sh, AS_OF, lineage=step)
    assert legacy_values(sh) == (0, 0)
    legacy = [e for e in result["erasures"] if e["rule"] == "never_share_legacy"]
    assert {(e["rule"], e["field"], e["rows"]) for e in legacy} == {
        ("never_share_legacy", "nationality", nationality),
        ("never_share_legacy", "country_of_birth", country),
    }
    # fields.yaml keeps the home address six years: this 2017 census is past it on AS_OF (2026).
    ended = {e["field"]: e["rows"] for e in result["erasures"] if e["rule"] == "retention_ended"}
    assert {f: n for f, n in ended.items() if n} == {f: n for f, n in addressed.items() if n}
    assert set(address_values(sh).values()) == {0}
    assert result["rows"] == nationality + country + sum(addressed.values())
    event = json.loads(run_event(sh, "census_retention.erase", step))
    assert validate_event(event, extra_schemas=schema_documents()) == []
    assert leaks([event, result], identifiers_in(folder / f["file"] for f in manifest["files"])) == []
    output = next(o for o in event["outputs"] if o["name"].endswith(".pupil"))
    assert output["facets"]["version"]["datasetVersion"] == result["version"]
    erased = output["facets"]["retentionErasure"]["erasures"]
    assert {(e["rule"], e["field"], e["rows"]) for e in erased} == {
        ("never_share_legacy", "nationality", nationality),
        ("never_share_legacy", "country_of_birth", country),
    }
    address_output = next(o for o in event["outputs"] if o["name"].endswith(".pupil_address"))
    assert {e["rule"] for e in address_output["facets"]["retentionErasure"]["erasures"]} == {
        "retention_ended"
    }
    store_event(engine, json.dumps(event))

    # The share made before the erasure still traces to exactly the same received files, and the
    # erasure's own version traces to them too.
    # The received files themselves were redacted too (censustrace.compliance.erasure): each source
    # now says what was erased from it; otherwise the same sources.
    after = trace_target(engine, target)["sources"]
    assert [{k: v for k, v in s.items() if k != "erased"} for s in after] == before
    assert all("nationality" in s["erased"]["fields"] for s in after)
    erasure_trace = trace_target(
        engine, f"dataset:{output['namespace']}:{output['name']}@{result['version']}"
    )
    assert {s["sha256"] for s in erasure_trace["sources"]} == {f["sha256"] for f in manifest["files"]}
    engine.dispose()

    again = apply_retention(sh, AS_OF, lineage=(second := StepLineage()))
    assert (again["rows"], again["erasures"], again["version"]) == (0, [], None)
    assert second.outputs == []
    with warehouse_engine(sh.warehouse_db_url).connect() as conn:
        logged = conn.execute(
            select(erasures.c.field, erasures.c.rows).where(erasures.c.rule == "never_share_legacy")
        ).all()
        assert sorted(logged) == sorted([("nationality", nationality), ("country_of_birth", country)])
        left = conn.execute(
            select(func.count())
            .select_from(pupil)
            .where(or_(pupil.c.nationality.is_not(None), pupil.c.country_of_birth.is_not(None)))
        ).scalar_one()
    assert left == 0
