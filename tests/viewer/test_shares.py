"""Share pages and API over a real delivered share and a real blocked attempt: register, CSV safety,
share trace and column view, subject access (POST only, roles, logging, PDF), Article 30."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from censustrace.compliance.documents import csv_cell
from censustrace.lineage.store.trace import trace_upstream
from censustrace.shares.register import find_share
from censustrace.viewer import auth
from censustrace.viewer.shares_views import UpnRejected, normalise_upn
from censustrace.warehouse.db import warehouse_engine
from censustrace.warehouse.tables import extracts
from tests.plugins.helpers.viewer import Home, access_log, csrf_of, disclosed_upn

from .pipeline import ALLOWED, BLOCKED

UserClient = Callable[[str], TestClient]


def test_register_lists_shares_and_blocked_attempts_with_filters(home: Home, as_user: UserClient) -> None:
    ed = as_user("ed")
    page = ed.get("/shares")
    assert home.filled.shares[ALLOWED] in page.text
    assert home.filled.shares[BLOCKED] in page.text
    assert "Example Council School Admissions" in page.text
    assert "LA330-IG-2026-04" in page.text
    blocked = ed.get("/shares", params={"status": "blocked"}).text
    assert home.filled.shares[BLOCKED] in blocked
    assert home.filled.shares[ALLOWED] not in blocked
    for text in ("<script>x</script>", "' OR 1=1 --", "%"):
        response = ed.get("/shares", params={"recipient": text, "q": text, "sort": text})
        assert response.status_code == 200
        assert "<script>x" not in response.text
        assert "No shares match" in response.text


def test_register_pages_count_every_match_and_cut_the_register_in_order(home: Home) -> None:
    from censustrace.viewer.shares_views import RegisterQuery, register, register_page

    everything = register(home.settings)
    newest_first = RegisterQuery("", "", "", "", "date", True)
    _, total = register_page(home.settings, newest_first, limit=1)
    assert total == len(everything)
    assert total >= 2
    pages = [register_page(home.settings, newest_first, limit=1, offset=n)[0] for n in range(total)]
    assert [page[0]["share_id"] for page in pages] == [row["share_id"] for row in everything]
    assert register_page(home.settings, newest_first, limit=1, offset=total) == ([], total)  # past the end
    blocked = RegisterQuery("blocked", "", "", "", "date", True)
    expected = [row["share_id"] for row in everything if row["status"] == "blocked"]
    found, matches = register_page(home.settings, blocked, limit=10)
    assert matches == len(expected)
    assert [row["share_id"] for row in found] == expected


def test_register_csv_is_safe_for_spreadsheets_and_logged(home: Home, as_user: UserClient) -> None:
    assert csv_cell("=HYPERLINK(1)") == "'=HYPERLINK(1)"
    assert csv_cell("-1") == "'-1"
    assert csv_cell("a=b") == "a=b"
    before = len(access_log(home))
    response = as_user("audrey").get("/shares.csv")
    assert response.status_code == 200
    assert "attachment" in response.headers["content-disposition"]
    rows = list(csv.reader(io.StringIO(response.text)))
    assert rows[0][:3] == ["Date", "Share", "Status"]
    assert len(rows) == 3
    assert all(not cell.startswith(("=", "+", "-", "@")) for row in rows for cell in row)
    log = access_log(home)
    assert len(log) == before + 1
    assert log[0]["what"] == "share_register.csv"
    assert log[0]["result_count"] == 2


def test_share_detail_traces_back_to_the_exact_files(home: Home, as_user: UserClient) -> None:
    share = find_share(home.settings, home.filled.shares[ALLOWED])
    page = as_user("ed").get(f"/shares/{share.share_id}")
    assert page.status_code == 200
    loaded = {o.sha256 for o in home.filled.loaded}
    with home.app.state.viewer.engine().connect() as conn:
        traced = trace_upstream(conn, "file", str(share.file_path), str(share.sha256)).sources
    behind = {source.version for source in traced}
    assert behind
    assert behind <= loaded
    with warehouse_engine(home.settings.warehouse_db_url).connect() as conn:
        schools = set(conn.execute(select(extracts.c.laestab).where(extracts.c.sha256.in_(behind))).scalars())
    assert len(schools) == len(behind)
    # The graph: one grouped node for the received files, laid out by Graphviz twice (wide, narrow).
    wide = page.text[page.text.index('class="graph graph-wide"') : page.text.index("</svg>")]
    words = " ".join(re.sub(r"<[^>]+>", " ", wide).split())
    assert f"{len(behind)} census files from {len(schools)} schools" in words
    assert wide.count('class="node gnode gnode&#45;source"') == 1
    assert 'class="graph graph-narrow"' in page.text
    for heading in ("Received files", "Extracts", "Warehouse tables", "Share file"):
        assert heading in wide
    # The table lists exactly the received files behind it.
    table = page.text[page.text.index('<table class="sources"') :]
    table = table[: table.index("</table>")]
    assert {sha for sha in loaded if sha in table} == behind
    assert "postcode" in page.text
    assert "pupil_address.postcode" in page.text
    assert "Fields sent and how" in page.text
    # Expanded by school: one node per school, edges kept.
    by_school = as_user("ed").get(f"/shares/{share.share_id}?by=school").text
    wide = by_school[by_school.index('class="graph graph-wide"') : by_school.index("</svg>")]
    assert wide.count('class="node gnode gnode&#45;source"') == len(schools)
    for school in schools:
        assert f"School {school}" in " ".join(re.sub(r"<[^>]+>", " ", wide).split())
    blocked = as_user("ed").get(f"/shares/{home.filled.shares[BLOCKED]}")
    assert "Blocked: nothing was sent." in blocked.text
    assert "Why it was not sent" in blocked.text
    assert "What would have been sent" in blocked.text
    assert "Fields sent and how" not in blocked.text
    assert "<svg" not in blocked.text
    assert as_user("ed").get("/shares/no-such-share").status_code == 404


def test_normalise_upn() -> None:
    assert normalise_upn(" b801 2000 05001 ") == "B801200005001"
    for bad in ("", "Q207000016049", "B80120000500", "<script>"):
        with pytest.raises(UpnRejected) as rejected:
            normalise_upn(bad)
        assert bad.strip() == "" or bad not in rejected.value.message


def test_subject_access_by_post_only_logged_without_the_upn(home: Home, as_user: UserClient) -> None:
    upn = disclosed_upn(home)
    clara = as_user("clara")
    form = clara.get("/subject-access")
    typed = " " + upn.lower()[:5] + " " + upn.lower()[5:] + " "
    result = clara.post(
        "/subject-access", data={"upn": typed, "csrf_token": csrf_of(form.text), "format": "html"}
    )
    assert result.status_code == 200
    assert "1 share(s) included this pupil" in result.text
    assert "Example Council School Admissions" in result.text
    assert result.headers["cache-control"] == "no-store"
    assert clara.post("/subject-access", data={"upn": upn}).status_code == 403  # no CSRF token
    bad = clara.post("/subject-access", data={"upn": upn[:-1] + "X!", "csrf_token": csrf_of(form.text)})
    assert "not a valid UPN" in bad.text
    assert upn[:-1] not in bad.text
    log = access_log(home)
    assert [r["outcome"] for r in log[:2]] == ["rejected", "ok"]
    assert log[1]["result_count"] == 1
    assert log[1]["action"] == "subject_access"
    assert all(upn not in str(value) for row in log for value in row.values())


def test_engineers_are_refused_subject_access_and_it_is_logged(home: Home, as_user: UserClient) -> None:
    ed = as_user("ed")
    assert ed.get("/subject-access").status_code == 403
    token = auth.add_token(home.app.state.viewer.engine(), "ed", "api")
    api = ed.post(
        "/api/v1/disclosures/search",
        json={"upn": disclosed_upn(home)},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert api.status_code == 403
    log = [r for r in access_log(home) if r["action"] == "subject_access"]
    assert [(r["user_name"], r["outcome"], r["via"]) for r in log[:2]] == [
        ("ed", "denied", "token"),
        ("ed", "denied", "session"),
    ]


def test_auditors_look_up_but_do_not_download_pupil_data(home: Home, as_user: UserClient) -> None:
    audrey = as_user("audrey")
    token = csrf_of(audrey.get("/subject-access").text)
    upn = disclosed_upn(home)
    assert "1 share(s)" in audrey.post("/subject-access", data={"upn": upn, "csrf_token": token}).text
    assert (
        audrey.post("/subject-access", data={"upn": upn, "csrf_token": token, "format": "pdf"}).status_code
        == 403
    )
    assert access_log(home)[0]["outcome"] == "denied"


def test_subject_access_pdf_for_compliance(home: Home, as_user: UserClient) -> None:
    clara = as_user("clara")
    token = csrf_of(clara.get("/subject-access").text)
    upn = disclosed_upn(home)
    response = clara.post("/subject-access", data={"upn": upn, "csrf_token": token, "format": "pdf"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/pdf"
    assert response.content.startswith(b"%PDF")
    assert upn.encode() not in response.content
    assert access_log(home)[0]["what"] == "subject_access.pdf"


def test_share_api(home: Home, client: TestClient) -> None:
    token = auth.add_token(home.app.state.viewer.engine(), "clara", "api")
    headers = {"Authorization": f"Bearer {token}"}
    listed = client.get("/api/v1/shares", headers=headers).json()
    assert {s["share_id"] for s in listed["shares"]} == set(home.filled.shares.values())
    share_id = home.filled.shares[ALLOWED]
    one = client.get(f"/api/v1/shares/{share_id}", headers=headers).json()
    assert one["status"] == "delivered"
    assert one["recipient"] == "Example Council School Admissions"
    trace = client.get(f"/api/v1/shares/{share_id}/trace", headers=headers).json()
    assert {s["sha256"] for s in trace["sources"]} <= {o.sha256 for o in home.filled.loaded}
    assert client.get("/api/v1/shares/nope", headers=headers).status_code == 404
    found = client.post(
        "/api/v1/disclosures/search", json={"upn": disclosed_upn(home)}, headers=headers
    ).json()
    assert [s["share_id"] for s in found["shares"]] == [share_id]
    rejected = client.post("/api/v1/disclosures/search", json={"upn": "not a upn"}, headers=headers)
    assert rejected.status_code == 422
    assert "not a upn" not in rejected.text


def test_article_30_record(home: Home, as_user: UserClient) -> None:
    clara = as_user("clara")
    page = clara.get("/article-30")
    assert page.status_code == 200
    assert ALLOWED in page.text
    assert BLOCKED in page.text
    rows = list(csv.DictReader(io.StringIO(clara.get("/article-30.csv").text)))
    admissions = next(r for r in rows if r["agreement"] == ALLOWED)
    assert (admissions["section"], admissions["shares"]) == ("activities", "1")
    assert admissions["lawful_basis"] == "public_task"
    assert [r["section"] for r in rows if r["agreement"] == BLOCKED] == ["refused"]
    assert clara.get("/article-30.pdf").content.startswith(b"%PDF")
    assert [r["what"] for r in access_log(home)[:2]] == ["article30.pdf", "article30.csv"]


def test_trace_anything_held_from_the_api_and_the_search(
    home: Home, as_user: UserClient, client: TestClient
) -> None:
    """A share id, the outbound file's name, an extract id or a sha256: the API traces it both ways and the
    search page links its trace; an unknown one is a 404 with the stable code."""
    token = auth.add_token(home.app.state.viewer.engine(), "clara", "api")
    headers = {"Authorization": f"Bearer {token}"}
    share = find_share(home.settings, home.filled.shares[ALLOWED])
    loaded = {o.sha256 for o in home.filled.loaded}
    for held in (share.share_id, str(share.file_path).rsplit("/", 1)[-1]):
        found = client.get("/api/v1/trace/find", params={"q": held}, headers=headers)
        assert found.status_code == 200, found.text
        body = found.json()
        assert {s["sha256"] for s in body["sources"]} <= loaded
        assert [c["share_id"] for c in body["consumers"]] == [share.share_id]
    used = set(share.source_extracts or ())
    extract = next(o for o in home.filled.loaded if o.extract_id in used)
    by_extract = client.get("/api/v1/trace/find", params={"q": extract.extract_id}, headers=headers).json()
    assert {s["sha256"] for s in by_extract["sources"]} == {extract.sha256}
    assert share.share_id in {c["share_id"] for c in by_extract["consumers"]}
    missing = client.get("/api/v1/trace/find", params={"q": "shr_nothing"}, headers=headers)
    assert missing.status_code == 404
    assert missing.json()["code"] == "CT-LINEAGE-NOT-FOUND"
    assert client.get("/api/v1/trace/find", params={"q": share.share_id}).status_code == 401

    page = as_user("ed").get("/search", params={"q": share.share_id})
    assert page.status_code == 200
    assert "trace-link" in page.text
    assert f"is share {share.share_id}" in page.text
    sha_page = as_user("ed").get("/search", params={"q": extract.sha256})
    assert "is sha256" in sha_page.text
