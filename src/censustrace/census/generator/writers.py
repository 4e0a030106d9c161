"""Streaming writers: School Census XML, CTF XML and the LA warehouse CSV tables, one school at a time.

Each pupil is written as soon as it is made; nothing but counters is kept per file. XML is written as
text (not through a tree) so that a whole-file fault can be placed exactly. Layouts follow the domain
brief; items the brief leaves open are described in ``docs/data-model.md``.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
from abc import ABC, abstractmethod
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

from censustrace.census.generator.faults import MALFORMED_XML, TRUNCATED, WRONG_ENCODING
from censustrace.census.generator.names import NON_ASCII_FORENAME
from censustrace.census.generator.pupils import Census, School
from censustrace.census.model import ADDRESS_ITEMS, PupilRecord

Overrides = Mapping[str, str | None]
_NO_OVERRIDES: Overrides = {}
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
# How far into a file a ``truncated`` fault cuts it.
_TRUNCATE_AT = 0.6
SOFTWARE_CODE = "CENSUSTRACE-GEN"


def _export_datetime(day: dt.date | None) -> str | None:
    """The LA export's date style: ``2020-Apr-25 00:00:00``."""
    if day is None:
        return None
    return f"{day.year:04d}-{_MONTHS[day.month - 1]}-{day.day:02d} 00:00:00"


def _iso(day: dt.date | None) -> str | None:
    return None if day is None else day.isoformat()


def _flag(value: bool | None, true: str, false: str) -> str | None:
    return None if value is None else (true if value else false)


def _texts(p: PupilRecord, *, true: str, false: str, export_dates: bool) -> dict[str, str | None]:
    """The single-valued items of a pupil as written text, keyed by PupilRecord field name."""
    return {
        "upn": p.upn,
        "former_upn": p.former_upn,
        "uln": p.uln,
        "surname": p.surname,
        "forename": p.forename,
        "middle_names": p.middle_names,
        "preferred_surname": p.preferred_surname,
        "former_surname": p.former_surname,
        "dob": _iso(p.dob),
        "sex": p.sex,
        "ethnicity": p.ethnicity,
        "language": p.language,
        "service_child": p.service_child,
        "country_of_birth": p.country_of_birth,
        "entry_date": _export_datetime(p.entry_date) if export_dates else _iso(p.entry_date),
        "enrol_status": p.enrol_status,
        "nc_year": p.nc_year,
        "boarder": _flag(p.boarder, true, false),
        "part_time": _flag(p.part_time, true, false),
        "yssa": p.yssa,
        "top_up_funding": _flag(p.top_up_funding, true, false),
        "sen_provision": p.sen_provision,
        "postcode": p.postcode,
        "uprn": p.uprn,
    }


def _x(value: str) -> str:
    if "&" in value or "<" in value or ">" in value:
        return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return value


def _el(lines: list[str], indent: str, tag: str, value: str | None) -> None:
    """Append ``<tag>value</tag>``; an absent or empty value writes no element at all."""
    if value:
        lines.append(f"{indent}<{tag}>{_x(value)}</{tag}>\n")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def truncate_file(path: Path, *, mid_row: bool) -> None:
    """Cut ``path`` at ``_TRUNCATE_AT`` of its size, on a character boundary; for CSV, just after the
    first comma of the row there, so the last row is visibly short."""
    data = path.read_bytes()
    cut = max(1, int(len(data) * _TRUNCATE_AT))
    while cut > 1 and 0x80 <= data[cut] <= 0xBF:  # never split a UTF-8 character
        cut -= 1
    if mid_row:
        line_start = data.rfind(b"\n", 0, cut) + 1
        comma = data.find(b",", line_start)
        cut = comma + 1 if comma != -1 else line_start + 1
    path.write_bytes(data[:cut])


