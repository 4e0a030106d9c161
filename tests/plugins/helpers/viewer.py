"""Viewer helpers: the test users, their password, logging in, and what the tests look up in the filled
home (fixtures ``home``, ``client``, ``as_user``, ``server`` in tests/viewer/conftest.py)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import httpx
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import and_, select

from censustrace.config import Settings
from censustrace.shares.tables import disclosures
from censustrace.viewer import auth
from censustrace.warehouse.db import warehouse_engine
from censustrace.warehouse.tables import pupil
from tests.viewer.pipeline import ALLOWED, Filled

PASSWORD = "a long test password 1"
USERS = {"clara": "compliance", "ed": "engineer", "audrey": "auditor"}
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')

ARTIFACTS = Path(__file__).resolve().parents[3] / "test-artifacts" / "viewer"


@dataclass
class Home:
    settings: Settings
    filled: Filled
    app: FastAPI


@dataclass
class Server:
    url: str
    home: Home


def csrf_of(html: str) -> str:
    found = CSRF.search(html)
    assert found, "no CSRF token in the page"
    return found.group(1)


def log_in(client: TestClient | httpx.Client, name: str, password: str = PASSWORD) -> httpx.Response:
    page = client.get("/login")
    return client.post(
        "/login",
        data={"username": name, "password": password, "csrf_token": csrf_of(page.text), "next": "/"},
        follow_redirects=False,
    )


def loaded_pupil_table(home: Home) -> tuple[str, str, str, str]:
    """(namespace, name, version, sha256) of a published ``pupil`` dataset version and its file."""
    outcome = home.filled.loaded[0]
    publish = dict(outcome.steps)["publish"]
    pupil = next(o for o in publish.outputs if o.name.endswith(".pupil"))
    return pupil.namespace, pupil.name, str(outcome.extract_id), outcome.sha256


def disclosed_upn(home: Home) -> str:
    """The UPN of a pupil included in the delivered share (read from the warehouse, as a family would
    give it)."""
    engine = warehouse_engine(home.settings.warehouse_db_url)
    with engine.connect() as conn:
        upn = conn.execute(
            select(pupil.c.upn)
            .join(
                disclosures,
                and_(
                    disclosures.c.extract_id == pupil.c.extract_id,
                    disclosures.c.record_number == pupil.c.record_number,
                ),
            )
            .where(disclosures.c.share_id == home.filled.shares[ALLOWED])
            .limit(1)
        ).scalar_one()
    return str(upn)


def access_log(home: Home) -> list[dict[str, object]]:
    rows, _ = auth.read_access_log(home.app.state.viewer.engine(), limit=1000)
    return rows
