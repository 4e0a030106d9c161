"""Realistic synthetic schools and pupils, one school at a time.

State kept across schools is bounded by the number of schools, never by the number of pupils: UPN
serial counters per allocating school and year, and the pupils dual-registered at one school who are
still to appear (as subsidiary, ``S``) at the next school of the same phase.

Realism rules (each an assumption for test data, not a statistic):

- UPNs are permanent with correct check letters; the LA and establishment are those of the school
  that allocated it on the pupil's first entry: this school, another school of the LA (most secondary
  pupils were allocated one at primary school) or a school in a neighbouring LA. About 1% are
  temporary (this school's LAESTAB, the entry year, a 2-digit serial and a letter), for pupils who
  joined in the last eight weeks; about 2% have a FormerUPN, the temporary UPN they once had here.
- ULNs (valid check digit) for about 95% of pupils in NC year 10 and above.
- DOB within the NC year's cohort: age at 31 August before the academic year = ``codes.NC_YEAR_AGE``.
- Nationality and country of birth only in the census terms that collected them (AUT 2016-SUM 2018).
- SEN provision by era: N/A/P/S before 2015, N/K/E/S until summer 2018 (statements being converted),
  N/K/E from autumn 2018.
- Dual registration: about 1.5% of pupils are M (main) at one school and S (subsidiary) at the next
  school of the same phase; the same UPN and identity appear in both files.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import ClassVar, Literal

from censustrace.census import codes
from censustrace.census.generator import names
from censustrace.census.generator.options import GeneratorOptions
from censustrace.census.identifiers import UPN_CHECK_TABLE, make_temporary_upn, make_upn, uln_check_digit
from censustrace.census.model import FsmPeriod, PupilRecord

Phase = Literal["primary", "secondary", "special"]
_PHASES: tuple[Phase, ...] = ("primary", "secondary", "special")

# Neighbouring LAs that allocated some pupils' UPNs (all real LA numbers, so stdnum accepts them).
_OTHER_LAS = ("331", "332", "333", "334", "335", "336", "885", "860")
_PERMANENT_SERIALS = 1000
_TEMPORARY_SERIALS = 100 * len(UPN_CHECK_TABLE)
_ULN_STEP = 48_271  # prime, so coprime with 9 * 10**7: index -> 8-digit ULN stem is one-to-one


@dataclass(frozen=True, slots=True)
class School:
    index: int
    la: str
    estab: str
    urn: str
    phase: Phase
    name: str
    nursery: bool
    sixth_form: bool

    @property
    def laestab(self) -> str:
        return self.la + self.estab


@dataclass(frozen=True, slots=True)
class Census:
    term: str
    year: int
    reference_date: dt.date
    academic_year: int  # calendar year the academic year began
    collects_nationality: bool
    sen_provision: names.Weighted[str]
    special_sen_provision: names.Weighted[str]

    @classmethod
    def of(cls, term: str, year: int) -> Census:
        ref = codes.reference_date(term, year)
        if ref < dt.date(2015, 1, 1):
            mainstream = [("N", 81.2), ("A", 10.0), ("P", 6.0), ("S", 2.8)]
            special = [("S", 95.0), ("P", 5.0)]
        elif ref < dt.date(2018, 9, 1):
            mainstream = [("N", 84.2), ("K", 13.0), ("E", 1.5), ("S", 1.3)]
            special = [("E", 60.0), ("S", 35.0), ("K", 5.0)]
        else:
            mainstream = [("N", 84.0), ("K", 13.0), ("E", 3.0)]
            special = [("E", 95.0), ("K", 5.0)]
        return cls(
            term=term,
            year=year,
            reference_date=ref,
            academic_year=codes.academic_year_start(term, year),
            collects_nationality=codes.collects_nationality(term, year),
            sen_provision=names.Weighted(mainstream),
            special_sen_provision=names.Weighted(special),
        )


def _phase(index: int) -> Phase:
    # About 5 primaries to 1 secondary, 1 special in 25; school 0 is a secondary so that even a
    # two-school run has ULNs and YSSA.
    if index % 5 == 0:
        return "secondary"
    if index % 25 == 12:
        return "special"
    return "primary"


class _EstabNumbers:
    """Phase-typical establishment numbers (2xxx-3xxx primary, 4xxx secondary, 7xxx special), then
    any free block, so up to 9,000 schools get distinct numbers."""

    _BLOCKS: ClassVar[dict[Phase, tuple[int, ...]]] = {
        "primary": (2, 3, 1, 5, 6, 8, 9, 4, 7),
        "secondary": (4, 5, 6, 8, 9, 1, 2, 3, 7),
        "special": (7, 8, 9, 1, 5, 6, 2, 3, 4),
    }

    def __init__(self) -> None:
        self._next = {block: block * 1000 for block in range(1, 10)}

    def take(self, phase: Phase) -> str:
        for block in self._BLOCKS[phase]:
            number = self._next[block]
            if number < (block + 1) * 1000:
                self._next[block] = number + 1
                return str(number)
        raise ValueError("no free establishment number")  # prevented by MAX_SCHOOLS


def plan_schools(options: GeneratorOptions) -> list[School]:
    estabs = _EstabNumbers()
    la_number = int(options.la)
    schools = []
    for index in range(options.schools):
        phase = _phase(index)
        stem = names.SCHOOL_STEMS[index % len(names.SCHOOL_STEMS)]
        suffix = "" if index < len(names.SCHOOL_STEMS) else f" {index // len(names.SCHOOL_STEMS) + 1}"
        kind = {"primary": "Primary School", "secondary": "Academy", "special": "Special School"}[phase]
        schools.append(
            School(
                index=index,
                la=options.la,
                estab=estabs.take(phase),
                # 104729 is prime, so distinct indexes give distinct 6-digit URNs.
                urn=str(100000 + (la_number * 7919 + index * 104729) % 900000),
                phase=phase,
                name=f"{stem}{suffix} {kind}",
                nursery=phase == "primary" and index % 3 == 1,
                sixth_form=phase == "secondary" and (index // 5) % 2 == 0,
            )
        )
    return schools


def _year_groups(school: School) -> names.Weighted[str]:
    if school.phase == "primary":
        groups = [(g, 1.0) for g in ("R", "1", "2", "3", "4", "5", "6")]
        if school.nursery:
            groups += [("N1", 0.2), ("N2", 0.8)]
    elif school.phase == "secondary":
        groups = [(str(n), 1.0) for n in range(7, 12)]
        if school.sixth_form:
            groups += [("12", 0.6), ("13", 0.55)]
    else:
        groups = [(str(n), 1.0) for n in range(1, 12)] + [("R", 0.5), ("12", 0.6), ("13", 0.5), ("14", 0.4)]
    return names.Weighted(groups)


def _uniform_date(rng: random.Random, first: dt.date, last: dt.date) -> dt.date:
    if last <= first:
        return first
    return dt.date.fromordinal(rng.randint(first.toordinal(), last.toordinal()))


def _term_start(year: int) -> dt.date:
    """First weekday on or after 3 September: the usual first day of the school year."""
    day = dt.date(year, 9, 3)
    return day + dt.timedelta(days=max(0, 7 - day.weekday()) if day.weekday() >= 5 else 0)


class PupilFactory:
    """Makes the pupils of each school in turn; call :meth:`pupils` for schools in index order."""

    def __init__(self, options: GeneratorOptions, census: Census, schools: Sequence[School]) -> None:
        self.options = options
        self.census = census
        self.schools = schools
        self._primaries = [s for s in schools if s.phase == "primary"]
        self._has_next_same_phase = [False] * len(schools)
        seen: set[Phase] = set()
        for school in reversed(schools):
            self._has_next_same_phase[school.index] = school.phase in seen
            seen.add(school.phase)
        self._pending: dict[Phase, list[PupilRecord]] = {phase: [] for phase in _PHASES}
        self._permanent: dict[tuple[str, str, int], int] = {}
        self._temporary: dict[tuple[str, str, int], int] = {}
        self._uln_offset = random.Random(f"censustrace-gen:{options.seed}:uln").randrange(90_000_000)

    def pupils(self, school: School, rng: random.Random) -> Iterator[PupilRecord]:
        """Exactly ``pupils_per_school`` records: new pupils, then subsidiary rows of dual pupils."""
        per_school = self.options.pupils_per_school
        subsidiaries = self._pending[school.phase]
        self._pending[school.phase] = []
        groups = _year_groups(school)
        # At most half a school's roll can be passed on, so the next school can always take them.
        main_dual_left = per_school // 2 if self._has_next_same_phase[school.index] else 0
        for k in range(per_school - len(subsidiaries)):
            main_dual = main_dual_left > 0 and rng.random() < 0.015
            pupil = self._new_pupil(school, school.index * per_school + k, groups, main_dual, rng)
            if main_dual:
                main_dual_left -= 1
                self._pending[school.phase].append(pupil)
            yield pupil
        for main in subsidiaries:
            yield self._subsidiary(main, school, rng)

    # --- one pupil -------------------------------------------------------------------------------

    def _new_pupil(
        self,
        school: School,
        global_index: int,
        groups: names.Weighted[str],
        main_dual: bool,
        rng: random.Random,
    ) -> PupilRecord:
        census = self.census
        ref = census.reference_date
        ay = census.academic_year
        nc_year = groups.pick(rng)
        age = codes.NC_YEAR_AGE[nc_year]
        dob = _uniform_date(rng, dt.date(ay - age - 1, 9, 1), dt.date(ay - age, 8, 31))
        sex = "F" if rng.random() < 0.49 else "M"

        temporary = rng.random() < 0.01
        entry_date = self._entry_date(school, nc_year, age, temporary, rng)
        if temporary:
            upn = self._temporary_upn(school.la, school.estab, entry_date.year)
        else:
            upn = self._permanent_upn(school, age, entry_date, rng)
        former_upn = None
        if not temporary and rng.random() < 0.02:
            former_upn = self._temporary_upn(school.la, school.estab, entry_date.year)
        numeric_year = int(nc_year) if nc_year.isdigit() else 0
        uln = self._uln(global_index) if numeric_year >= 10 and rng.random() < 0.95 else None

        forenames = names.FEMALE_FORENAMES if sex == "F" else names.MALE_FORENAMES
        surname = names.SURNAMES.pick(rng)
        middle_names = None
        roll = rng.random()
        if roll < 0.05:
            middle_names = f"{forenames.pick(rng)} {forenames.pick(rng)}"
        elif roll < 0.38:
            middle_names = forenames.pick(rng)
        preferred_surname = names.SURNAMES.pick(rng) if rng.random() < 0.04 else None
        former_surname = names.SURNAMES.pick(rng) if rng.random() < 0.01 else None

        nationality: tuple[str, ...] = ()
        country_of_birth = None
        if census.collects_nationality:
            nationality = (names.NATIONALITY.pick(rng),)
            if nationality[0] in codes.ISO3166_ALPHA3 and rng.random() < 0.02:
                second = names.NATIONALITY.pick(rng)
                if second in codes.ISO3166_ALPHA3 and second != nationality[0]:
                    nationality += (second,)
            country_of_birth = names.COUNTRY_OF_BIRTH.pick(rng)

        special = school.phase == "special"
        sen_provision = (census.special_sen_provision if special else census.sen_provision).pick(rng)
        sen_needs = self._sen_needs(sen_provision, rng)
        nursery = nc_year in ("N1", "N2")
        fsm_periods = self._fsm_periods(dob, ay - age + 4 if age >= 4 else ay, rng)
        return PupilRecord(
            upn=upn,
            former_upn=former_upn,
            uln=uln,
            surname=surname,
            forename=forenames.pick(rng),
            middle_names=middle_names,
            preferred_surname=preferred_surname,
            former_surname=former_surname,
            dob=dob,
            sex=sex,
            ethnicity=names.ETHNICITY.pick(rng),
            language=names.LANGUAGE.pick(rng),
            service_child=names.SERVICE_CHILD.pick(rng),
            nationality=nationality,
            country_of_birth=country_of_birth,
            entry_date=entry_date,
            enrol_status="M" if main_dual else ("O" if rng.random() < 0.002 else "C"),
            nc_year=nc_year,
            boarder=school.phase != "primary" and rng.random() < 0.01,
            part_time=rng.random() < (0.7 if nursery else 0.003),
            yssa=names.YSSA.pick(rng) if numeric_year >= 9 else None,
            top_up_funding=rng.random() < {"E": 0.6, "S": 0.6, "K": 0.04}.get(sen_provision, 0.0),
            sen_provision=sen_provision,
            sen_needs=sen_needs,
            address_lines=self._address(rng),
            postcode=self._postcode(rng),
            uprn=str(rng.randrange(10**9, 10**12)) if rng.random() < 0.92 else None,
            fsm_eligible=any(p.covers(ref) for p in fsm_periods),
            fsm_periods=fsm_periods,
            laestab=school.laestab,
            urn=school.urn,
            census_term=census.term,
            census_year=census.year,
            reference_date=ref,
        )

    def _subsidiary(self, main: PupilRecord, school: School, rng: random.Random) -> PupilRecord:
        """The same pupil as a subsidiary dual registration at ``school``."""
        ref = self.census.reference_date
        return dataclasses.replace(
            main,
            enrol_status="S",
            entry_date=_uniform_date(rng, _term_start(self.census.academic_year), ref - dt.timedelta(days=1)),
            part_time=True,
            boarder=False,
            top_up_funding=False,
            laestab=school.laestab,
            urn=school.urn,
        )

    # --- parts -----------------------------------------------------------------------------------

    def _entry_date(
        self, school: School, nc_year: str, age: int, temporary: bool, rng: random.Random
    ) -> dt.date:
        ref = self.census.reference_date
        ay = self.census.academic_year
        latest = ref - dt.timedelta(days=1)
        if temporary:  # only just arrived: within the last eight weeks, this school year
            return _uniform_date(rng, max(_term_start(ay), ref - dt.timedelta(weeks=8)), latest)
        # The year group this school normally takes pupils in.
        if school.phase == "secondary":
            first_age = 16 if age >= 16 and rng.random() < 0.3 else 11
        elif school.phase == "primary":
            first_age = min(age, 2 if nc_year == "N1" else 3) if school.nursery else 4
        else:
            first_age = rng.randint(4, age) if age >= 4 else age
        first_age = min(first_age, age)
        natural = _term_start(ay - (age - first_age))
        if rng.random() < 0.08:  # in-year admission some time after the natural start
            return _uniform_date(rng, natural, latest)
        return min(natural, latest)

    def _permanent_upn(self, school: School, age: int, entry_date: dt.date, rng: random.Random) -> str:
        ay = self.census.academic_year
        roll = rng.random()
        first_school_year = ay - max(0, age - 4)  # the September they started reception
        share_own = {"primary": 0.88, "secondary": 0.05, "special": 0.4}[school.phase]
        share_other_la = 0.03 if school.phase != "special" else 0.1
        if roll < share_own or (not self._primaries and roll < 1 - share_other_la):
            la, estab, year = school.la, school.estab, min(entry_date.year, self.census.year)
        elif roll < 1 - share_other_la:
            allocator = self._primaries[rng.randrange(len(self._primaries))]
            la, estab, year = allocator.la, allocator.estab, first_school_year
        else:
            la = _OTHER_LAS[rng.randrange(len(_OTHER_LAS))]
            estab, year = str(rng.randint(2000, 3999)), first_school_year
        # Serials run out only for absurd rolls; then the allocation moves to a later year.
        for candidate in range(min(year, self.census.year), self.census.year + 1):
            serial = self._next_serial(self._permanent, (la, estab, candidate), _PERMANENT_SERIALS)
            if serial is not None:
                return make_upn(la, estab, candidate % 100, serial)
        for attempt in range(10_000):  # fall back to another school of a neighbouring LA
            other = (_OTHER_LAS[attempt % len(_OTHER_LAS)], str(2000 + attempt % 2000), self.census.year)
            serial = self._next_serial(self._permanent, other, _PERMANENT_SERIALS)
            if serial is not None:
                return make_upn(other[0], other[1], other[2] % 100, serial)
        raise RuntimeError("UPN serials exhausted")

    def _temporary_upn(self, la: str, estab: str, year: int) -> str:
        for candidate in range(year, year + 100):
            n = self._next_serial(self._temporary, (la, estab, candidate), _TEMPORARY_SERIALS)
            if n is not None:
                serial, letter = divmod(n, len(UPN_CHECK_TABLE))
                return make_temporary_upn(la, estab, candidate % 100, serial, UPN_CHECK_TABLE[letter])
        raise RuntimeError("temporary UPN serials exhausted")

    @staticmethod
    def _next_serial(
        counters: dict[tuple[str, str, int], int], key: tuple[str, str, int], limit: int
    ) -> int | None:
        used = counters.get(key, 0)
        if used >= limit:
            return None
        counters[key] = used + 1
        return used

    def _uln(self, global_index: int) -> str:
        stem = str(10_000_000 + (global_index * _ULN_STEP + self._uln_offset) % 90_000_000)
        digit = global_index % 10
        # At most one of the ten 9th digits leaves no valid check digit, so this ends in two steps.
        while (check := uln_check_digit(f"{stem}{digit}")) is None:
            digit = (digit + 1) % 10
        return f"{stem}{digit}{check}"

    def _sen_needs(self, provision: str, rng: random.Random) -> tuple[str, ...]:
        if provision in ("N", "A"):
            return ()
        first = names.SEN_NEEDS.pick(rng)
        if rng.random() < 0.2:
            second = names.SEN_NEEDS.pick(rng)
            if second != first:
                return (first, second)
        return (first,)

    def _fsm_periods(self, dob: dt.date, school_start_year: int, rng: random.Random) -> tuple[FsmPeriod, ...]:
        if rng.random() >= 0.27:
            return ()
        ref = self.census.reference_date
        earliest = max(
            _term_start(min(school_start_year, self.census.academic_year)), dob + dt.timedelta(days=730)
        )
        if earliest > ref:
            return ()
        periods = []
        start = _uniform_date(rng, earliest, ref)
        if rng.random() < 0.25 and start < ref - dt.timedelta(days=30):
            end = _uniform_date(rng, start, ref - dt.timedelta(days=20))
            periods.append(FsmPeriod(start, end, names.FSM_COUNTRY.pick(rng)))
            start = _uniform_date(rng, end + dt.timedelta(days=1), ref)
        last_end = None if rng.random() < 0.7 else _uniform_date(rng, start, ref)
        periods.append(FsmPeriod(start, last_end, names.FSM_COUNTRY.pick(rng)))
        return tuple(periods)

    def _address(self, rng: random.Random) -> tuple[str, ...]:
        la_number = int(self.options.la)
        town = names.TOWNS[la_number % len(names.TOWNS)]
        county = names.COUNTIES[la_number % len(names.COUNTIES)]
        saon = ""
        if rng.random() < 0.12:
            saon = f"Flat {rng.randint(1, 40)}"
            paon = names.BUILDINGS[rng.randrange(len(names.BUILDINGS))]
        elif rng.random() < 0.1:
            paon = names.HOUSE_NAMES[rng.randrange(len(names.HOUSE_NAMES))]
        else:
            paon = str(rng.randint(1, 240))
        locality = names.LOCALITIES[rng.randrange(len(names.LOCALITIES))] if rng.random() < 0.2 else ""
        return (saon, paon, names.STREETS.pick(rng), locality, town, county, town.upper())

    @staticmethod
    def _postcode(rng: random.Random) -> str:
        outward = names.OUTWARD_CODES[rng.randrange(len(names.OUTWARD_CODES))]
        letters = names.INWARD_LETTERS
        return f"{outward} {rng.randrange(10)}{letters[rng.randrange(20)]}{letters[rng.randrange(20)]}"
