"""The compiled XML mapping (``XmlPlan``) against the plain mapping it replaced, kept here as the
reference: flatten the pupil element into leaf texts by path (``flatten``), then map the items one by one.
Both must give the same values and the same issues in the same order, on awkward hand-written pupils
and on generated pupils mutated at random. And ``rows()`` must be ``records()`` field for field."""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from censustrace.census.formats import census_xml, ctf_xml, parse_extract
from censustrace.census.formats.errors import REPEATED, RecordContext
from censustrace.census.formats.header import ExtractHeader
from censustrace.census.formats.records import FIELD_AT, record_template
from censustrace.census.formats.values import Item, Kind, address_lines, convert
from censustrace.census.formats.xmlplan import Flat, Shape, XmlPlan, child_texts, flatten, xml_address_paths
from censustrace.census.generator import GeneratorOptions, generate

HEADER = ExtractHeader(
    format="school_census_xml",
    la="330",
    estab="2001",
    urn=None,
    term="AUT",
    year=2026,
    reference_date=dt.date(2026, 10, 1),
)
PLANS = {
    "xml": (census_xml.ITEMS, census_xml.ADDRESS, [census_xml.FSM_GROUP]),
    "ctf": (
        ctf_xml.ITEMS,
        ctf_xml.ADDRESS,
        [
            ctf_xml.LANGUAGE_GROUP,
            ctf_xml.SCHOOL_GROUP,
            ctf_xml.SEN_GROUP,
            ctf_xml.SEN_NEED_GROUP,
            ctf_xml.FSM_GROUP,
        ],
    ),
}


def reference(
    elem: Any, items: Sequence[Item], address: str, groups: Sequence[str]
) -> tuple[list[Any], list[Any], dict[str, int]]:
    """The plain mapping: values, issues, and how many elements each group got."""
    paths = xml_address_paths(address)
    flat: Flat = flatten(elem, Shape.of([*(i.source for i in items), *paths], groups))
    ctx = RecordContext("f.xml", 1, "pupil")
    values = record_template(HEADER)
    for item in items:
        text = flat.leaves.get(item.source)
        at = FIELD_AT[item.field]
        if flat.repeats and item.source in flat.repeats:
            if item.kind is Kind.LIST:
                values[at] = tuple(t for t in flat.all(item.source) if t)
                continue
            ctx.add(REPEATED, item.field, item.source, "is given more than once; the first is used")
        if not text:
            values[at] = () if item.kind is Kind.LIST else None
        elif item.kind is Kind.TEXT:
            values[at] = text
        elif item.kind is Kind.LIST:
            values[at] = (text,)
        else:
            values[at] = convert(item, text, ctx)
    *lines, postcode_path, uprn_path = paths
    postcode = flat.first(postcode_path) or None
    uprn = flat.first(uprn_path) or None
    values[FIELD_AT["address_lines"]] = address_lines([flat.first(p) for p in lines], postcode, uprn)
    values[FIELD_AT["postcode"]], values[FIELD_AT["uprn"]] = postcode, uprn
    return values, ctx.issues, {g: len(flat.groups.get(g, [])) for g in groups}


def planned(
    elem: Any, items: Sequence[Item], address: str, groups: Sequence[str]
) -> tuple[list[Any], list[Any], dict[str, int]]:
    plan = XmlPlan(items, address, groups)
    ctx = RecordContext("f.xml", 1, "pupil")
    values = record_template(HEADER)
    texts, repeats, found = plan.read(elem)
    plan.fill(values, texts, repeats, ctx)
    return values, ctx.issues, {g: len(found.get(g, [])) for g in groups}


AWKWARD = [
    # repeats of a text item (issue, first kept), of a list item (all kept), of a whole container
    "<P><PupilIdentifiers><UPN> A1 </UPN><UPN>B</UPN></PupilIdentifiers>"
    "<PupilCharacteristics><Nationalities><Nationality>GBR</Nationality><Nationality/>"
    "<Nationality> FRA </Nationality></Nationalities></PupilCharacteristics>"
    "<PupilIdentifiers><Surname>S</Surname><UPN>C</UPN></PupilIdentifiers></P>",
    # comments, processing instructions, unknown elements, a leaf holding children, whitespace only
    "<P><!-- c --><?pi x?><Unknown><UPN>X</UPN></Unknown><PupilIdentifiers><UPN>U<b>no</b>x</UPN>"
    "<Surname>   </Surname><DOB>2016-02-30</DOB><!-- c --></PupilIdentifiers>"
    "<PupilStatus><Boarder>perhaps</Boarder><PartTime>Y</PartTime><EntryDate>2020-Sep-01</EntryDate>"
    "</PupilStatus></P>",
    # address: one item only; postcode repeated; a group given twice; a container that is also text
    "<P>text<HomeInformation><Address><BS7666Address><Street>S</Street><PostCode>A</PostCode>"
    "<PostCode>B</PostCode></BS7666Address></Address></HomeInformation>"
    "<FSMperiods><FSMperiod/><FSMperiod><FSMstartDate>2020-01-01</FSMstartDate></FSMperiod></FSMperiods>"
    "<FSMhistory><FSMinstance/></FSMhistory><SENhistory><SEN/><SENneeds><SENneed/></SENneeds></SENhistory>"
    "<UPN>ctf</UPN><Address><UniquePropertyReferenceNumber>9</UniquePropertyReferenceNumber></Address></P>",
    "<P/>",
]


