"""The policy as data: the vocabularies a policy file may use (transforms, lawful bases, recipient
types, frequencies, override grounds), the floors no file can lower, the problems and errors a policy
file can have, and the frozen records the loader builds (fields, purposes, rules, gateways, agreements).
Nothing here reads a file: ``censustrace.consent.policies`` loads them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from types import MappingProxyType
from typing import Final, Literal

from censustrace.census import codes
from censustrace.census.model import PUPIL_FIELDS
from censustrace.errors import CensustraceError

#: Transform names an agreement may apply to a field (``none`` is always allowed; which others apply to
#: which field is in ``fields.yaml``). pseudonymise: keyed HMAC, as pupil keys; year_month / year:
#: a date cut to ``YYYY-MM`` / ``YYYY``; district / sector: a postcode cut to its outward code
#: (``AB1``) / outward code and sector digit (``AB1 2``).
TRANSFORMS: Final[tuple[str, ...]] = ("none", "pseudonymise", "year_month", "year", "district", "sector")

#: UK GDPR Art 6(1) lawful bases.
LAWFUL_BASES: Final[tuple[str, ...]] = (
    "consent",
    "contract",
    "legal_obligation",
    "vital_interests",
    "public_task",
    "legitimate_interests",
)
RECIPIENT_TYPES: Final[tuple[str, ...]] = (
    "local_authority",
    "government_department",
    "researcher",
    "health",
    "police",
    "other",
)
FREQUENCIES: Final[tuple[str, ...]] = ("once", "termly", "monthly", "weekly", "daily")

#: Purposes that are high risk whatever purposes.yaml says: allowed only with a named legal gateway and
#: an approval, always flagged ``high_risk`` (the DfE-Home Office case).
HIGH_RISK_PURPOSES: Final[tuple[str, ...]] = ("immigration.enforcement", "law_enforcement.*")
#: Floors fields.yaml cannot lower: nationality and country of birth are never shared; ethnicity and SEN
#: are special category (Art 9); the model's identifying fields are identifying.
NEVER_SHARE_FIELDS: Final = frozenset({"nationality", "country_of_birth"})
SPECIAL_CATEGORY_FIELDS: Final = frozenset({"ethnicity", "sen_provision", "sen_needs"})

FIELD_FLAGS: Final[tuple[str, ...]] = ("special_category", "identifying", "never_share")
AGREEMENT_CONDITIONS: Final = frozenset({"legal_gateway", "approval", "special_category_condition"})
FIELD_CONDITIONS: Final = frozenset({"transformed", "pseudonymised"})

FIELDS_FILE: Final = "fields.yaml"
PURPOSES_FILE: Final = "purposes.yaml"
RULES_FILE: Final = "rules.yaml"
GATEWAYS_FILE: Final = "gateways.yaml"
AGREEMENTS_DIR: Final = "agreements"
SCHEMAS_DIR: Final = "schemas"
AGREEMENT_SCHEMA: Final = "agreement.schema.json"
SCHEMA_OF: Final[Mapping[str, str]] = MappingProxyType(
    {
        FIELDS_FILE: "fields.schema.json",
        PURPOSES_FILE: "purposes.schema.json",
        RULES_FILE: "rules.schema.json",
        GATEWAYS_FILE: "gateways.schema.json",
    }
)
#: Grounds on which an agreement may record an approved override of pupils' objections (UK GDPR Art 21).
OVERRIDE_GROUNDS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "compelling_legitimate_grounds": "Art 21(1) compelling legitimate grounds",
        "research_public_interest": "Art 21(6) research or statistics in the public interest",
        "dpa2018_schedule2": "a DPA 2018 Schedule 2 restriction",
    }
)
#: Problems reported per file at most: enough to fix it.
MAX_PROBLEMS_PER_FILE: Final = 20

# Refused and not-obtained codes record a family's decision or a gap, not data about the child: the
# share builder never sends them as values (census/codes.py; service child R refused, U unknown).
_REFUSED_CODES: Final[Mapping[str, frozenset[str]]] = MappingProxyType(
    {
        "ethnicity": codes.ETHNICITY_NOT_DATA,
        "language": codes.LANGUAGE_NOT_DATA,
        "nationality": codes.NATIONALITY_NOT_DATA,
        "country_of_birth": codes.NATIONALITY_NOT_DATA,
        "service_child": frozenset({"R", "U"}),
    }
)


# Errors ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PolicyProblem:
    """One thing wrong in one policy file, at ``line`` (1-based; None when the file has no lines)."""

    file: str
    line: int | None
    message: str
    code: str = "CT-POLICY-INVALID"

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}" if self.line else self.file

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


class PolicyError(CensustraceError):
    """A policy file is missing, unreadable or invalid (``problems`` lists each with its file and line),
    or an agreement cannot be found."""

    code = "CT-POLICY-INVALID"

    def __init__(
        self, message: str, *, code: str | None = None, problems: Iterable[PolicyProblem] = ()
    ) -> None:
        super().__init__(message, code=code)
        self.problems: tuple[PolicyProblem, ...] = tuple(problems)

    @classmethod
    def of(cls, problems: Iterable[PolicyProblem]) -> PolicyError:
        found = tuple(problems)
        more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
        return cls(f"{found[0]}{more}", code=found[0].code, problems=found)


class UnknownAgreement(PolicyError):
    """No agreement with that id or file (CLI exit code 2: the user named something that is not there)."""

    code = "CT-POLICY-UNKNOWN-AGREEMENT"
    exit_code = 2


# The policy ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FieldPolicy:
    name: str
    description: str
    category: str
    special_category: bool
    identifying: bool
    sensitivity: str
    never_share: bool
    transforms: tuple[str, ...] = ()
    retention_days: int | None = None  # erased from older census records by census_retention

    def has_flag(self, flag: str) -> bool:
        return bool(getattr(self, flag)) if flag in FIELD_FLAGS else False

    def in_category(self, category: str) -> bool:
        """A category matches itself and everything under it (``health`` matches ``health.sen``)."""
        return self.category == category or self.category.startswith(category + ".")


@dataclass(frozen=True)
class Purpose:
    id: str
    description: str
    compatible_with_collection: bool
    high_risk: bool = False


def purpose_matches(pattern: str, purpose: str) -> bool:
    """``pattern`` is a purpose id, or ``prefix.*`` for every purpose under ``prefix``."""
    if pattern.endswith(".*"):
        return purpose.startswith(pattern[:-1])
    return pattern == purpose


@dataclass(frozen=True)
class Rule:
    """A deny or flag rule of rules.yaml; ``code`` is the reason code its verdicts carry."""

    id: str
    effect: Literal["deny", "flag"]
    reason: str
    flag: str | None = None
    purposes: tuple[str, ...] = ()
    recipient_types: tuple[str, ...] = ()
    fields: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    field_flags: tuple[str, ...] = ()
    unless: tuple[str, ...] = ()
    location: str = ""

    @property
    def code(self) -> str:
        return "CT-RULE-" + self.id.upper()

    @property
    def is_field_rule(self) -> bool:
        return bool(self.fields or self.categories or self.field_flags)

    def applies(self, purpose: str, recipient_type: str) -> bool:
        purpose_ok = not self.purposes or any(purpose_matches(p, purpose) for p in self.purposes)
        return purpose_ok and (not self.recipient_types or recipient_type in self.recipient_types)

    def selects(self, policy: FieldPolicy) -> bool:
        return (
            policy.name in self.fields
            or any(policy.in_category(c) for c in self.categories)
            or any(policy.has_flag(f) for f in self.field_flags)
        )


@dataclass(frozen=True)
class Recipient:
    name: str
    type: str


@dataclass(frozen=True)
class Approval:
    reference: str
    approved_by: str
    approved_on: date


@dataclass(frozen=True)
class ObjectionOverride:
    """An approved decision to send despite pupils' objections (Art 21(1), Art 21(6) or DPA 2018 Sch 2)."""

    ground: str
    reference: str
    approved_by: str
    approved_on: date


