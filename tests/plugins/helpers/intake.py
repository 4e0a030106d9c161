"""Intake helpers: one school's census file, and the bad XML inputs every ingest path must quarantine."""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.plugins.helpers.warehouse import generated


def one_school(tmp_path_factory: pytest.TempPathFactory, fmt: str = "xml", pupils: int = 12) -> Path:
    """The census file of one generated school (made once per session)."""
    folder, manifest = generated(tmp_path_factory, schools=1, pupils_per_school=pupils, fmt=fmt, seed=5)
    return folder / str(manifest["files"][0]["file"])


Mutation = Callable[[bytes], bytes]
BILLION_LAUGHS = (
    b'<?xml version="1.0"?>\n<!DOCTYPE Message [<!ENTITY a "ha"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">'
    b'<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">]>\n<Message><Header>&c;</Header></Message>\n'
)
EXTERNAL_ENTITY = (
    b'<?xml version="1.0"?>\n<!DOCTYPE Message [<!ENTITY x SYSTEM "file:///etc/passwd">]>\n'
    b"<Message><Header><CollectionDetails><Term>&x;</Term></CollectionDetails></Header></Message>\n"
)


def _strip_pupils(data: bytes) -> bytes:
    return re.sub(rb"<PupilOnRoll>.*</PupilOnRoll>", b"", data, flags=re.DOTALL)


def _wrong_encoding(data: bytes) -> bytes:
    return re.sub(rb"<Forename>[^<]*</Forename>", "<Forename>Zoë</Forename>".encode("cp1252"), data, count=1)


def _header_la(data: bytes) -> bytes:
    return data.replace(b"<LEA>330</LEA>", b"<LEA>999</LEA>", 1)


BAD_XML: dict[str, tuple[str, Mutation, str]] = {
    "empty": ("SC_330_4000_AUT_2026.xml", lambda d: b"", "CT-PARSE-TRUNCATED"),
    "zero_pupils": ("SC_330_4000_AUT_2026.xml", _strip_pupils, "CT-INGEST-NO-PUPILS"),
    "truncated": ("SC_330_4000_AUT_2026.xml", lambda d: d[: len(d) * 6 // 10], "CT-PARSE-TRUNCATED"),
    "malformed": (
        "SC_330_4000_AUT_2026.xml",
        lambda d: d.replace(b"</Surname>", b"</Surnam>", 3),
        "CT-PARSE-MALFORMED",
    ),
    "billion_laughs": ("bomb.xml", lambda d: BILLION_LAUGHS, "CT-PARSE-FORBIDDEN"),
    "external_entity": ("xxe.xml", lambda d: EXTERNAL_ENTITY, "CT-PARSE-FORBIDDEN"),
    "external_dtd": (
        "dtd.xml",
        lambda d: d.replace(b"?>", b'?>\n<!DOCTYPE Message SYSTEM "http://example.invalid/c.dtd">', 1),
        "CT-PARSE-FORBIDDEN",
    ),
    "wrong_encoding": ("SC_330_4000_AUT_2026.xml", _wrong_encoding, "CT-PARSE-ENCODING"),
    # Not named by the convention: the header alone says which school (its LA is none of the UPNs').
    "header_mismatch": ("upload.xml", _header_la, "CT-INGEST-HEADER-MISMATCH"),
    "unknown_root": (
        "SC_330_4000_AUT_2026.xml",
        lambda d: b'<?xml version="1.0"?>\n<Census><Header/></Census>\n',
        "CT-PARSE-LAYOUT",
    ),
    "binary_garbage": (
        "SC_330_4000_AUT_2026.xml",
        lambda d: b"\x89PNG\r\n\x1a\n" + random.Random(1).randbytes(4000),
        "CT-PARSE-LAYOUT",
    ),
    "odd_name": ("my census ü ..\\..\\ x.xml", lambda d: d[:100], "CT-PARSE-TRUNCATED"),
    "dotdot_name": ("..evil..name.xml", lambda d: b"", "CT-PARSE-TRUNCATED"),
}
