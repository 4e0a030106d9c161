"""A tiny census checker, written independently of the generator, to hold it to its manifest.

It re-parses generated files with lxml / csv, re-implements the UPN and ULN checks from the domain
brief (not importing censustrace.census.identifiers), and reports defects in the manifest's own
terms: ``(file, location, fault)``. ``realism_problems`` checks what clean data must look like.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lxml import etree

from censustrace.census import codes

TABLE = "ABCDEFGHJKLMNPQRTUVWXYZ"
POSTCODE = re.compile(r"[A-PR-UWYZ][A-HK-Y]?[0-9][A-Z0-9]? [0-9][ABD-HJLNP-UW-Z]{2}")
MONTHS = {
    m: n
    for n, m in enumerate(
        ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"], start=1
    )
}
CODE_SETS = {
    "ethnicity": codes.ETHNICITY,
    "language": codes.LANGUAGE,
    "sex": codes.SEX,
    "enrol_status": codes.ENROL_STATUS,
    "sen_provision": codes.SEN_PROVISION,
    "service_child": codes.SERVICE_CHILD,
}
MANDATORY = ("surname", "forename", "dob", "sex", "enrol_status", "nc_year")


def upn_ok(upn: str) -> bool:
    if not re.fullmatch(r"[A-Z][0-9]{11}[0-9A-Z]", upn) or upn[0] not in TABLE:
        return False
    if upn[12].isalpha() and upn[12] not in TABLE:
        return False
    values = [int(c) if c.isdigit() else TABLE.index(c) for c in upn[1:]]
    return TABLE[sum(w * v for w, v in zip(range(2, 14), values, strict=True)) % 23] == upn[0]


def uln_ok(uln: str) -> bool:
    return (
        bool(re.fullmatch(r"[1-9][0-9]{9}", uln))
        and sum(w * int(c) for w, c in zip(range(10, 0, -1), uln, strict=True)) % 11 == 10
    )


def parse_date(text: str | None) -> dt.date | None:
    """ISO ``2020-04-25`` or the export style ``2020-Apr-25 00:00:00``; raises ValueError otherwise."""
    if text is None:
        return None
    m = re.fullmatch(r"([0-9]{4})-([A-Z][a-z]{2})-([0-9]{2}) 00:00:00", text)
    if m:
        return dt.date(int(m[1]), MONTHS[m[2]], int(m[3]))
    if not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", text):
        raise ValueError("not a date")
    return dt.date.fromisoformat(text)


@dataclass
class Row:
    """One pupil as read back: values by PupilRecord field name, plus where its address sits."""

    file: str
    index: int
    values: dict[str, Any]
    address_site: tuple[str, dict[str, Any]] | None = None
    fsm: list[tuple[str | None, str | None]] = field(default_factory=list)

    def location(self, name: str) -> tuple[str, dict[str, Any]]:
        if name == "postcode" and self.address_site is not None:
            return self.address_site
        if self.file.endswith(".csv"):
            return self.file, {"table": "pupilonroll", "row": self.index, "field": name}
        return self.file, {"pupil_index": self.index, "field": name}


def _t(el: etree._Element, path: str) -> str | None:
    found = el.find(path)
    return None if found is None or not found.text else str(found.text)


def read_xml(path: Path) -> Iterator[Row]:
    root = etree.parse(str(path)).getroot()
    if root.tag == "Message":
        for n, p in enumerate(root.iterfind("Pupils/PupilOnRoll"), start=1):
            ids, ch, st = "PupilIdentifiers/", "PupilCharacteristics/", "PupilStatus/"
            yield Row(
                path.name,
                n,
                {
                    "upn": _t(p, ids + "UPN"),
                    "former_upn": _t(p, ids + "FormerUPN"),
                    "uln": _t(p, ids + "UniqueLearnerNumber"),
                    "surname": _t(p, ids + "Surname"),
                    "forename": _t(p, ids + "Forename"),
                    "dob": _t(p, ids + "DOB"),
                    "sex": _t(p, ids + "Sex"),
                    "ethnicity": _t(p, ch + "Ethnicity"),
                    "language": _t(p, ch + "Language"),
                    "service_child": _t(p, ch + "ServiceChild"),
                    "nationality": [str(e.text) for e in p.iterfind(ch + "Nationalities/Nationality")],
                    "country_of_birth": _t(p, ch + "CountryOfBirth"),
                    "entry_date": _t(p, st + "EntryDate"),
                    "enrol_status": _t(p, st + "EnrolStatus"),
                    "nc_year": _t(p, st + "NCyearActual"),
                    "yssa": _t(p, st + "YSSA"),
                    "sen_provision": _t(p, "SpecialEducationalNeeds/SENprovision"),
                    "postcode": _t(p, "HomeInformation/Address/BS7666Address/PostCode"),
                },
                fsm=[
                    (_t(f, "FSMstartDate"), _t(f, "FSMendDate")) for f in p.iterfind("FSMperiods/FSMperiod")
                ],
            )
    else:
        assert root.tag == "CTfile"
        for n, p in enumerate(root.iterfind("CTFpupilData/Pupil"), start=1):
            bd = "BasicDetails/"
            yield Row(
                path.name,
                n,
                {
                    "upn": _t(p, "UPN"),
                    "former_upn": _t(p, bd + "FormerUPN"),
                    "uln": _t(p, "UniqueLearnerNumber"),
                    "surname": _t(p, "Surname"),
                    "forename": _t(p, "Forename"),
                    "dob": _t(p, "DOB"),
                    "sex": _t(p, "Gender"),
                    "ethnicity": _t(p, bd + "Ethnicity"),
                    "language": _t(p, bd + "Languages/Type/Language"),
                    "service_child": _t(p, bd + "ServiceChild"),
                    "nationality": [str(e.text) for e in p.iterfind(bd + "Nationalities/Nationality")],
                    "country_of_birth": _t(p, bd + "CountryOfBirth"),
                    "entry_date": _t(p, "SchoolHistory/School/EntryDate"),
                    "enrol_status": _t(p, bd + "EnrolStatus"),
                    "nc_year": _t(p, bd + "NCyearActual"),
                    "yssa": None,
                    "sen_provision": _t(p, "SENhistory/SEN/SENprovision"),
                    "postcode": _t(p, "Address/BS7666Address/PostCode"),
                },
                fsm=[
                    (_t(f, "FSMstartDate"), _t(f, "FSMendDate")) for f in p.iterfind("FSMhistory/FSMinstance")
                ],
            )


def _csv_rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def read_csv_school(pupilonroll: Path) -> Iterator[Row]:
    addresses_name = pupilonroll.name.replace("pupilonroll", "addressesonroll")
    addresses = _csv_rows(pupilonroll.with_name(addresses_name))
    fsm: dict[str, list[tuple[str | None, str | None]]] = {}
    for r in _csv_rows(pupilonroll.with_name(pupilonroll.name.replace("pupilonroll", "fsmperiod"))):
        fsm.setdefault(r["upn"], []).append((r["fsmstartdate"] or None, r["fsmenddate"] or None))
    columns = {
        "upn": "upn",
        "former_upn": "formerupn",
        "uln": "uniquelearnernumber",
        "surname": "surname",
        "forename": "forename",
        "dob": "dob",
        "sex": "sex",
        "ethnicity": "ethnicity",
        "language": "language",
        "service_child": "servicechild",
        "country_of_birth": "countryofbirth",
        "entry_date": "entrydate",
        "enrol_status": "enrolstatus",
        "nc_year": "ncyearactual",
        "yssa": "yssa",
        "sen_provision": "senprovision",
    }
    # One address row per pupil, in the same order (the generator gives every pupil an address).
    rows = _csv_rows(pupilonroll)
    assert len(addresses) == len(rows)
    for n, (r, a) in enumerate(zip(rows, addresses, strict=True), start=1):
        assert a["upn"] == r["upn"]
        values: dict[str, Any] = {name: (r.get(col) or None) for name, col in columns.items()}
        values["nationality"] = [v for v in (r.get("nationality") or "").split(";") if v]
        values["postcode"] = a["postcode"] or None
        yield Row(
            pupilonroll.name,
            n,
            values,
            address_site=(addresses_name, {"table": "addressesonroll", "row": n, "field": "postcode"}),
            fsm=fsm.get(r["upn"] or "", []),
        )


def read_census_file(path: Path) -> list[Row]:
    return list(read_csv_school(path) if path.suffix == ".csv" else read_xml(path))


def defects(rows: list[Row], reference_date: dt.date) -> list[tuple[str, str, str]]:
    """Every row-level defect as ``(file, json(location), fault)``."""
    found: list[tuple[str, str, str]] = []
    seen: set[str] = set()

    def add(name: str, fault: str) -> None:
        file, location = row.location(name)
        found.append((file, json.dumps(location, sort_keys=True), fault))

    for row in rows:
        v = row.values
        upn = v["upn"]
        if upn is None or not upn_ok(upn):
            add("upn", "upn_check_letter")
        elif upn in seen:
            add("upn", "duplicate_upn")
        else:
            seen.add(upn)
        for name in MANDATORY:
            if v[name] is None:
                add(name, "missing_mandatory")
        if v["dob"] is not None:
            try:
                dob = parse_date(v["dob"])
                assert dob is not None
                impossible = dob > reference_date or dob < reference_date.replace(
                    year=reference_date.year - 25
                )
            except ValueError:
                impossible = True
            if impossible:
                add("dob", "impossible_dob")
        for name, allowed in CODE_SETS.items():
            if v[name] is not None and v[name] not in allowed:
                add(name, "unknown_code")
        if v["postcode"] is not None and not POSTCODE.fullmatch(v["postcode"]):
            add("postcode", "bad_postcode")
    return found


def realism_problems(rows: list[Row], term: str, year: int, reference_date: dt.date) -> list[str]:
    """What clean generated data must satisfy; problems are described by file and row only."""
    problems = []
    ay = year if term == "AUT" else year - 1
    if reference_date < dt.date(2015, 1, 1):
        sen_codes = {"N", "A", "P", "S"}
    elif reference_date < dt.date(2018, 9, 1):
        sen_codes = {"N", "K", "E", "S"}
    else:
        sen_codes = {"N", "K", "E"}
    legacy = (term, year) in {
        ("AUT", 2016),
        ("SPR", 2017),
        ("SUM", 2017),
        ("AUT", 2017),
        ("SPR", 2018),
        ("SUM", 2018),
    }
    for row in rows:
        v, where = row.values, f"{row.file} row {row.index}"
        nc = v["nc_year"]
        dob = parse_date(v["dob"])
        assert dob is not None
        age = ay - dob.year - (1 if (dob.month, dob.day) > (8, 31) else 0)  # age on 31 August
        if codes.NC_YEAR_AGE.get(nc) != age:
            problems.append(f"{where}: DOB does not fit NC year")
        if v["former_upn"] is not None and not (upn_ok(v["former_upn"]) and v["former_upn"][12].isalpha()):
            problems.append(f"{where}: FormerUPN is not a valid temporary UPN")
        if v["uln"] is not None and not (uln_ok(v["uln"]) and nc.isdigit() and int(nc) >= 10):
            problems.append(f"{where}: bad ULN or ULN below NC year 10")
        entry = parse_date(v["entry_date"])
        if entry is None or not dob < entry <= reference_date:
            problems.append(f"{where}: entry date out of range")
        if bool(v["nationality"]) != legacy or (v["country_of_birth"] is not None) != legacy:
            problems.append(f"{where}: nationality outside (or missing inside) the legacy window")
        if any(c not in codes.NATIONALITY for c in v["nationality"]):
            problems.append(f"{where}: unknown nationality code")
        if v["country_of_birth"] is not None and v["country_of_birth"] not in codes.COUNTRY_OF_BIRTH:
            problems.append(f"{where}: unknown country of birth")
        if v["yssa"] is not None and (v["yssa"] not in codes.YSSA or not nc.isdigit() or int(nc) < 9):
            problems.append(f"{where}: YSSA for a pupil under NC year 9 or unknown code")
        for start_text, end_text in row.fsm:
            start, end = parse_date(start_text), parse_date(end_text)
            if start is None or start > reference_date or start < dob:
                problems.append(f"{where}: FSM start out of range")
            if end is not None and start is not None and not start <= end <= reference_date:
                problems.append(f"{where}: FSM end out of range")
        if v["sen_provision"] not in sen_codes:
            problems.append(f"{where}: SEN provision from the wrong era")
    return problems


def read_text_strictly(path: Path) -> str:
    """The file as UTF-8, raising UnicodeDecodeError for wrongly encoded bytes."""
    return io.TextIOWrapper(io.BytesIO(path.read_bytes()), encoding="utf-8", errors="strict").read()