class SchoolWriter(ABC):
    """All the census files of one school: ``write`` each pupil, then ``close`` for manifest entries."""

    format: str

    def __init__(
        self, out: Path, school: School, census: Census, pupils: int, whole_file_fault: str | None
    ) -> None:
        self.out = out
        self.school = school
        self.census = census
        self.whole_file_fault = whole_file_fault
        self.expected_pupils = pupils
        self.rows = 0
        self.encoding = "cp1252" if whole_file_fault == WRONG_ENCODING else "utf-8"

    def _open(self, name: str, encoding: str = "utf-8") -> IO[str]:
        return (self.out / name).open("w", encoding=encoding, newline="")

    def _stem(self, prefix: str) -> str:
        c = self.census
        return f"{prefix}_{self.school.la}_{self.school.estab}_{c.term}_{c.year}"

    def write(self, pupil: PupilRecord, overrides: Overrides = _NO_OVERRIDES) -> None:
        self.rows += 1
        if self.whole_file_fault == WRONG_ENCODING and self.rows == 1:
            overrides = {**overrides, "forename": NON_ASCII_FORENAME}
        self._write(pupil, overrides)

    @abstractmethod
    def _write(self, pupil: PupilRecord, overrides: Overrides) -> None: ...

    @abstractmethod
    def fault_site(self, field: str) -> tuple[str, dict[str, Any]]:
        """File name and location of ``field`` in the row just written (no pupil identifier)."""

    @abstractmethod
    def close(self) -> list[dict[str, Any]]:
        """Finish the files and return one manifest entry per file."""

    def _entry(
        self, name: str, table: str | None, pupils: int, rows: int, fault: str | None
    ) -> dict[str, Any]:
        c = self.census
        return {
            "file": name,
            "format": self.format,
            "table": table,
            "laestab": self.school.laestab,
            "urn": self.school.urn,
            "term": c.term,
            "year": c.year,
            "reference_date": c.reference_date.isoformat(),
            "pupils": pupils,
            "rows": rows,
            "sha256": sha256_of(self.out / name),
            "whole_file_fault": fault,
        }


class _XmlWriter(SchoolWriter):
    """Shared by the two XML layouts: one file, a header, one element per pupil, a footer."""

    prefix: str
    # The end tag a ``malformed_xml`` fault misspells in the middle pupil.
    breakable_end_tag: str

    def __init__(
        self, out: Path, school: School, census: Census, pupils: int, whole_file_fault: str | None
    ) -> None:
        super().__init__(out, school, census, pupils, whole_file_fault)
        self.name = self._stem(self.prefix) + ".xml"
        self._fh = self._open(self.name, self.encoding)
        self._fh.write('<?xml version="1.0" encoding="UTF-8"?>\n')
        self._fh.write(self._header())
        self._break_at = (pupils + 1) // 2 if whole_file_fault == MALFORMED_XML else 0

    @abstractmethod
    def _header(self) -> str: ...

    @abstractmethod
    def _footer(self) -> str: ...

    @abstractmethod
    def _pupil(self, p: PupilRecord, t: dict[str, str | None]) -> list[str]: ...

    def _write(self, pupil: PupilRecord, overrides: Overrides) -> None:
        t = _texts(pupil, true="true", false="false", export_dates=False)
        if overrides:
            t.update(overrides)
        text = "".join(self._pupil(pupil, t))
        if self.rows == self._break_at:
            text = text.replace(f"</{self.breakable_end_tag}>", f"</{self.breakable_end_tag[:-1]}>", 1)
        self._fh.write(text)

    def fault_site(self, field: str) -> tuple[str, dict[str, Any]]:
        return self.name, {"pupil_index": self.rows, "field": field}

    def close(self) -> list[dict[str, Any]]:
        self._fh.write(self._footer())
        self._fh.close()
        if self.whole_file_fault == TRUNCATED:
            truncate_file(self.out / self.name, mid_row=False)
        return [self._entry(self.name, None, self.rows, self.rows, self.whole_file_fault)]

    @staticmethod
    def _address(lines: list[str], ind: str, p: PupilRecord, t: dict[str, str | None]) -> None:
        """``Address/{BS7666Address/{SAON..PostTown, PostCode}, UniquePropertyReferenceNumber}``."""
        if not p.address_lines and not t["postcode"]:
            return
        lines.append(f"{ind}<Address>\n{ind}  <BS7666Address>\n")
        for item, value in zip(ADDRESS_ITEMS, p.address_lines, strict=False):
            _el(lines, ind + "    ", item, value)
        _el(lines, ind + "    ", "PostCode", t["postcode"])
        lines.append(f"{ind}  </BS7666Address>\n")
        _el(lines, ind + "  ", "UniquePropertyReferenceNumber", t["uprn"])
        lines.append(f"{ind}</Address>\n")


