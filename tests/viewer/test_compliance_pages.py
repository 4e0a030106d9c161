"""Subject access by name and date of birth (compliance only, POST only, logged without the name), the
answer's data held and retention, and the Article 30 page's sections, over a real delivered share."""

from __future__ import annotations

from collections.abc import Callable

from fastapi.testclient import TestClient
from sqlalchemy import select

from censustrace.shares.tables import disclosures
from censustrace.viewer import auth
from censustrace.warehouse.db import warehouse_engine
from censustrace.warehouse.tables import pupil
from tests.plugins.helpers.viewer import Home, access_log, csrf_of

from .pipeline import ALLOWED, BLOCKED

UserClient = Callable[[str], TestClient]


def _disclosed(home: Home) -> dict[str, str]:
    with warehouse_engine(home.settings.warehouse_db_url).connect() as conn:
        row = (
            conn.execute(
                select(pupil.c.upn, pupil.c.surname, pupil.c.forename, pupil.c.dob)
                .join(
                    disclosures,
                    (disclosures.c.extract_id == pupil.c.extract_id)
                    & (disclosures.c.record_number == pupil.c.record_number),
                )
                .where(disclosures.c.share_id == home.filled.shares[ALLOWED])
                .order_by(pupil.c.upn)
                .limit(1)
            )
            .mappings()
            .one()
        )
    return {
        "upn": row["upn"],
        "surname": row["surname"],
        "forename": row["forename"],
        "dob": row["dob"].isoformat(),
    }


def test_compliance_finds_a_pupil_by_name_and_date_of_birth(home: Home, as_user: UserClient) -> None:
    child = _disclosed(home)
    clara = as_user("clara")
    form = clara.get("/subject-access")
    assert 'id="by-name"' in form.text
    found = clara.post(
        "/subject-access",
        data={
            "method": "name_dob",
            "surname": child["surname"].upper(),
            "forename": " " + child["forename"],
            "dob": child["dob"],
            "csrf_token": csrf_of(form.text),
        },
    )
    assert found.status_code == 200
    assert "1 pupil(s) found" in found.text
    assert "Example Council School Admissions" in found.text
    assert "400 days" in found.text  # the agreement's retention
    assert "Data held" in found.text
    log = access_log(home)
    assert (log[0]["what"], log[0]["outcome"], log[0]["result_count"]) == ("subject_access.name", "ok", 1)
    assert all(child["surname"] not in str(v) and child["dob"] not in str(v) for r in log for v in r.values())
    pdf = clara.post(
        "/subject-access",
        data={**{k: child[k] for k in ("surname", "forename", "dob")}, "method": "name_dob", "format": "pdf",
              "csrf_token": csrf_of(form.text)},
    )  # fmt: skip
    assert pdf.content.startswith(b"%PDF")
    wrong = clara.post(
        "/subject-access",
        data={"method": "name_dob", "surname": child["surname"], "forename": child["forename"],
              "dob": "not a date", "csrf_token": csrf_of(form.text)},
    )  # fmt: skip
    assert "date of birth is not a YYYY-MM-DD date" in wrong.text
    assert child["surname"] not in wrong.text.split("<form")[0]


def test_auditors_may_not_look_up_by_name(home: Home, as_user: UserClient, client: TestClient) -> None:
    child = _disclosed(home)
    audrey = as_user("audrey")
    form = audrey.get("/subject-access")
    assert 'id="by-name"' not in form.text
    refused = audrey.post(
        "/subject-access",
        data={
            "method": "name_dob",
            "csrf_token": csrf_of(form.text),
            **{k: child[k] for k in ("surname", "forename", "dob")},
        },
    )
    assert refused.status_code == 403
    assert access_log(home)[0]["outcome"] == "denied"
    engine = home.app.state.viewer.engine()
    body = {k: child[k] for k in ("surname", "forename", "dob")}
    auditor = {"Authorization": f"Bearer {auth.add_token(engine, 'audrey', 'api')}"}
    assert client.post("/api/v1/disclosures/search-by-name", json=body, headers=auditor).status_code == 403
    compliance = {"Authorization": f"Bearer {auth.add_token(engine, 'clara', 'api')}"}
    answer = client.post("/api/v1/disclosures/search-by-name", json=body, headers=compliance).json()
    (one,) = answer["pupils"]
    assert [s["share_id"] for s in one["shares"]] == [home.filled.shares[ALLOWED]]
    assert one["data"][0]["source"]["sha256"]
    bad = client.post(
        "/api/v1/disclosures/search-by-name", json={**body, "dob": "31/12/2015"}, headers=compliance
    )
    assert bad.status_code == 422
    assert "31/12/2015" not in bad.text


def test_article_30_page_has_activities_refusals_and_planned(home: Home, as_user: UserClient) -> None:
    page = as_user("audrey").get("/article-30")
    assert page.status_code == 200
    activities, rest = page.text.split('id="sec-refused"')
    refused, planned = rest.split('id="sec-planned"')
    assert ALLOWED in activities
    assert BLOCKED not in activities
    assert BLOCKED in refused
    assert ALLOWED not in planned
    assert "Data protection officer" in page.text