@dataclass(frozen=True)
class Gateway:
    """A legal gateway of ``gateways.yaml``: what agreements cite, and the purposes it supports."""

    id: str
    citation: str
    statute: str
    section: str | None
    aliases: tuple[str, ...]
    purposes: tuple[str, ...]
    description: str

    def supports(self, purpose: str) -> bool:
        return any(purpose_matches(p, purpose) for p in self.purposes)


def citation_key(text: str) -> str:
    """A citation compared case-, space- and punctuation-insensitively ("Section 537A" reads "s537A")."""
    words = re.sub(r"[^0-9a-z]+", " ", text.casefold()).split()
    out: list[str] = []
    for word in words:
        if out and out[-1] in ("section", "sec", "s") and re.fullmatch(r"[0-9]+[a-z]*", word):
            out[-1] = "s" + word
        else:
            out.append(word)
    return " ".join(out)


@dataclass(frozen=True)
class Scope:
    la: tuple[str, ...] = ()
    laestab: tuple[str, ...] = ()
    nc_years: tuple[str, ...] = ()


@dataclass(frozen=True)
class Agreement:
    """One data sharing agreement (``agreements/<id>.yaml``), exactly as written.

    ``lines`` maps a key path (``purpose``, ``fields[2]``, ``transforms.dob``) to its line in ``source``,
    so every reason can point at the line to fix; ``display`` is the file as named in messages.
    """

    id: str
    recipient: Recipient
    purpose: str
    lawful_basis: str
    special_category_condition: str | None
    legal_gateway: str | None
    approval: Approval | None
    valid_from: date
    valid_to: date
    fields: tuple[str, ...]
    scope: Scope
    transforms: Mapping[str, str]
    frequency: str
    format: str
    retention_days: int
    source: Path
    objection_override: ObjectionOverride | None = None
    display: str = field(default="", compare=False)
    lines: Mapping[str, int] = field(default_factory=dict, compare=False, repr=False)

    def where(self, key: str) -> str:
        """``file:line`` of ``key`` (or of the file when the key is absent)."""
        name = self.display or str(self.source)
        line = self.lines.get(key)
        return f"{name}:{line}" if line else name

    def transform(self, field_name: str) -> str:
        return self.transforms.get(field_name, "none")


def refused_codes(field_name: str) -> frozenset[str]:
    """Codes of ``field_name`` that are a refusal or a gap, never sent as values (empty for most)."""
    if field_name not in PUPIL_FIELDS:
        raise PolicyError(f"unknown census field {field_name!r}", code="CT-POLICY-UNKNOWN-FIELD")
    return _REFUSED_CODES.get(field_name, frozenset())
