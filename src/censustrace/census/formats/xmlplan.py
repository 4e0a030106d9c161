"""From a pupil element to values: flattening an element into leaf texts by path, the address and
FSM groups, and a format's XML mapping compiled once (``XmlPlan``) so each pupil is walked in one pass.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from censustrace.census.formats.errors import REPEATED, RecordContext
from censustrace.census.formats.header import ExtractHeader
from censustrace.census.formats.records import FIELD_AT
from censustrace.census.formats.values import Item, Kind, convert, fill_converted, fsm_eligible, fsm_period
from censustrace.census.model import ADDRESS_ITEMS, FsmPeriod


@dataclass(frozen=True, slots=True)
class Shape:
    """Which paths of a pupil element are containers to descend into, and which are repeated groups
    (``FSMperiods/FSMperiod``) to keep whole. Derived from the mapping, so unknown elements cost little."""

    containers: frozenset[str]
    groups: frozenset[str]

    @classmethod
    def of(cls, paths: Iterable[str], groups: Iterable[str] = ()) -> Shape:
        group_set = frozenset(groups)
        containers = {
            path.rsplit("/", depth)[0]
            for path in (*paths, *group_set)
            for depth in range(1, path.count("/") + 1)
        }
        return cls(frozenset(containers), group_set)


_ANY_SHAPE: Final = Shape(frozenset(), frozenset())


@dataclass(slots=True)
class Flat:
    """A flattened element: first leaf text by path, later repeats apart, repeated groups as elements."""

    leaves: dict[str, str] = field(default_factory=dict)
    repeats: dict[str, list[str]] = field(default_factory=dict)
    groups: dict[str, list[Any]] = field(default_factory=dict)

    def first(self, path: str) -> str | None:
        return self.leaves.get(path)

    def all(self, path: str) -> list[str]:
        first = self.leaves.get(path)
        return [] if first is None else [first, *self.repeats.get(path, ())]


def flatten(elem: Any, shape: Shape = _ANY_SHAPE) -> Flat:
    """Leaf texts of ``elem`` keyed by path (``PupilIdentifiers/UPN``), stripped, ``""`` for empty.

    With a shape, only its containers are descended into (an unknown element is one empty leaf);
    without one, every element with children is. Comments and processing instructions are skipped.
    Breadth first, so repeats keep document order within their container.
    """
    flat = Flat()
    leaves, repeats, groups = flat.leaves, flat.repeats, flat.groups
    containers, group_paths = shape.containers, shape.groups
    descend_all = shape is _ANY_SHAPE
    todo: list[tuple[Any, str]] = [(elem, "")]
    index = 0
    while index < len(todo):
        parent, prefix = todo[index]
        index += 1
        for child in parent:
            tag = child.tag
            if tag.__class__ is not str:  # comment or processing instruction
                continue
            path = prefix + tag
            if path in containers or (descend_all and len(child)):
                todo.append((child, path + "/"))
            elif path in group_paths:
                groups.setdefault(path, []).append(child)
            else:
                text = child.text
                text = text.strip() if text else ""
                if path in leaves:
                    repeats.setdefault(path, []).append(text)
                else:
                    leaves[path] = text
    return flat


def xml_address_paths(prefix: str) -> tuple[str, ...]:
    """``<prefix>BS7666Address/{SAON..PostTown}`` (ADDRESS_ITEMS order), ``.../PostCode``, then the UPRN."""
    bs = prefix + "BS7666Address/"
    return (*(bs + name for name in ADDRESS_ITEMS), bs + "PostCode", prefix + "UniquePropertyReferenceNumber")


_FSM_ITEMS: Final = ("FSMstartDate", "FSMendDate", "UKcountry")


def xml_fsm(
    groups: Sequence[Any], group_path: str, ctx: RecordContext, header: ExtractHeader
) -> tuple[tuple[FsmPeriod, ...], bool | None]:
    """FSM periods from repeated ``FSMstartDate/FSMendDate/UKcountry`` groups, and the derived flag."""
    items = tuple(f"{group_path}/{name}" for name in _FSM_ITEMS)
    periods: list[FsmPeriod] = []
    incomplete = False
    for group in groups:
        g = child_texts(group, _FSM_ITEMS)
        period = fsm_period(g["FSMstartDate"], g["FSMendDate"], g["UKcountry"], ctx, items)
        if period is None:
            incomplete = True
        else:
            periods.append(period)
    return tuple(periods), fsm_eligible(periods, header.reference_date, incomplete)


def header_texts(elem: Any) -> dict[str, str | None]:
    """A header element's leaf texts by path, ``None`` for empty; repeated items keep the first."""
    return {path: (text or None) for path, text in flatten(elem).leaves.items()}


def child_texts(elem: Any, names: Iterable[str]) -> dict[str, str | None]:
    """``flatten(elem).first(name)`` for each of ``names`` (direct children of ``elem``), in one pass
    that reads no other text: the first child of that tag without child elements, stripped."""
    found: dict[str, str | None] = dict.fromkeys(names)
    for child in elem:
        tag = child.tag
        if tag in found and found[tag] is None and not len(child):
            text = child.text
            found[tag] = text.strip() if text else ""
    return found


# --- a format's XML mapping, compiled --------------------------------------------------------------

_ADDRESS_AT: Final = FIELD_AT["address_lines"]
_POSTCODE_AT: Final = FIELD_AT["postcode"]
_UPRN_AT: Final = FIELD_AT["uprn"]

