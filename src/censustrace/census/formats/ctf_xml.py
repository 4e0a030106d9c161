"""Common Transfer File XML: ``CTfile/Header`` then ``CTfile/CTFpupilData/Pupil``.

The mapping to :class:`PupilRecord` is the tables below (see ``docs/data-model.md``). A CTF is not a
census return: it is an extract of its ``SourceSchool`` dated by its header's ``DateTime`` (the
reference date of its records). It carries no census term: term and year come from the file name
``CTF_<LA>_<ESTAB>_<TERM>_<YEAR>.xml`` or :class:`ExtractHints`, else from the term of ``DateTime``
(``declared.term_of``). A conventionally named file must agree with the header's ``SourceSchool/LEA``,
``Estab`` and ``AcademicYear`` (CT-PARSE-NAME-MISMATCH). ``boarder``, ``part_time``, ``yssa`` and
``top_up_funding`` are not in a CTF (None).

Repeated histories are reduced to the census view (assumptions, as real CTFs can hold several):

* ``entry_date``: the ``SchoolHistory/School`` whose LEA and Estab are the source school's; if
  several, the latest entry date.
* ``language``: the ``BasicDetails/Languages/Type`` whose ``LanguageType`` is ``F`` (first language).
* ``sen_provision``: the last ``SENhistory/SEN`` in the file (histories are written oldest first).
* ``sen_needs``: ``SENhistory/SENneeds/SENneed/SENtype`` ordered by ``SENtypeRank``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Final

from censustrace.census import codes
from censustrace.census.formats.declared import (
    academic_year,
    check_academic_year,
    check_name,
    term_of,
)
from censustrace.census.formats.errors import HEADER, REPEATED, VALUE, ParseError, RecordContext
from censustrace.census.formats.header import (
    NO_HINTS,
    ExtractHeader,
    ExtractHints,
    HeaderBuilder,
    file_name_parts,
)
from censustrace.census.formats.records import (
    FIELD_AT,
    ParsedRecord,
    ParsedRow,
    as_records,
    check_upn_value,
    record_template,
)
from censustrace.census.formats.safexml import XmlLayout, stream_xml
from censustrace.census.formats.values import Item, Kind, parse_date
from censustrace.census.formats.xmlplan import XmlPlan, child_texts, header_texts, xml_address_paths, xml_fsm
from censustrace.census.model import PupilRecord

LAYOUT: Final = XmlLayout(root="CTfile", header="Header", container="CTFpupilData", record="Pupil")

# --- the mapping: PupilRecord field <- path under CTfile/CTFpupilData/Pupil -------------------------
_BD = "BasicDetails/"
ITEMS: Final[tuple[Item, ...]] = (
    Item("upn", "UPN"),
    Item("uln", "UniqueLearnerNumber"),
    Item("surname", "Surname"),
    Item("forename", "Forename"),
    Item("dob", "DOB", Kind.DATE),
    Item("sex", "Gender"),
    Item("former_upn", _BD + "FormerUPN"),
    Item("middle_names", _BD + "MiddleNames"),
    Item("preferred_surname", _BD + "PreferredSurname"),
    Item("former_surname", _BD + "FormerSurname"),
    Item("nc_year", _BD + "NCyearActual"),
    Item("ethnicity", _BD + "Ethnicity"),  # EthnicitySource is not kept
    Item("enrol_status", _BD + "EnrolStatus"),
    Item("service_child", _BD + "ServiceChild"),
    Item("nationality", _BD + "Nationalities/Nationality", Kind.LIST),
    Item("country_of_birth", _BD + "CountryOfBirth"),
)
ADDRESS: Final = "Address/"  # BS7666Address/{SAON..PostTown, PostCode}, UniquePropertyReferenceNumber
LANGUAGE_GROUP: Final = _BD + "Languages/Type"  # {LanguageType, Language}
SCHOOL_GROUP: Final = "SchoolHistory/School"  # {LEA, Estab, EntryDate}
SEN_GROUP: Final = "SENhistory/SEN"  # {SENprovision}
SEN_NEED_GROUP: Final = "SENhistory/SENneeds/SENneed"  # {SENtypeRank, SENtype}
FSM_GROUP: Final = "FSMhistory/FSMinstance"  # {FSMstartDate, FSMendDate, UKcountry}
ADDRESS_PATHS: Final = xml_address_paths(ADDRESS)
_PLAN: Final = XmlPlan(
    ITEMS, ADDRESS, groups=[LANGUAGE_GROUP, SCHOOL_GROUP, SEN_GROUP, SEN_NEED_GROUP, FSM_GROUP]
)
FIRST_LANGUAGE: Final = "F"
_SCHOOL_ITEMS: Final = ("LEA", "Estab", "EntryDate")
_LANGUAGE_ITEMS: Final = ("LanguageType", "Language")
_SEN_ITEMS: Final = ("SENprovision",)
_SEN_NEED_ITEMS: Final = ("SENtype", "SENtypeRank")
_ENTRY_AT, _LANGUAGE_AT = FIELD_AT["entry_date"], FIELD_AT["language"]
_PROVISION_AT, _NEEDS_AT = FIELD_AT["sen_provision"], FIELD_AT["sen_needs"]
_PERIODS_AT, _ELIGIBLE_AT = FIELD_AT["fsm_periods"], FIELD_AT["fsm_eligible"]


def _header(elem: Any, path: Path, hints: ExtractHints) -> ExtractHeader:
    t = header_texts(elem)
    h = HeaderBuilder(path, hints)
    where = "CTfile/Header/"
    named = file_name_parts(path)
    la = h.la(t.get("SourceSchool/LEA"), where + "SourceSchool/LEA")
    estab = h.estab(t.get("SourceSchool/Estab"), where + "SourceSchool/Estab")
    check_name(
        path,
        named,
        {"la": (la, where + "SourceSchool/LEA"), "estab": (estab, where + "SourceSchool/Estab")},
    )
    stamp = h.datetime(t.get("DateTime"), where + "DateTime")
    # Term and year: the file name and/or the hints (which must agree), else the term of DateTime.
    name_term = named.term if named else None
    name_year = str(named.year) if named else None
    if name_term is None and hints.term is None and stamp is not None:
        name_term, derived_year = term_of(stamp.date())
        name_year = name_year or str(derived_year)
    term = h.term(name_term, "file name <TERM> (CTF_<LA>_<ESTAB>_<TERM>_<YEAR>.xml)")
    year = h.year(name_year, "file name <YEAR> (CTF_<LA>_<ESTAB>_<TERM>_<YEAR>.xml)")
    item = where + "SourceSchool/AcademicYear"
    check_academic_year(path, term, year, academic_year(path, t.get("SourceSchool/AcademicYear"), item), item)
    dest_la, dest_estab = t.get("DestSchool/LEA"), t.get("DestSchool/Estab")
    return ExtractHeader(
        format="ctf_xml",
        la=la,
        estab=estab,
        urn=h.urn(t.get("SourceSchool/URN"), where + "SourceSchool/URN"),
        term=term,
        year=year,
        # Dated by its DateTime: a transfer is a snapshot of the day it was written, not a census day.
        reference_date=stamp.date() if stamp is not None else codes.reference_date(term, year),
        software=t.get("SupplierID"),
        software_release=t.get("CTFversion"),
        document_datetime=stamp,
        dest_laestab=dest_la + dest_estab if dest_la and dest_estab else None,
        source_files=(path.name,),
    )


def _entry_date(schools: Sequence[Any], header: ExtractHeader, ctx: RecordContext) -> dt.date | None:
    item = SCHOOL_GROUP + "/EntryDate"
    best: dt.date | None = None
    for school in schools:
        s = child_texts(school, _SCHOOL_ITEMS)
        if s["LEA"] != header.la or s["Estab"] != header.estab:
            continue
        raw = s["EntryDate"]
        if not raw:
            continue
        try:
            day = parse_date(raw)
        except ValueError:
            ctx.add(VALUE, "entry_date", item, "is not a date")
            continue
        best = day if best is None else max(best, day)
    return best


def _language(types: Sequence[Any], ctx: RecordContext) -> str | None:
    found = []
    for elem in types:
        t = child_texts(elem, _LANGUAGE_ITEMS)
        if t["LanguageType"] == FIRST_LANGUAGE:
            found.append(t["Language"])
    if len(found) > 1:
        ctx.add(REPEATED, "language", LANGUAGE_GROUP, "has more than one first language; the first is used")
    return found[0] or None if found else None


def _sen(groups: dict[str, list[Any]], ctx: RecordContext) -> tuple[str | None, tuple[str, ...]]:
    provision = None
    for sen in groups.get(SEN_GROUP, ()):
        provision = child_texts(sen, _SEN_ITEMS)["SENprovision"] or provision
    ranked: list[tuple[int, int, str]] = []
    for order, need in enumerate(groups.get(SEN_NEED_GROUP, ())):
        n = child_texts(need, _SEN_NEED_ITEMS)
        kind, rank_text = n["SENtype"], n["SENtypeRank"]
        if not kind:
            continue
        rank = 10**6  # unranked needs go last, in file order
        if rank_text:
            if rank_text.isdigit():
                rank = int(rank_text)
            else:
                ctx.add(VALUE, "sen_needs", SEN_NEED_GROUP + "/SENtypeRank", "is not a number")
        ranked.append((rank, order, kind))
    return provision, tuple(kind for _, _, kind in sorted(ranked))


def _row(elem: Any, number: int, file: str, header: ExtractHeader, template: list[Any]) -> ParsedRow:
    ctx = RecordContext(file, number, "pupil")
    texts, repeats, groups = _PLAN.read(elem)
    values = template.copy()
    _PLAN.fill(values, texts, repeats, ctx)
    check_upn_value(values, ctx, "UPN")
    values[_ENTRY_AT] = _entry_date(groups.get(SCHOOL_GROUP, ()), header, ctx)
    values[_LANGUAGE_AT] = _language(groups.get(LANGUAGE_GROUP, ()), ctx)
    values[_PROVISION_AT], values[_NEEDS_AT] = _sen(groups, ctx)
    values[_PERIODS_AT], values[_ELIGIBLE_AT] = xml_fsm(groups.get(FSM_GROUP, ()), FSM_GROUP, ctx, header)
    return ParsedRow(number, values, ctx.issues)


def _record(elem: Any, number: int, file: str, header: ExtractHeader) -> ParsedRecord:
    """One pupil element as a record (the mapping of :func:`iter_rows`)."""
    row = _row(elem, number, file, header, record_template(header))
    return ParsedRecord(number, PupilRecord(*row.values), row.issues)


def read_header(path: Path, hints: ExtractHints = NO_HINTS) -> ExtractHeader:
    """The extract header only; reading stops as soon as ``CTfile/Header`` is complete."""
    stream = stream_xml(path, LAYOUT)
    try:
        for is_header, elem in stream:
            if is_header:
                return _header(elem, path, hints)
    finally:
        stream.close()
    raise ParseError(HEADER, path, "is missing", item="CTfile/Header")  # pragma: no cover (stream raises)


def iter_rows(path: Path, hints: ExtractHints = NO_HINTS) -> Iterator[ParsedRow]:
    """Every ``Pupil`` as ``(pupil index, field values, issues)``, streaming in bounded memory.

    Raises :class:`ParseError` for a whole-file problem, possibly after some records were yielded:
    the caller must then reject the whole file.
    """
    header: ExtractHeader | None = None
    template: list[Any] = []
    number = 0
    file = path.name
    for is_header, elem in stream_xml(path, LAYOUT):
        if is_header:
            header = _header(elem, path, hints)
            template = record_template(header)
            continue
        assert header is not None  # stream_xml yields the header first
        number += 1
        yield _row(elem, number, file, header, template)


def iter_records(path: Path, hints: ExtractHints = NO_HINTS) -> Iterator[ParsedRecord]:
    """Every ``Pupil`` as ``(pupil index, record, issues)``: :func:`iter_rows` as records."""
    return as_records(iter_rows(path, hints))
