"""Find pupil identifiers where they must never be: lineage events, logs, error messages, URLs.

Identifiers are read straight from the generated files (independently of our parsers): UPN, ULN,
names, date of birth, address lines and postcode.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from lxml import etree

XML_ITEMS = {
    "UPN", "FormerUPN", "UniqueLearnerNumber", "Surname", "Forename", "MiddleNames", "PreferredSurname",
    "FormerSurname", "DOB", "SAON", "PAON", "Street", "PostCode", "UniquePropertyReferenceNumber",
}  # fmt: skip
CSV_COLUMNS = {
    "upn", "formerupn", "uniquelearnernumber", "surname", "forename", "middlenames", "preferredsurname",
    "formersurname", "dob", "saon", "paon", "street", "postcode", "uniquepropertyreferencenumber",
}  # fmt: skip
# Short values (a house number "12") would match anything; they identify no one on their own.
MIN_LENGTH = 5


def identifiers_in(paths: Iterable[Path]) -> set[str]:
    found: set[str] = set()
    for path in paths:
        if path.suffix.lower() == ".xml":
            parser = etree.XMLParser(recover=True, resolve_entities=False, no_network=True)
            try:
                root = etree.parse(str(path), parser).getroot()
            except etree.XMLSyntaxError:
                continue
            if root is None:
                continue
            for el in root.iter():
                if isinstance(el.tag, str) and etree.QName(el).localname in XML_ITEMS and el.text:
                    found.add(el.text.strip())
        elif path.suffix.lower() == ".csv":
            with path.open(encoding="utf-8", errors="replace", newline="") as fh:
                for row in csv.DictReader(fh):
                    found.update(v.strip() for k, v in row.items() if k and k.lower() in CSV_COLUMNS and v)
    return {v for v in found if len(v) >= MIN_LENGTH}


def _strings(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield str(k)
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


def leaks(documents: Iterable[Any], identifiers: set[str]) -> list[str]:
    """Identifiers found in any string (or key) of the documents; text documents are scanned whole."""
    hits = set()
    for doc in documents:
        texts = [doc] if isinstance(doc, str) else list(_strings(doc))
        for text in texts:
            hits.update(i for i in identifiers if i in text)
    return sorted(hits)


def test_leaks_finds_an_identifier_anywhere(tmp_path: Path) -> None:
    (tmp_path / "a.xml").write_text("<M><UPN>A123456789012</UPN><Surname>Testington</Surname></M>")
    ids = identifiers_in([tmp_path / "a.xml"])
    assert ids == {"A123456789012", "Testington"}
    assert leaks([{"run": {"facets": {"x": ["name Testington here"]}}}], ids) == ["Testington"]
    assert leaks([json.dumps({"ok": "nothing"})], ids) == []
