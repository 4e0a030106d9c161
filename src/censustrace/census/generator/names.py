"""Synthetic names, places and code frequencies for generated pupils.

Every name is invented to look obviously fake (Testington, Samplia), so generated files can never be
mistaken for, or matched against, real children. Frequencies are rough national shapes, good enough to
give validators and reports realistic mixes; they are not statistics. All accented names encode in
Windows-1252, which the ``wrong_encoding`` fault relies on.
"""

from __future__ import annotations

import random
from bisect import bisect_right
from collections.abc import Sequence
from itertools import accumulate
from typing import Generic, TypeVar

T = TypeVar("T")


class Weighted(Generic[T]):
    """A fixed weighted choice; ``pick`` costs one random number and one bisect."""

    __slots__ = ("_cum", "_total", "_values")

    def __init__(self, pairs: Sequence[tuple[T, float]]) -> None:
        if not pairs:
            raise ValueError("a weighted choice needs at least one value")
        self._values = [value for value, _ in pairs]
        self._cum = list(accumulate(weight for _, weight in pairs))
        self._total = self._cum[-1]

    def pick(self, rng: random.Random) -> T:
        return self._values[bisect_right(self._cum, rng.random() * self._total)]

    @property
    def values(self) -> tuple[T, ...]:
        return tuple(self._values)


def zipf(values: Sequence[str], exponent: float = 0.9) -> Weighted[str]:
    """Earlier values more common, as in real name-frequency lists."""
    return Weighted([(v, 1.0 / (rank + 1) ** exponent) for rank, v in enumerate(values)])


_SURNAME_STEMS = (
    "Test", "Sample", "Mock", "Dummy", "Fake", "Proto", "Synth", "Demo",
    "Trial", "Pseudo", "Placebo", "Fixture", "Stub", "Spoof", "Mimic",
)  # fmt: skip
_SURNAME_ENDINGS = (
    "ington", "wood", "ley", "worth", "field", "ridge", "by", "ton",
    "shaw", "ham", "croft", "stone", "well", "more", "ford", "son",
)  # fmt: skip
# Interleave stems so the most common surnames are not all "Test...".
SURNAMES = zipf(
    [stem + ending for ending in _SURNAME_ENDINGS for stem in _SURNAME_STEMS]
    + ["O'Testley", "Mock-Fieldson", "Van der Sample", "Ó Sampláin", "Fakeé"]
)

FEMALE_FORENAMES = zipf(
    [
        "Testina", "Samplia", "Mockella", "Demoira", "Fakira", "Synthia", "Protonia", "Triala",
        "Stubbie", "Fixtura", "Pseudia", "Mimica", "Placeba", "Dummia", "Spoofa",
        "Zoë-Test", "Renée-Sample", "Siân-Mock",
    ]
)  # fmt: skip
MALE_FORENAMES = zipf(
    [
        "Testor", "Samplo", "Mockford", "Demoran", "Fakeem", "Synthor", "Protonio", "Trialo",
        "Stubbert", "Fixtor", "Pseudon", "Mimico", "Placebert", "Dummond", "Spoofus",
        "Joël-Test", "Andrés-Sample", "Rhodrî-Mock",
    ]
)  # fmt: skip
# Forced into the first pupil of a ``wrong_encoding`` file so the wrong bytes are really there.
NON_ASCII_FORENAME = "Renée-Sample"

STREETS = zipf(
    [
        f"{stem} {kind}"
        for kind in ("Road", "Street", "Avenue", "Close", "Lane", "Grove", "Way", "Crescent", "Drive")
        for stem in ("Testwood", "Samplefield", "Mockley", "Dummy Hill", "Fixture Park", "Stubbington")
    ]
)
HOUSE_NAMES = ("Testcote", "Sample Lodge", "Mock Cottage", "The Fixtures", "Stub House")
BUILDINGS = ("Sample Court", "Testing House", "Mockingbird Flats", "Fixture Mansions")
LOCALITIES = ("Mockley Green", "Test End", "Sampleton Heath", "Lower Dummersby")
TOWNS = ("Testbury", "Samplethorpe", "Mockchester", "Dummington", "Fakesford", "Protoport")
COUNTIES = ("Testshire", "Sampleshire", "Mocklands", "Fixturehamshire")
SCHOOL_STEMS = (
    "Testwood", "Samplefield", "Mockley", "Stubbington", "Fixture Park", "Dummersby",
    "Proto Vale", "Trialbrook", "Pseudon Hill", "Mimicombe", "Spoofhurst", "Placebo Lane",
)  # fmt: skip