class CensusXmlWriter(_XmlWriter):
    """School Census return: ``Message/Header``, then ``Message/Pupils/PupilOnRoll``."""

    format = "xml"
    prefix = "SC"
    breakable_end_tag = "PupilIdentifiers"

    def _header(self) -> str:
        c, s = self.census, self.school
        return (
            "<Message>\n  <Header>\n    <CollectionDetails>\n"
            f"      <Collection>SC</Collection>\n      <Term>{c.term}</Term>\n"
            f"      <Year>{c.year}</Year>\n"
            f"      <ReferenceDate>{c.reference_date.isoformat()}</ReferenceDate>\n"
            "    </CollectionDetails>\n    <Source>\n"
            f"      <LEA>{s.la}</LEA>\n      <Estab>{s.estab}</Estab>\n      <URN>{s.urn}</URN>\n"
            f"      <SoftwareCode>{SOFTWARE_CODE}</SoftwareCode>\n      <Release>1.0</Release>\n"
            "      <SerialNo>1</SerialNo>\n"
            f"      <DateTime>{c.reference_date.isoformat()}T16:00:00</DateTime>\n"
            "    </Source>\n  </Header>\n  <Pupils>\n"
        )

    def _footer(self) -> str:
        return "  </Pupils>\n</Message>\n"

    def _pupil(self, p: PupilRecord, t: dict[str, str | None]) -> list[str]:
        i3, i4 = "      ", "        "
        lines = ["    <PupilOnRoll>\n", "      <PupilIdentifiers>\n"]
        for tag, field in (
            ("UPN", "upn"),
            ("FormerUPN", "former_upn"),
            ("UniqueLearnerNumber", "uln"),
            ("Surname", "surname"),
            ("Forename", "forename"),
            ("MiddleNames", "middle_names"),
            ("PreferredSurname", "preferred_surname"),
            ("FormerSurname", "former_surname"),
            ("DOB", "dob"),
            ("Sex", "sex"),
        ):
            _el(lines, i4, tag, t[field])
        lines.append(f"{i3}</PupilIdentifiers>\n{i3}<PupilCharacteristics>\n")
        _el(lines, i4, "Ethnicity", t["ethnicity"])
        _el(lines, i4, "EthnicitySource", "P" if p.ethnicity and p.ethnicity != "NOBT" else None)
        _el(lines, i4, "Language", t["language"])
        _el(lines, i4, "ServiceChild", t["service_child"])
        if p.nationality:
            lines.append(f"{i4}<Nationalities>\n")
            for code in p.nationality:
                _el(lines, i4 + "  ", "Nationality", code)
            lines.append(f"{i4}</Nationalities>\n")
        _el(lines, i4, "CountryOfBirth", t["country_of_birth"])
        lines.append(f"{i3}</PupilCharacteristics>\n{i3}<PupilStatus>\n")
        for tag, field in (
            ("EntryDate", "entry_date"),
            ("EnrolStatus", "enrol_status"),
            ("NCyearActual", "nc_year"),
            ("Boarder", "boarder"),
            ("PartTime", "part_time"),
            ("YSSA", "yssa"),
            ("TopUpFunding", "top_up_funding"),
        ):
            _el(lines, i4, tag, t[field])
        lines.append(f"{i3}</PupilStatus>\n{i3}<SpecialEducationalNeeds>\n")
        _el(lines, i4, "SENprovision", t["sen_provision"])
        if p.sen_needs:
            lines.append(f"{i4}<SENneeds>\n")
            for need in p.sen_needs:
                _el(lines, i4 + "  ", "SENneed", need)
            lines.append(f"{i4}</SENneeds>\n")
        lines.append(f"{i3}</SpecialEducationalNeeds>\n{i3}<HomeInformation>\n")
        self._address(lines, i4, p, t)
        lines.append(f"{i3}</HomeInformation>\n")
        if p.fsm_periods:
            lines.append(f"{i3}<FSMperiods>\n")
            for period in p.fsm_periods:
                lines.append(f"{i4}<FSMperiod>\n")
                _el(lines, i4 + "  ", "FSMstartDate", period.start.isoformat())
                _el(lines, i4 + "  ", "FSMendDate", _iso(period.end))
                _el(lines, i4 + "  ", "UKcountry", period.uk_country)
                lines.append(f"{i4}</FSMperiod>\n")
            lines.append(f"{i3}</FSMperiods>\n")
        lines.append("    </PupilOnRoll>\n")
        return lines


