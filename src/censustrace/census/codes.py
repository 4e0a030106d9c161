"""Census code sets and the census calendar (see docs/data-model.md).

Codes are the values as written in the files (upper case unless noted). Where the brief gives only a
selection ("e.g."), the set here is the selection this project knows; a reader may meet others.
"""

from __future__ import annotations

import datetime as dt
from typing import Final

SEX: Final = frozenset({"M", "F"})

# C current single registration, M main dual, S subsidiary dual, F FE college, O other.
ENROL_STATUS: Final = frozenset({"C", "M", "S", "F", "O"})

# In school order; the age is the age at 31 August before the academic year starts.
# Assumption: E1/E2 are the two early-years groups before N1 (ages 0 and 1), N1 age 2, N2 age 3.
NC_YEAR_AGE: Final[dict[str, int]] = {
    "E1": 0,
    "E2": 1,
    "N1": 2,
    "N2": 3,
    "R": 4,
    **{str(n): n + 4 for n in range(1, 15)},
}
# M mixed and X no national-curriculum year have no fixed age.
NC_YEAR: Final = frozenset({*NC_YEAR_AGE, "M", "X"})

# Current codes: N none, E EHC plan, K SEN support. Legacy (older files): A School Action,
# P School Action Plus, S statement.
SEN_PROVISION_CURRENT: Final = frozenset({"N", "E", "K"})
SEN_PROVISION_LEGACY: Final = frozenset({"A", "P", "S"})
SEN_PROVISION: Final = SEN_PROVISION_CURRENT | SEN_PROVISION_LEGACY

# SEN primary/secondary need types (CBDS; not in the brief, so an assumption).
SEN_NEED: Final = frozenset(
    {"SPLD", "MLD", "SLD", "PMLD", "SEMH", "SLCN", "HI", "VI", "MSI", "PD", "ASD", "OTH", "NSA"}
)

# Refused / not-obtained codes: a family's decision or a gap, never data about the child to pass on.
ETHNICITY_NOT_DATA: Final = frozenset({"REFU", "NOBT"})
ETHNICITY: Final = (
    frozenset(
        {
            "WBRI", "WIRI", "WIRT", "WOTH", "WROM",
            "MWBC", "MWBA", "MWAS", "MOTH",
            "AIND", "APKN", "ABAN", "AOTH",
            "BCRB", "BAFR", "BOTH",
            "CHNE", "OOTH",
        }
    )
    | ETHNICITY_NOT_DATA
)  # fmt: skip

LANGUAGE_NOT_DATA: Final = frozenset({"REF", "NOT"})
# ENG English, ENB believed English, OTB believed other than English; then a selection of
# ISO-639-like codes (exact CBDS spellings unconfirmed).
LANGUAGE: Final = (
    frozenset(
        {
            "ENG", "ENB", "OTB",
            "ARA", "BNG", "CHI", "FRN", "GER", "GUJ", "ITA", "LIT", "PNJ", "POL", "POR",
            "RMN", "SOM", "SPA", "TAM", "TUR", "URD",
        }
    )
    | LANGUAGE_NOT_DATA
)  # fmt: skip

# ISO 3166-1 alpha-3 (all 249 assigned codes).
_ISO3166_ALPHA3_TEXT = """
    ABW AFG AGO AIA ALA ALB AND ARE ARG ARM ASM ATA ATF ATG AUS AUT AZE BDI BEL BEN BES BFA
    BGD BGR BHR BHS BIH BLM BLR BLZ BMU BOL BRA BRB BRN BTN BVT BWA CAF CAN CCK CHE CHL CHN
    CIV CMR COD COG COK COL COM CPV CRI CUB CUW CXR CYM CYP CZE DEU DJI DMA DNK DOM DZA ECU
    EGY ERI ESH ESP EST ETH FIN FJI FLK FRA FRO FSM GAB GBR GEO GGY GHA GIB GIN GLP GMB GNB
    GNQ GRC GRD GRL GTM GUF GUM GUY HKG HMD HND HRV HTI HUN IDN IMN IND IOT IRL IRN IRQ ISL
    ISR ITA JAM JEY JOR JPN KAZ KEN KGZ KHM KIR KNA KOR KWT LAO LBN LBR LBY LCA LIE LKA LSO
    LTU LUX LVA MAC MAF MAR MCO MDA MDG MDV MEX MHL MKD MLI MLT MMR MNE MNG MNP MOZ MRT MSR
    MTQ MUS MWI MYS MYT NAM NCL NER NFK NGA NIC NIU NLD NOR NPL NRU NZL OMN PAK PAN PCN PER
    PHL PLW PNG POL PRI PRK PRT PRY PSE PYF QAT REU ROU RUS RWA SAU SDN SEN SGP SGS SHN SJM
    SLB SLE SLV SMR SOM SPM SRB SSD STP SUR SVK SVN SWE SWZ SXM SYC SYR TCA TCD TGO THA TJK
    TKL TKM TLS TON TTO TUN TUR TUV TWN TZA UGA UKR UMI URY USA UZB VAT VCT VEN VGB VIR VNM
    VUT WLF WSM YEM ZAF ZMB ZWE
"""
ISO3166_ALPHA3: Final = frozenset(_ISO3166_ALPHA3_TEXT.split())
# Nationality and country of birth were collected from autumn 2016 to summer 2018 only.
# REF refused, NYO not yet obtained, STA stateless, NKO not known.
NATIONALITY_NOT_DATA: Final = frozenset({"REF", "NYO", "NKO"})
NATIONALITY: Final = ISO3166_ALPHA3 | NATIONALITY_NOT_DATA | {"STA"}
# Assumption: STA (stateless) describes a nationality, not a place, so it is not a country of birth.
COUNTRY_OF_BIRTH: Final = ISO3166_ALPHA3 | NATIONALITY_NOT_DATA

