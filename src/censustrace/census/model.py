"""The canonical pupil record: one census row for one pupil at one school, whatever the file format.

Field meanings and their source items in School Census XML, CTF and the LA warehouse CSV export are in
``docs/data-model.md``. Codes are stored exactly as in the file; None (or an empty tuple) means the item
was absent or empty. Validation lives elsewhere: a record may hold a code that is not in
:mod:`censustrace.census.codes`, and the validator reports it by row number.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, fields

# BS7666 address items in the order kept in ``PupilRecord.address_lines``.
ADDRESS_ITEMS: tuple[str, ...] = (
    "SAON",
    "PAON",
    "Street",
    "Locality",
    "Town",
    "AdministrativeArea",
    "PostTown",
)


@dataclass(frozen=True, slots=True)
class FsmPeriod:
    """A free-school-meals eligibility period; ``end`` None means still eligible."""

    start: dt.date
    end: dt.date | None
    uk_country: str

    def covers(self, day: dt.date) -> bool:
        return self.start <= day and (self.end is None or day <= self.end)


@dataclass(frozen=True, slots=True)
class PupilRecord:
    """One pupil on roll at one school in one census.

    ``address_lines`` always has the seven ``ADDRESS_ITEMS`` positions, with ``""`` for an absent
    item, so the BS7666 structure survives a round trip; it is ``()`` when the pupil has no address.
    ``fsm_eligible`` is derived, not read: True when an FSM period covers the reference date.
    """

    upn: str
    former_upn: str | None
    uln: str | None
    surname: str | None
    forename: str | None
    middle_names: str | None
    preferred_surname: str | None
    former_surname: str | None
    dob: dt.date | None
    sex: str | None
    ethnicity: str | None
    language: str | None
    service_child: str | None
    nationality: tuple[str, ...]
    country_of_birth: str | None
    entry_date: dt.date | None
    enrol_status: str | None
    nc_year: str | None
    boarder: bool | None
    part_time: bool | None
    yssa: str | None
    top_up_funding: bool | None
    sen_provision: str | None
    sen_needs: tuple[str, ...]
    address_lines: tuple[str, ...]
    postcode: str | None
    uprn: str | None
    fsm_eligible: bool | None
    fsm_periods: tuple[FsmPeriod, ...]
    laestab: str
    urn: str | None
    census_term: str
    census_year: int
    reference_date: dt.date

    def address_item(self, item: str) -> str:
        """One BS7666 item by name (``"Street"``), ``""`` when absent."""
        if not self.address_lines:
            return ""
        return self.address_lines[ADDRESS_ITEMS.index(item)]


PUPIL_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(PupilRecord))

# Fields that identify a pupil directly; never put them in messages, logs or lineage facets.
IDENTIFYING_FIELDS: frozenset[str] = frozenset(
    {
        "upn",
        "former_upn",
        "uln",
        "surname",
        "forename",
        "middle_names",
        "preferred_surname",
        "former_surname",
        "dob",
        "address_lines",
        "postcode",
        "uprn",
    }
)
