"""School Census XML (the MIS return): ``Message/Header`` then ``Message/Pupils/PupilOnRoll``.

The whole mapping from this layout to :class:`PupilRecord` is the tables below; see
``docs/data-model.md`` for what each field means. Everything in the header (LA, establishment, URN,
term, year, reference date) comes from the file itself; a conventionally named file
(``SC_<LA>_<ESTAB>_<TERM>_<YEAR>.xml``) must agree with it (CT-PARSE-NAME-MISMATCH, see ``declared``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

from censustrace.census import codes
from censustrace.census.formats.declared import check_name
from censustrace.census.formats.errors import HEADER, ParseError, RecordContext
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
from censustrace.census.formats.values import Item, Kind
from censustrace.census.formats.xmlplan import XmlPlan, header_texts, xml_address_paths, xml_fsm
from censustrace.census.model import PupilRecord

LAYOUT: Final = XmlLayout(root="Message", header="Header", container="Pupils", record="PupilOnRoll")

# --- the mapping: PupilRecord field <- path under Message/Pupils/PupilOnRoll ------------------------
_ID, _CH, _ST, _SEN = "PupilIdentifiers/", "PupilCharacteristics/", "PupilStatus/", "SpecialEducationalNeeds/"
ITEMS: Final[tuple[Item, ...]] = (
    Item("upn", _ID + "UPN"),
    Item("former_upn", _ID + "FormerUPN"),
    Item("uln", _ID + "UniqueLearnerNumber"),
    Item("surname", _ID + "Surname"),
    Item("forename", _ID + "Forename"),
    Item("middle_names", _ID + "MiddleNames"),
    Item("preferred_surname", _ID + "PreferredSurname"),
    Item("former_surname", _ID + "FormerSurname"),
    Item("dob", _ID + "DOB", Kind.DATE),
    Item("sex", _ID + "Sex"),
    Item("ethnicity", _CH + "Ethnicity"),  # EthnicitySource is not kept
    Item("language", _CH + "Language"),
    Item("service_child", _CH + "ServiceChild"),
    Item("nationality", _CH + "Nationalities/Nationality", Kind.LIST),
    Item("country_of_birth", _CH + "CountryOfBirth"),
    Item("entry_date", _ST + "EntryDate", Kind.DATE),
    Item("enrol_status", _ST + "EnrolStatus"),
    Item("nc_year", _ST + "NCyearActual"),
    Item("boarder", _ST + "Boarder", Kind.BOOL),
    Item("part_time", _ST + "PartTime", Kind.BOOL),
    Item("yssa", _ST + "YSSA"),
    Item("top_up_funding", _ST + "TopUpFunding", Kind.BOOL),
    Item("sen_provision", _SEN + "SENprovision"),
    Item("sen_needs", _SEN + "SENneeds/SENneed", Kind.LIST),  # in file (rank) order
)
# address_lines (ADDRESS_ITEMS order), postcode and uprn: <ADDRESS>BS7666Address/{SAON..PostTown,
# PostCode} and <ADDRESS>UniquePropertyReferenceNumber.
ADDRESS: Final = "HomeInformation/Address/"
# fsm_periods: one FsmPeriod per FSMperiod/{FSMstartDate, FSMendDate, UKcountry}; fsm_eligible derived.
FSM_GROUP: Final = "FSMperiods/FSMperiod"
ADDRESS_PATHS: Final = xml_address_paths(ADDRESS)

# --- the header: ExtractHeader field <- path under Message/Header -----------------------------------
_CD, _SRC = "CollectionDetails/", "Source/"


def _header(elem: Any, path: Path, hints: ExtractHints) -> ExtractHeader:
    t = header_texts(elem)
    h = HeaderBuilder(path, hints)
    where = "Message/Header/"
    collection = t.get(_CD + "Collection")
    if collection is not None and collection != "SC":
        raise h.fail(where + _CD + "Collection", "must be SC (School Census)")
    term = h.term(t.get(_CD + "Term"), where + _CD + "Term")
    year = h.year(t.get(_CD + "Year"), where + _CD + "Year")
    reference_date = h.date(t.get(_CD + "ReferenceDate"), where + _CD + "ReferenceDate")
    la = h.la(t.get(_SRC + "LEA"), where + _SRC + "LEA")
    estab = h.estab(t.get(_SRC + "Estab"), where + _SRC + "Estab")
    check_name(
        path,
        file_name_parts(path),
        {
            "la": (la, where + _SRC + "LEA"),
            "estab": (estab, where + _SRC + "Estab"),
            "term": (term, where + _CD + "Term"),
            "year": (year, where + _CD + "Year"),
        },
    )
    return ExtractHeader(
        format="school_census_xml",
        la=la,
        estab=estab,
        urn=h.urn(t.get(_SRC + "URN"), where + _SRC + "URN"),
        term=term,
        year=year,
        # The file's own census day wins; the rule in codes is only for a header without one.
        reference_date=reference_date or codes.reference_date(term, year),
        software=t.get(_SRC + "SoftwareCode"),
        software_release=t.get(_SRC + "Release"),
        document_datetime=h.datetime(t.get(_SRC + "DateTime"), where + _SRC + "DateTime"),
        source_files=(path.name,),
    )


_PLAN: Final = XmlPlan(ITEMS, ADDRESS, groups=[FSM_GROUP])
_PERIODS_AT, _ELIGIBLE_AT = FIELD_AT["fsm_periods"], FIELD_AT["fsm_eligible"]


def _row(elem: Any, number: int, file: str, header: ExtractHeader, template: list[Any]) -> ParsedRow:
    ctx = RecordContext(file, number, "pupil")
    texts, repeats, groups = _PLAN.read(elem)
    values = template.copy()
    _PLAN.fill(values, texts, repeats, ctx)
    check_upn_value(values, ctx, _ID + "UPN")
    periods = groups.get(FSM_GROUP)
    if periods:
        values[_PERIODS_AT], values[_ELIGIBLE_AT] = xml_fsm(periods, FSM_GROUP, ctx, header)
    else:
        values[_ELIGIBLE_AT] = False
    return ParsedRow(number, values, ctx.issues)


def _record(elem: Any, number: int, file: str, header: ExtractHeader) -> ParsedRecord:
    """One pupil element as a record (the mapping of :func:`iter_rows`)."""
    row = _row(elem, number, file, header, record_template(header))
    return ParsedRecord(number, PupilRecord(*row.values), row.issues)


def read_header(path: Path, hints: ExtractHints = NO_HINTS) -> ExtractHeader:
    """The extract header only; reading stops as soon as ``Message/Header`` is complete."""
    stream = stream_xml(path, LAYOUT)
    try:
        for is_header, elem in stream:
            if is_header:
                return _header(elem, path, hints)
    finally:
        stream.close()
    raise ParseError(HEADER, path, "is missing", item="Message/Header")  # pragma: no cover (stream raises)


def iter_rows(path: Path, hints: ExtractHints = NO_HINTS) -> Iterator[ParsedRow]:
    """Every ``PupilOnRoll`` as ``(pupil index, field values, issues)``, streaming in bounded memory.

    Raises :class:`ParseError` for a whole-file problem, possibly after some records were yielded
    (a truncated file is only known to be truncated at its end): the caller must then reject the file.
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
    """Every ``PupilOnRoll`` as ``(pupil index, record, issues)``: :func:`iter_rows` as records."""
    return as_records(iter_rows(path, hints))
