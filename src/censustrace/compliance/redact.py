"""Redacting the bytes of one received or released file: the items of some fields blanked, everything
else kept, so the redacted copy still parses and still says whose census it was.

School Census and CTF XML: the elements that carry a field are emptied wherever they are. LA CSV tables
and share files: the cells of the field's columns are emptied. A file that cannot be read item by item
(not well-formed, a DOCTYPE, not UTF-8, or a field with no known place) is withheld whole: the redacted
copy is a short JSON note naming the original sha256, the rule and the fields.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from typing import Final

from lxml import etree

from censustrace.census.formats.la_csv import ADDRESS_COLUMNS, POSTCODE_COLUMN, UPRN_COLUMN
from censustrace.census.model import ADDRESS_ITEMS

#: XML element local names that carry each redactable field (School Census and CTF alike).
XML_ELEMENTS: Final[dict[str, tuple[str, ...]]] = {
    "address_lines": ADDRESS_ITEMS,
    "postcode": ("PostCode",),
    "uprn": ("UniquePropertyReferenceNumber",),
    "nationality": ("Nationality",),
    "country_of_birth": ("CountryOfBirth",),
}
#: LA CSV column names that carry each redactable field.
CSV_COLUMNS: Final[dict[str, tuple[str, ...]]] = {
    "address_lines": ADDRESS_COLUMNS,
    "postcode": (POSTCODE_COLUMN,),
    "uprn": (UPRN_COLUMN,),
    "nationality": ("nationality",),
    "country_of_birth": ("countryofbirth",),
}


@dataclass(frozen=True, slots=True)
class Redacted:
    data: bytes
    values: int  # values blanked (0 for a whole-file note)
    whole_file: bool


def withheld(original_sha256: str, rule: str, fields: list[str], as_of: str) -> Redacted:
    """The note that stands for a file withheld whole."""
    note = {
        "censustrace": "content erased",
        "original_sha256": original_sha256,
        "rule": rule,
        "fields": sorted(fields),
        "as_of": as_of,
    }
    return Redacted((json.dumps(note, sort_keys=True, indent=2) + "\n").encode(), 0, True)


def redact_xml(data: bytes, fields: list[str]) -> Redacted | None:
    """``data`` with the fields' elements emptied; None if it cannot be read item by item."""
    names = {name for f in fields for name in XML_ELEMENTS.get(f, ())}
    if not names or any(f not in XML_ELEMENTS for f in fields) or b"<!DOCTYPE" in data[:4096]:
        return None
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)
    try:
        root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError:
        return None
    blanked = 0
    for element in root.iter():
        if isinstance(element.tag, str) and etree.QName(element).localname in names:
            if (element.text or "").strip() or len(element):
                blanked += 1
            for child in list(element):
                element.remove(child)
            element.text = None
    tree = root.getroottree()
    encoding = tree.docinfo.encoding or "UTF-8"
    out = etree.tostring(tree, xml_declaration=True, encoding=encoding)
    return Redacted(out, blanked, False)


def redact_csv(
    data: bytes, fields: list[str], columns: dict[str, tuple[str, ...]] | None = None
) -> Redacted | None:
    """``data`` with the fields' columns emptied (header kept); None if it is not a UTF-8 CSV or a field
    has no known column. ``columns``: field -> column names (default: the LA CSV names)."""
    mapping = CSV_COLUMNS if columns is None else columns
    if any(f not in mapping for f in fields):
        return None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return None
    rows = list(csv.reader(io.StringIO(text, newline="")))
    if not rows:
        return Redacted(data, 0, False)
    header = [cell.strip().lower() for cell in rows[0]]
    wanted = {name for f in fields for name in mapping[f]}
    positions = [i for i, name in enumerate(header) if name in wanted]
    blanked = 0
    for row in rows[1:]:
        for i in positions:
            if i < len(row) and row[i] != "":
                row[i] = ""
                blanked += 1
    out = io.StringIO(newline="")
    terminator = "\r\n" if "\r\n" in text else "\n"
    csv.writer(out, lineterminator=terminator).writerows(rows)
    return Redacted(out.getvalue().encode("utf-8"), blanked, False)


def redact(data: bytes, fields: list[str]) -> Redacted | None:
    """By content: XML if it starts like XML, else CSV."""
    head = data[:64].lstrip(b"\xef\xbb\xbf \t\r\n")
    return redact_xml(data, fields) if head.startswith(b"<") else redact_csv(data, fields)


__all__ = ["CSV_COLUMNS", "XML_ELEMENTS", "Redacted", "redact", "redact_csv", "redact_xml", "withheld"]
