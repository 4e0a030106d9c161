"""Subject access that finds the child (SQLite and PostgreSQL): by current UPN, by a former UPN, by name
and date of birth; the answer has the data held with its source files and every share with its
recipient, fields, agreement, purpose and retention; each lookup recorded by pupil key."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import select

from censustrace.compliance.subject import (
    LookupRejected,
    NameDob,
    look_up_name,
    look_up_upns,
    lookups_of,
)
from censustrace.config import Settings
from censustrace.intake.stage import pupil_key
from censustrace.shares.steps import run_share
from censustrace.shares.tables import disclosures
from censustrace.warehouse.db import warehouse_engine
from censustrace.warehouse.tables import extracts, pupil
from tests.plugins.helpers.shares import Census, ingest_census


def _shared_pupil_with_former_upn(settings: Settings, share_id: str) -> dict[str, Any]:
    with warehouse_engine(settings.warehouse_db_url).connect() as conn:
        row = (
            conn.execute(
                select(pupil.c.upn, pupil.c.former_upn, pupil.c.surname, pupil.c.forename, pupil.c.dob)
                .join(
                    disclosures,
                    (disclosures.c.extract_id == pupil.c.extract_id)
                    & (disclosures.c.record_number == pupil.c.record_number),
                )
                .where(disclosures.c.share_id == share_id, pupil.c.former_upn.is_not(None))
                .order_by(pupil.c.upn)
                .limit(1)
            )
            .mappings()
            .one()
        )
    return dict(row)


def test_former_upn_and_name_find_the_child_and_the_answer_is_full(
    sh: Settings, census: Callable[..., Census]
) -> None:
    generated = census(schools=2, pupils_per_school=40, seed=51)
    ingest_census(sh, generated)
    share = run_share("t-nursing", sh)
    child = _shared_pupil_with_former_upn(sh, share["share_id"])

    by_current = look_up_upns(sh, [child["upn"]], user="clara", via="viewer")["requests"][0]
    by_former = look_up_upns(sh, [f" {child['former_upn'].lower()} "], user="clara", via="api")["requests"][0]
    assert by_current["matched_by"] == "upn"
    assert by_former["matched_by"] == "former_upn"
    for answer in (by_current, by_former):
        (sent,) = answer["shares"]
        assert sent["share_id"] == share["share_id"]
        assert (sent["recipient"], sent["purpose"], sent["agreement"]) == (
            "Test NHS Trust",
            "health.school_nursing",
            "t-nursing",
        )
        assert sent["retention_days"] == 365
        assert sent["retain_until"]
        assert "upn" in sent["fields"]
        (held,) = answer["data"]
        assert held["values"]["upn"] == child["upn"]
        assert held["values"]["former_upn"] == child["former_upn"]
        assert held["current"] is True
        assert "surname" in held["fields_held"]
        with warehouse_engine(sh.warehouse_db_url).connect() as conn:
            names = set(conn.execute(select(extracts.c.original_name, extracts.c.sha256)).tuples())
        assert (held["source"]["file"], held["source"]["sha256"]) in names

    # Name and date of birth: case and spacing do not matter; a wrong birthday finds no one.
    who = NameDob.parse(f"  {child['surname'].upper()} ", child["forename"].lower(), child["dob"].isoformat())
    (found,) = look_up_name(sh, who, user="clara", via="viewer")["pupils"]
    assert [s["share_id"] for s in found["shares"]] == [share["share_id"]]
    assert found["data"][0]["values"]["upn"] == child["upn"]
    other_day = child["dob"].replace(day=1 if child["dob"].day != 1 else 2).isoformat()
    assert look_up_name(sh, NameDob.parse(child["surname"], child["forename"], other_day))["pupils"] == []

    # A UPN of no one: an empty answer, nothing recorded for it.
    stranger = look_up_upns(sh, ["A999999999999"])["requests"][0]
    assert (stranger["matched_by"], stranger["shares"], stranger["data"]) == (None, [], [])

    # Without values (the CLI default) the answer names the fields held, not their values.
    bare = look_up_upns(sh, [child["upn"]], values=False)["requests"][0]
    assert "values" not in bare["data"][0]
    assert child["upn"] not in repr(bare)

    # Who looked this pupil up: every lookup, by pupil key, with how it was found.
    key = pupil_key(sh.pupil_key_secret_value(), child["upn"])
    logged = lookups_of(sh, [key])
    assert [(r["user"], r["via"], r["method"]) for r in logged][:3] == [
        ("clara", "viewer", "upn"),
        ("clara", "api", "former_upn"),
        ("clara", "viewer", "name_dob"),
    ]
    assert logged[-1]["user"].startswith("os:")  # a CLI-style lookup records the OS user
    assert all(child["upn"] not in repr(r) for r in logged)


@pytest.mark.parametrize(
    ("cells", "field"),
    [
        (("", "Ann", "2015-01-01"), "surname"),
        (("Smith", " ", "2015-01-01"), "forename"),
        (("S", "A", "1/1/15"), "date"),
    ],
)
def test_bad_name_lookups_are_rejected_naming_the_field(cells: tuple[str, str, str], field: str) -> None:
    with pytest.raises(LookupRejected) as raised:
        NameDob.parse(*cells)
    assert raised.value.code == "CT-SUBJECT-INPUT"
    assert field in raised.value.message


def test_a_share_made_under_a_temporary_upn_is_found_by_the_permanent_one(
    sh: Settings, census: Callable[..., Census]
) -> None:
    """Disclosures keyed by the temporary UPN (before the permanent one was known) are found from the
    permanent UPN through the record's FormerUPN."""
    ingest_census(sh, census(schools=2, pupils_per_school=40, seed=51))
    share = run_share("t-research", sh)
    child = _shared_pupil_with_former_upn(sh, share["share_id"])
    secret = sh.pupil_key_secret_value()
    current, temporary = pupil_key(secret, child["upn"]), pupil_key(secret, child["former_upn"])
    from censustrace.warehouse.db import write_transaction

    with write_transaction(warehouse_engine(sh.warehouse_db_url)) as conn:
        conn.execute(
            disclosures.update()
            .where(disclosures.c.share_id == share["share_id"], disclosures.c.pupil_key == current)
            .values(pupil_key=temporary)
        )
    answer = look_up_upns(sh, [child["upn"]])["requests"][0]
    assert [s["share_id"] for s in answer["shares"]] == [share["share_id"]]