# Y yes, N no, U unknown, R refused.
SERVICE_CHILD: Final = frozenset({"Y", "N", "U", "R"})

# Youth support services agreement, written as in the brief: Yes, No, UNS unsought, SNR sought no
# reply (exact CBDS spelling of the first two unconfirmed).
YSSA: Final = frozenset({"Yes", "No", "UNS", "SNR"})

FSM_UK_COUNTRY: Final = frozenset({"ENG", "NIR", "SCT", "WLS"})

TERMS: Final = ("AUT", "SPR", "SUM")

# Census day rules. ASSUMPTION: these are the usual DfE census days in recent years (e.g. 2 Oct 2025,
# 16 Jan 2025, 15 May 2025), applied to every year; DfE publishes the actual dates each year.
_CENSUS_DAY: Final[dict[str, tuple[int, int]]] = {"AUT": (10, 1), "SPR": (1, 3), "SUM": (5, 3)}
_THURSDAY = 3

# Census terms that collected nationality and country of birth (autumn 2016 to summer 2018).
NATIONALITY_TERMS: Final = frozenset(
    {("AUT", 2016), ("SPR", 2017), ("SUM", 2017), ("AUT", 2017), ("SPR", 2018), ("SUM", 2018)}
)


def _check_term(term: str) -> None:
    if term not in _CENSUS_DAY:
        raise ValueError(f"term must be one of {', '.join(TERMS)}")


def reference_date(term: str, year: int) -> dt.date:
    """The census (reference) day of ``term`` in calendar ``year``.

    ``year`` is the calendar year in which the census day falls, so the 2026/27 academic year has
    AUT 2026, SPR 2027 and SUM 2027. AUT is the first Thursday of October, SPR the third Thursday of
    January and SUM the third Thursday of May (an assumption, see ``_CENSUS_DAY``).
    """
    _check_term(term)
    month, nth = _CENSUS_DAY[term]
    first = dt.date(year, month, 1)
    first_thursday = first + dt.timedelta(days=(_THURSDAY - first.weekday()) % 7)
    return first_thursday + dt.timedelta(weeks=nth - 1)


def term_containing(day: dt.date) -> tuple[str, int]:
    """The census term (and its census year) whose school term contains ``day``: autumn September to
    December, spring January to March, summer April to August (an assumption: school terms vary a
    little by LA and by Easter). The demo and the tests generate their sample for this term."""
    if day.month >= 9:
        return "AUT", day.year
    return ("SPR" if day.month <= 3 else "SUM"), day.year


def academic_year_bounds(term: str, year: int) -> tuple[dt.date, dt.date]:
    """First and last day (1 September, 31 August) of the academic year of census ``term``/``year``."""
    start = academic_year_start(term, year)
    return dt.date(start, 9, 1), dt.date(start + 1, 8, 31)


def academic_year_start(term: str, year: int) -> int:
    """The calendar year in which the academic year of census ``term``/``year`` began (September)."""
    _check_term(term)
    return year if term == "AUT" else year - 1


def collects_nationality(term: str, year: int) -> bool:
    """Whether the census of ``term``/``year`` collected nationality and country of birth."""
    _check_term(term)
    return (term, year) in NATIONALITY_TERMS


def nc_year_age(nc_year: str) -> int | None:
    """Age at 31 August before the academic year for an NC year; None for M, X or an unknown code."""
    return NC_YEAR_AGE.get(nc_year)