# Real-format outward codes; with a random inward code the postcode is format-valid, not real.
OUTWARD_CODES = (
    "B1", "B5", "B11", "B12", "B13", "B20", "B23", "B29", "B31", "B44",
    "B90", "CV1", "CV6", "WS1", "DY1", "WV1", "B66", "B70", "SW1A", "EC1V",
)  # fmt: skip
INWARD_LETTERS = "ABDEFGHJLNPQRSTUWXYZ"  # C, I, K, M, O and V never appear in an inward code

ETHNICITY = Weighted(
    [
        ("WBRI", 60.0), ("WIRI", 0.4), ("WIRT", 0.1), ("WOTH", 6.5), ("WROM", 0.6),
        ("MWBC", 1.6), ("MWBA", 0.9), ("MWAS", 1.5), ("MOTH", 2.2),
        ("AIND", 3.6), ("APKN", 4.5), ("ABAN", 1.9), ("AOTH", 2.1),
        ("BCRB", 1.1), ("BAFR", 4.5), ("BOTH", 0.6),
        ("CHNE", 0.5), ("OOTH", 2.2),
        ("REFU", 0.7), ("NOBT", 0.6),
    ]
)  # fmt: skip
LANGUAGE = Weighted(
    [
        ("ENG", 78.0), ("ENB", 1.2), ("OTB", 0.6),
        ("URD", 2.8), ("PNJ", 1.8), ("BNG", 1.6), ("POL", 2.0), ("ARA", 1.7), ("SOM", 1.2),
        ("RMN", 1.4), ("POR", 1.0), ("GUJ", 1.0), ("TAM", 0.6), ("TUR", 0.6), ("SPA", 0.7),
        ("ITA", 0.5), ("LIT", 0.5), ("CHI", 0.5), ("FRN", 0.4), ("GER", 0.2),
        ("REF", 0.3), ("NOT", 0.7),
    ]
)  # fmt: skip
# Spring 2018 shape: 15.4% not yet obtained, 1.5% refused.
NATIONALITY = Weighted(
    [
        ("GBR", 75.0), ("POL", 1.6), ("ROU", 1.0), ("IND", 0.8), ("PAK", 0.8), ("IRL", 0.3),
        ("NGA", 0.6), ("SOM", 0.4), ("PRT", 0.6), ("ITA", 0.5), ("LTU", 0.5), ("BGD", 0.4),
        ("CHN", 0.3), ("ESP", 0.4), ("STA", 0.05), ("NKO", 0.4), ("NYO", 15.4), ("REF", 1.5),
    ]
)  # fmt: skip
COUNTRY_OF_BIRTH = Weighted(
    [
        ("GBR", 76.0), ("POL", 1.2), ("ROU", 1.0), ("IND", 0.6), ("PAK", 0.6), ("NGA", 0.4),
        ("SOM", 0.3), ("PRT", 0.4), ("ITA", 0.4), ("LTU", 0.4), ("ESP", 0.3), ("DEU", 0.3),
        ("NKO", 0.3), ("NYO", 15.0), ("REF", 1.6),
    ]
)  # fmt: skip
SERVICE_CHILD = Weighted([("N", 94.5), ("Y", 2.0), ("U", 3.0), ("R", 0.5)])
YSSA = Weighted([("Yes", 22.0), ("No", 6.0), ("UNS", 57.0), ("SNR", 15.0)])
FSM_COUNTRY = Weighted([("ENG", 97.0), ("WLS", 1.0), ("SCT", 1.0), ("NIR", 1.0)])
SEN_NEEDS = Weighted(
    [
        ("SLCN", 24.0), ("SEMH", 20.0), ("ASD", 15.0), ("MLD", 12.0), ("SPLD", 10.0),
        ("OTH", 4.0), ("PD", 3.0), ("SLD", 2.5), ("HI", 2.0), ("VI", 1.0), ("PMLD", 1.0),
        ("MSI", 0.5),
    ]
)  # fmt: skip

CONSENT_PURPOSES = Weighted(
    [("research.approved", 50.0), ("health.school_nursing", 35.0), ("youth_support.services", 15.0)]
)
CONSENT_SOURCES = Weighted(
    [("parent_form", 60.0), ("mis_parental_consent", 30.0), ("privacy_notice_reply", 10.0)]
)
# Share of each purpose's decisions that are objections (the rest are consents).
OBJECTION_SHARE = {"research.approved": 0.85, "health.school_nursing": 0.35, "youth_support.services": 0.7}