@pytest.mark.parametrize("fmt", list(PLANS))
@pytest.mark.parametrize("xml", AWKWARD)
def test_awkward_pupils_map_as_the_reference(fmt: str, xml: str) -> None:
    elem = etree.fromstring(xml)
    items, address, groups = PLANS[fmt]
    assert planned(elem, items, address, groups) == reference(elem, items, address, groups)


def _mutate(pupil: Any, rng: random.Random) -> None:
    for _ in range(rng.randint(1, 5)):
        elems = [e for e in pupil.iter() if isinstance(e.tag, str) and e is not pupil]
        if not elems:
            return
        e = rng.choice(elems)
        parent = e.getparent()
        op = rng.randrange(8)
        if op == 0:
            parent.insert(parent.index(e) + 1, copy.deepcopy(e))
        elif op == 1:
            parent.remove(e)
        elif op == 2:
            parent.insert(parent.index(e), etree.Comment("c"))
        elif op == 3:
            etree.SubElement(e, "Inner").text = "x"
        elif op == 4 and not len(e):
            e.text = rng.choice(["", "  ", " padded ", "2020-02-30", "yes", "no", "0", "perhaps"])
        elif op == 5:
            etree.SubElement(parent, "Unknown").text = "y"
        elif op == 6:
            parent.insert(0, copy.deepcopy(e))
        elif parent.getparent() is not None:
            parent.getparent().append(copy.deepcopy(parent))


@pytest.mark.parametrize("fmt", list(PLANS))
def test_mutated_generated_pupils_map_as_the_reference(fmt: str, tmp_path: Path) -> None:
    generate(GeneratorOptions(out=tmp_path, schools=1, pupils_per_school=150, fmt=fmt, year=2017, seed=5))
    (path,) = tmp_path.glob("*.xml")
    record = "PupilOnRoll" if fmt == "xml" else "Pupil"
    rng = random.Random(fmt)
    items, address, groups = PLANS[fmt]
    issues = 0
    for pupil in etree.parse(str(path)).iter(record):
        for _ in range(3):
            mutated = copy.deepcopy(pupil)
            _mutate(mutated, rng)
            want = reference(mutated, items, address, groups)
            assert planned(mutated, items, address, groups) == want
            issues += len(want[1])
    assert issues > 50  # the mutations did reach the items


@pytest.mark.parametrize("fmt", ["xml", "ctf", "csv"])
def test_rows_are_the_records_field_for_field(fmt: str, tmp_path: Path) -> None:
    manifest = generate(
        GeneratorOptions(out=tmp_path, schools=3, pupils_per_school=120, fmt=fmt, faults=0.2, seed=8)
    )
    checked = 0
    for entry in manifest["files"]:
        if entry["table"] not in (None, "pupilonroll") or entry["whole_file_fault"]:
            continue
        paths = [tmp_path / entry["file"]]
        if fmt == "csv":
            paths = [
                tmp_path / entry["file"].replace("pupilonroll", t)
                for t in ("pupilonroll", "addressesonroll", "fsmperiod")
            ]
        extract = parse_extract(paths)
        row_sink: list[Any] = []
        record_sink: list[Any] = []
        rows = list(extract.rows(row_sink))
        records = list(extract.records(record_sink))
        assert [(n, tuple(v), i) for n, v, i in rows] == [
            (n, tuple(getattr(r, f.name) for f in dataclasses.fields(r)), i) for n, r, i in records
        ]
        assert row_sink == record_sink
        checked += len(rows)
    assert checked > 100


GROUP_ITEMS = (
    "FSMstartDate",
    "FSMendDate",
    "UKcountry",
    "LEA",
    "Estab",
    "EntryDate",
    "SENtype",
    "SENtypeRank",
)


@pytest.mark.parametrize(
    "xml",
    [
        "<G><FSMstartDate><x/>2020-01-01</FSMstartDate><FSMstartDate> 2021-01-01 </FSMstartDate></G>",
        "<G><!-- c --><LEA>330</LEA><LEA>331</LEA><Estab/>"
        "<Deeper><EntryDate>2020-01-01</EntryDate></Deeper></G>",
        "<G><SENtype><!-- c --></SENtype><SENtype>ASD</SENtype><SENtypeRank>  </SENtypeRank></G>",
        "<G/>",
    ],
)
def test_group_items_read_as_the_reference(xml: str) -> None:
    """A repeated group's items (FSM periods, CTF histories): the first child of that tag without child
    nodes, as ``flatten(group).first(tag)`` reads it."""
    group = etree.fromstring(xml)
    flat = flatten(group)
    assert child_texts(group, GROUP_ITEMS) == {name: flat.first(name) for name in GROUP_ITEMS}