class CtfWriter(_XmlWriter):
    """Common Transfer File: ``CTfile/Header``, then ``CTfile/CTFpupilData/Pupil``.

    The file is addressed to the next school of the LA (wrapping round), as a whole-roll transfer: a
    structural fixture for the reader, not a realistic transfer pattern.
    """

    format = "ctf"
    prefix = "CTF"
    breakable_end_tag = "BasicDetails"

    def __init__(
        self,
        out: Path,
        school: School,
        census: Census,
        pupils: int,
        whole_file_fault: str | None,
        dest: School,
    ) -> None:
        self.dest = dest
        super().__init__(out, school, census, pupils, whole_file_fault)

    def _header(self) -> str:
        c, s, d = self.census, self.school, self.dest
        return (
            "<CTfile>\n  <Header>\n"
            "    <DocumentName>Common Transfer File</DocumentName>\n    <CTFversion>20.0</CTFversion>\n"
            f"    <DateTime>{c.reference_date.isoformat()}T16:00:00</DateTime>\n"
            "    <DocumentQualifier>full</DocumentQualifier>\n"
            f"    <SupplierID>{SOFTWARE_CODE}</SupplierID>\n"
            f"    <SourceSchool>\n      <LEA>{s.la}</LEA>\n      <Estab>{s.estab}</Estab>\n"
            f"      <URN>{s.urn}</URN>\n      <SchoolName>{_x(s.name)}</SchoolName>\n"
            f"      <AcademicYear>{c.academic_year}/{c.academic_year + 1}</AcademicYear>\n"
            "    </SourceSchool>\n"
            f"    <DestSchool>\n      <LEA>{d.la}</LEA>\n      <Estab>{d.estab}</Estab>\n"
            f"      <URN>{d.urn}</URN>\n    </DestSchool>\n"
            "  </Header>\n  <CTFpupilData>\n"
        )

    def _footer(self) -> str:
        return "  </CTFpupilData>\n</CTfile>\n"

    def _pupil(self, p: PupilRecord, t: dict[str, str | None]) -> list[str]:
        i2, i3, i4 = "      ", "        ", "          "
        lines = ["    <Pupil>\n"]
        for tag, field in (
            ("UPN", "upn"),
            ("UniqueLearnerNumber", "uln"),
            ("Surname", "surname"),
            ("Forename", "forename"),
            ("DOB", "dob"),
            ("Gender", "sex"),
        ):
            _el(lines, i2, tag, t[field])
        lines.append(f"{i2}<BasicDetails>\n")
        for tag, field in (
            ("FormerUPN", "former_upn"),
            ("PreferredSurname", "preferred_surname"),
            ("FormerSurname", "former_surname"),
            ("MiddleNames", "middle_names"),
            ("NCyearActual", "nc_year"),
            ("Ethnicity", "ethnicity"),
        ):
            _el(lines, i3, tag, t[field])
        _el(lines, i3, "EthnicitySource", "P" if p.ethnicity and p.ethnicity != "NOBT" else None)
        if t["language"]:
            lines.append(
                f"{i3}<Languages>\n{i4}<Type>\n{i4}  <LanguageType>F</LanguageType>\n"
                f"{i4}  <Language>{_x(t['language'])}</Language>\n{i4}</Type>\n{i3}</Languages>\n"
            )
        _el(lines, i3, "EnrolStatus", t["enrol_status"])
        _el(lines, i3, "ServiceChild", t["service_child"])
        if p.nationality:
            lines.append(f"{i3}<Nationalities>\n")
            for code in p.nationality:
                _el(lines, i4, "Nationality", code)
            lines.append(f"{i3}</Nationalities>\n")
        _el(lines, i3, "CountryOfBirth", t["country_of_birth"])
        lines.append(f"{i2}</BasicDetails>\n{i2}<SchoolHistory>\n{i3}<School>\n")
        _el(lines, i4, "LEA", self.school.la)
        _el(lines, i4, "Estab", self.school.estab)
        _el(lines, i4, "EntryDate", t["entry_date"])
        lines.append(f"{i3}</School>\n{i2}</SchoolHistory>\n")
        self._address(lines, i2, p, t)
        if p.fsm_periods:
            lines.append(f"{i2}<FSMhistory>\n")
            for period in p.fsm_periods:
                lines.append(f"{i3}<FSMinstance>\n")
                _el(lines, i4, "FSMstartDate", period.start.isoformat())
                _el(lines, i4, "FSMendDate", _iso(period.end))
                _el(lines, i4, "UKcountry", period.uk_country)
                lines.append(f"{i3}</FSMinstance>\n")
            lines.append(f"{i2}</FSMhistory>\n")
        lines.append(f"{i2}<SENhistory>\n{i3}<SEN>\n")
        _el(lines, i4, "SENprovision", t["sen_provision"])
        lines.append(f"{i3}</SEN>\n")
        if p.sen_needs:
            lines.append(f"{i3}<SENneeds>\n")
            for rank, need in enumerate(p.sen_needs, start=1):
                lines.append(
                    f"{i4}<SENneed>\n{i4}  <SENtypeRank>{rank}</SENtypeRank>\n"
                    f"{i4}  <SENtype>{need}</SENtype>\n{i4}</SENneed>\n"
                )
            lines.append(f"{i3}</SENneeds>\n")
        lines.append(f"{i2}</SENhistory>\n    </Pupil>\n")
        return lines