# A node of a compiled mapping: child tag -> leaf slot (int), container (descended into) or the path
# of a repeated group (str, whose elements are kept whole).
_Node = dict[str, "int | str | _Node"]


def _walk(
    elem: Any,
    node: _Node,
    texts: list[str | None],
    repeats: dict[int, list[str]],
    groups: dict[str, list[Any]],
) -> None:
    for child in elem:
        entry = node.get(child.tag)  # comments, PIs and entities have non-str tags: never found
        if entry is None:
            continue
        if entry.__class__ is int:
            text = child.text
            text = text.strip() if text else ""
            if texts[entry] is None:
                texts[entry] = text
            else:
                repeats.setdefault(entry, []).append(text)
        elif entry.__class__ is dict:
            _walk(child, entry, texts, repeats, groups)
        else:
            groups.setdefault(entry, []).append(child)  # type: ignore[arg-type]  # a group path


class XmlPlan:
    """A format's XML mapping (its items, address prefix and repeated groups) compiled once, so that
    each pupil element is walked in one pass that reads only the mapped items.

    ``read`` then ``fill`` give exactly what flattening the pupil with ``flatten(elem, Shape.of(...))``
    and then mapping its leaves item by item gives (same values, same issues in the same order; the test
    ``tests/census/formats/test_xml_plan.py`` keeps that mapping as its reference), without building a
    path string per element or a dict per pupil: this is where most of the reader's time went.
    """

    def __init__(self, items: Sequence[Item], address_prefix: str, groups: Iterable[str] = ()) -> None:
        address_paths = xml_address_paths(address_prefix)
        paths = list(dict.fromkeys([*(item.source for item in items), *address_paths]))
        slot_of = {path: slot for slot, path in enumerate(paths)}
        shape = Shape.of(paths, groups)
        # As in flatten: a container is descended into even if it is also a group or a leaf path, and a
        # group is kept whole even if it is also a leaf path.
        tree: _Node = {}
        nodes: dict[str, _Node] = {"": tree}
        for path in sorted(shape.containers, key=lambda p: p.count("/")):
            parent, _, tag = path.rpartition("/")
            nodes[path] = nodes[parent][tag] = {}
        for path in sorted(shape.groups):
            parent, _, tag = path.rpartition("/")
            nodes[parent].setdefault(tag, path)
        for path, slot in slot_of.items():
            parent, _, tag = path.rpartition("/")
            nodes[parent].setdefault(tag, slot)
        self.tree = tree
        self.slots = len(paths)
        self.items = tuple((FIELD_AT[item.field], slot_of[item.source], item) for item in items)
        self.text_items = tuple((at, slot) for at, slot, item in self.items if item.kind is Kind.TEXT)
        self.list_items = tuple((at, slot) for at, slot, item in self.items if item.kind is Kind.LIST)
        self.converted_items = tuple(
            (at, slot, item) for at, slot, item in self.items if item.kind in (Kind.DATE, Kind.BOOL)
        )
        *lines, postcode, uprn = (slot_of[path] for path in address_paths)
        self.line_slots = tuple(lines)
        self.postcode_slot, self.uprn_slot = postcode, uprn

    def read(self, elem: Any) -> tuple[list[str | None], dict[int, list[str]], dict[str, list[Any]]]:
        """The mapped leaf texts of ``elem`` by slot (None: absent; stripped, ``""`` for empty), later
        repeats of a slot, and the elements of each repeated group, all in document order."""
        texts: list[str | None] = [None] * self.slots
        repeats: dict[int, list[str]] = {}
        groups: dict[str, list[Any]] = {}
        _walk(elem, self.tree, texts, repeats, groups)
        return texts, repeats, groups

    def fill(
        self, values: list[Any], texts: list[str | None], repeats: dict[int, list[str]], ctx: RecordContext
    ) -> None:
        """Put the items and the address into ``values`` (a copy of the record template)."""
        if repeats:
            self._fill_repeated(values, texts, repeats, ctx)
        else:
            for at, slot in self.text_items:
                text = texts[slot]
                if text:
                    values[at] = text
            for at, slot in self.list_items:
                text = texts[slot]
                if text:
                    values[at] = (text,)
            fill_converted(values, self.converted_items, texts, ctx)
        postcode = texts[self.postcode_slot] or None
        uprn = texts[self.uprn_slot] or None
        lines = [texts[slot] for slot in self.line_slots]
        if postcode or uprn or any(lines):
            values[_ADDRESS_AT] = tuple([line or "" for line in lines])
        values[_POSTCODE_AT] = postcode
        values[_UPRN_AT] = uprn

    def _fill_repeated(
        self, values: list[Any], texts: list[str | None], repeats: dict[int, list[str]], ctx: RecordContext
    ) -> None:
        """Item by item, for the rare pupil with an item given more than once: a list takes every
        non-empty text, any other item the first (with a CT-PARSE-REPEATED issue)."""
        for at, slot, item in self.items:
            text = texts[slot]
            if slot in repeats:
                if item.kind is Kind.LIST:
                    values[at] = tuple(t for t in (text, *repeats[slot]) if t)
                    continue
                ctx.add(REPEATED, item.field, item.source, "is given more than once; the first is used")
            if not text:
                continue
            if item.kind is Kind.TEXT:
                values[at] = text
            elif item.kind is Kind.LIST:
                values[at] = (text,)
            else:
                values[at] = convert(item, text, ctx)