PUPILONROLL_COLUMNS = (
    ("upn", "upn"),
    ("formerupn", "former_upn"),
    ("uniquelearnernumber", "uln"),
    ("surname", "surname"),
    ("forename", "forename"),
    ("middlenames", "middle_names"),
    ("preferredsurname", "preferred_surname"),
    ("formersurname", "former_surname"),
    ("dob", "dob"),
    ("sex", "sex"),
    ("entrydate", "entry_date"),
    ("ethnicity", "ethnicity"),
    ("language", "language"),
    ("enrolstatus", "enrol_status"),
    ("ncyearactual", "nc_year"),
    ("senprovision", "sen_provision"),
    ("boarder", "boarder"),
    ("parttime", "part_time"),
    ("yssa", "yssa"),
    ("servicechild", "service_child"),
    ("topupfunding", "top_up_funding"),
)
ADDRESS_COLUMNS = (
    "upn",
    "saon",
    "paon",
    "street",
    "locality",
    "town",
    "administrativearea",
    "posttown",
    "postcode",
    "uniquepropertyreferencenumber",
)
FSM_COLUMNS = ("upn", "fsmstartdate", "fsmenddate", "ukcountry")
CSV_TABLES = ("pupilonroll", "addressesonroll", "fsmperiod")


class CsvWriter(SchoolWriter):
    """LA warehouse export: ``pupilonroll``, ``addressesonroll`` and ``fsmperiod`` tables per school.

    pupilonroll adds ``senneeds`` (rank order, ``;``-separated) and, in the terms that collected them,
    ``nationality`` (``;``-separated) and ``countryofbirth``. Dates: ``dob`` is ``YYYY-MM-DD``;
    ``entrydate``, ``fsmstartdate`` and ``fsmenddate`` are ``2020-Apr-25 00:00:00``. Booleans are
    ``True``/``False``; an absent item is an empty cell.
    """

    format = "csv"

    def __init__(
        self, out: Path, school: School, census: Census, pupils: int, whole_file_fault: str | None
    ) -> None:
        super().__init__(out, school, census, pupils, whole_file_fault)
        self.names = {table: self._stem(table) + ".csv" for table in CSV_TABLES}
        # A whole-file fault always hits the pupilonroll table.
        self._files = {
            table: self._open(name, self.encoding if table == "pupilonroll" else "utf-8")
            for table, name in self.names.items()
        }
        self._csv = {table: csv.writer(fh) for table, fh in self._files.items()}
        self._counts = dict.fromkeys(CSV_TABLES, 0)
        extra = ["senneeds"] + (["nationality", "countryofbirth"] if census.collects_nationality else [])
        self._csv["pupilonroll"].writerow([column for column, _ in PUPILONROLL_COLUMNS] + extra)
        self._csv["addressesonroll"].writerow(ADDRESS_COLUMNS)
        self._csv["fsmperiod"].writerow(FSM_COLUMNS)

    def _write(self, pupil: PupilRecord, overrides: Overrides) -> None:
        t = _texts(pupil, true="True", false="False", export_dates=True)
        if overrides:
            t.update(overrides)
        row = [t[field] or "" for _, field in PUPILONROLL_COLUMNS]
        row.append(";".join(pupil.sen_needs))
        if self.census.collects_nationality:
            row += [";".join(pupil.nationality), t["country_of_birth"] or ""]
        self._csv["pupilonroll"].writerow(row)
        self._counts["pupilonroll"] += 1
        upn = t["upn"] or ""
        if pupil.address_lines or t["postcode"]:
            lines = pupil.address_lines or ("",) * len(ADDRESS_ITEMS)
            self._csv["addressesonroll"].writerow([upn, *lines, t["postcode"] or "", t["uprn"] or ""])
            self._counts["addressesonroll"] += 1
        for period in pupil.fsm_periods:
            self._csv["fsmperiod"].writerow(
                [upn, _export_datetime(period.start), _export_datetime(period.end) or "", period.uk_country]
            )
            self._counts["fsmperiod"] += 1

    def fault_site(self, field: str) -> tuple[str, dict[str, Any]]:
        table = "addressesonroll" if field in ("postcode", "uprn") else "pupilonroll"
        return self.names[table], {"table": table, "row": self._counts[table], "field": field}

    def close(self) -> list[dict[str, Any]]:
        for fh in self._files.values():
            fh.close()
        entries = []
        for table, name in self.names.items():
            fault = self.whole_file_fault if table == "pupilonroll" else None
            if fault == TRUNCATED:
                truncate_file(self.out / name, mid_row=True)
            pupils = self._counts[table] if table == "pupilonroll" else 0
            entries.append(self._entry(name, table, pupils, self._counts[table], fault))
        return entries


CONSENT_COLUMNS = ("upn", "purpose", "decision", "recorded_on", "source")


class ConsentWriter:
    """One consent/objection CSV per school (``--consents``), as kept by the school's MIS."""

    def __init__(self, out: Path, school: School, census: Census) -> None:
        self.out = out
        self.school = school
        self.name = f"consents_{school.la}_{school.estab}_{census.term}_{census.year}.csv"
        self._fh = (out / self.name).open("w", encoding="utf-8", newline="")
        self._csv = csv.writer(self._fh)
        self._csv.writerow(CONSENT_COLUMNS)
        self.rows = 0

    def write(self, upn: str, purpose: str, decision: str, recorded_on: str, source: str) -> None:
        self._csv.writerow((upn, purpose, decision, recorded_on, source))
        self.rows += 1

    def close(self) -> dict[str, Any]:
        self._fh.close()
        return {
            "file": self.name,
            "laestab": self.school.laestab,
            "rows": self.rows,
            "sha256": sha256_of(self.out / self.name),
        }
