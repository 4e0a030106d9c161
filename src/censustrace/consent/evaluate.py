"""The agreement evaluator: one deterministic verdict (allow or deny, with every reason) per agreement.

Order of judgement, each adding reasons (see docs/policies.md for every code and why it exists):

1. names: the purpose, lawful basis, fields, transforms and NC years must be known to the policy;
2. approval and dates: an approval given by the day of the check, and the day within the validity dates;
3. built-in field rules: ``never_share`` fields are refused; special-category fields need an Art 9(2)
   condition;
4. built-in purpose rules: a purpose not compatible with collection, or a high-risk one, needs a named
   legal gateway; high-risk purposes are flagged ``high_risk``;
5. ``rules.yaml``: deny and flag rules over fields/categories x purposes x recipient types.

Any deny reason makes the verdict deny: an agreement is shared whole or not at all. The same policy
files, agreement and day always give the same verdict, reasons in the same order, byte for byte.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final, Literal

from censustrace.census.codes import NC_YEAR
from censustrace.consent.policies import Policy, agreement_files, load_policy, policy_version
from censustrace.consent.policy_model import (
    AGREEMENTS_DIR,
    HIGH_RISK_PURPOSES,
    LAWFUL_BASES,
    OVERRIDE_GROUNDS,
    TRANSFORMS,
    Agreement,
    FieldPolicy,
    PolicyError,
    PolicyProblem,
    Rule,
    purpose_matches,
)

#: Every built-in reason code and why it refuses (rule reason codes are ``CT-RULE-<ID>``, with their
#: reason in rules.yaml). docs/policies.md lists the same.
REASON_CODES: Final[Mapping[str, str]] = MappingProxyType(
    {
        "CT-POLICY-INVALID": "A policy file is invalid; every agreement is refused until it is fixed.",
        "CT-POLICY-YAML": "A policy file is not valid YAML (or not UTF-8).",
        "CT-POLICY-SCHEMA": "A JSON Schema in policies/schemas is not valid JSON or JSON Schema.",
        "CT-POLICY-FILE": "A policy file or folder is missing or unreadable.",
        "CT-POLICY-FLOOR": "fields.yaml lowers a built-in floor (never_share, special_category, identifying)",
        "CT-POLICY-UNKNOWN-AGREEMENT": "No agreement with that id or file.",
        "CT-POLICY-UNKNOWN-PURPOSE": "The purpose is not in purposes.yaml.",
        "CT-POLICY-UNKNOWN-LAWFUL-BASIS": "The lawful basis is not one of the six of UK GDPR Art 6(1).",
        "CT-POLICY-UNKNOWN-FIELD": "A field is not a census field in fields.yaml.",
        "CT-POLICY-UNKNOWN-TRANSFORM": "A transform is not one the share builder knows.",
        "CT-POLICY-TRANSFORM-NOT-APPLICABLE": "A transform does not apply to that field (fields.yaml).",
        "CT-POLICY-TRANSFORM-UNSHARED": "A transform names a field the agreement does not share.",
        "CT-POLICY-UNKNOWN-NC-YEAR": "The scope names an NC year that is not a census code.",
        "CT-POLICY-SCOPE-CONFLICT": "The scope names a school outside the scope's own LAs.",
        "CT-POLICY-NO-APPROVAL": "Every agreement needs a recorded approval.",
        "CT-POLICY-NOT-YET-APPROVED": "The approval is dated after the day of the check.",
        "CT-POLICY-DATES": "valid_to is before valid_from.",
        "CT-POLICY-NOT-YET-VALID": "The day of the check is before valid_from.",
        "CT-POLICY-EXPIRED": "The day of the check is after valid_to.",
        "CT-POLICY-NEVER-SHARE": "A never_share field (nationality, country of birth) is never shared.",
        "CT-POLICY-ART9-MISSING": "A special-category field needs an Art 9(2) condition.",
        "CT-POLICY-ART9-UNKNOWN": "The special_category_condition cites no Art 9(2)(a)-(j) condition.",
        "CT-POLICY-ART9-SCHEDULE1": "The Art 9(2) condition needs a DPA 2018 Schedule 1 paragraph (s10).",
        "CT-POLICY-GATEWAY-REQUIRED": "An incompatible or high-risk purpose needs a named legal gateway.",
        "CT-POLICY-GATEWAY-UNKNOWN": "A cited legal gateway is not in gateways.yaml.",
        "CT-POLICY-GATEWAY-PURPOSE": "No cited legal gateway supports the agreement's purpose.",
        "CT-POLICY-APPROVER-IS-RECIPIENT": "The approving body is the recipient itself.",
        "CT-POLICY-ART21-MARKETING": "Objections to direct marketing are absolute (Art 21(3)).",
        "CT-POLICY-ART21-OVERRIDE": "The objection override does not fit the lawful basis or purpose.",
    }
)

#: UK GDPR Art 9(2) conditions by name, and what DPA 2018 s10 adds: a Schedule 1 Part 1 paragraph for
#: (b), (h), (i) and (j), a Part 2 paragraph (6 to 28) for (g).
ART9_NAMES: Final[Mapping[str, str]] = MappingProxyType(
    {
        "explicit_consent": "a",
        "employment_social_security": "b",
        "vital_interests": "c",
        "not_for_profit_body": "d",
        "made_public": "e",
        "legal_claims": "f",
        "substantial_public_interest": "g",
        "health_social_care": "h",
        "public_health": "i",
        "archiving_research_statistics": "j",
    }
)
SCHEDULE1_PART1: Final[Mapping[str, int]] = MappingProxyType({"b": 1, "h": 2, "i": 3, "j": 4})
SCHEDULE1_PART2: Final = range(6, 29)
#: Lawful bases under which a pupil's objection (Art 21(1)) is honoured unless an override is recorded.
OBJECTION_BASES: Final = frozenset({"public_task", "legitimate_interests"})

_ART9: Final = re.compile(
    r"^\s*(?:UK\s+GDPR\s+)?(?:Art(?:icle)?\.?\s*)?9\s*\(\s*2\s*\)\s*\(\s*([a-j])\s*\)", re.IGNORECASE
)
_SCHEDULE1: Final = re.compile(
    r"^\s*(?:DPA\s*2018|Data\s+Protection\s+Act\s+2018)?,?\s*Sch(?:edule|\.)?\s*1\b[^0-9]*?"
    r"(?:Part\s*[12]\s*,?\s*)?para(?:graph|\.)?\s*([0-9]+)",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class PolicyReason:
    code: str
    message: str
    field: str | None

    def as_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "field": self.field}


@dataclass(frozen=True)
class Verdict:
    """What the policy says about one agreement on one day. An agreement is shared whole or not at all:
    on allow every field is in ``fields_allowed``; on deny every field is in ``fields_denied`` and the
    reasons' ``field`` names the fields at fault (None for a reason about the whole agreement)."""

    agreement: str
    verdict: Literal["allow", "deny"]
    flags: tuple[str, ...]
    reasons: tuple[PolicyReason, ...]
    fields_allowed: tuple[str, ...]
    fields_denied: tuple[str, ...]
    policy_version: str
    as_of: date | None = None
    source: str = ""
    #: How pupils' objections apply (Art 21): ``honoured`` (excluded), ``overridden`` (an approved
    #: override is recorded), ``recorded`` (legal obligation: kept in the register, the pupil is sent).
    objections: str = "honoured"
    notes: tuple[str, ...] = ()

    @property
    def allowed(self) -> bool:
        return self.verdict == "allow"

    def as_dict(self) -> dict[str, Any]:
        return {
            "agreement": self.agreement,
            "verdict": self.verdict,
            "flags": list(self.flags),
            "reasons": [r.as_dict() for r in self.reasons],
            "fields_allowed": list(self.fields_allowed),
            "fields_denied": list(self.fields_denied),
            "policy_version": self.policy_version,
            "as_of": self.as_of.isoformat() if self.as_of else None,
            "source": self.source,
            "objections": self.objections,
            "notes": list(self.notes),
        }


def purpose_covers(objected_purpose: str, share_purpose: str) -> bool:
    """An objection to ``a.b`` covers a share for ``a.b`` and for every sub-purpose ``a.b.c``."""
    return share_purpose == objected_purpose or share_purpose.startswith(objected_purpose + ".")


def is_high_risk(policy: Policy, purpose: str) -> bool:
    known = policy.purposes.get(purpose)
    return any(purpose_matches(p, purpose) for p in HIGH_RISK_PURPOSES) or bool(known and known.high_risk)


def _hint(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


class _Judgement:
    """Reasons (in a fixed order) and flags."""

    def __init__(self) -> None:
        self.reasons: list[PolicyReason] = []
        self.flags: set[str] = set()
        self.notes: list[str] = []

    def deny(self, code: str, message: str, field: str | None = None) -> None:
        self.reasons.append(PolicyReason(code, message, field))


def _names(policy: Policy, a: Agreement, j: _Judgement) -> None:
    if a.purpose not in policy.purposes:
        j.deny(
            "CT-POLICY-UNKNOWN-PURPOSE",
            f"purpose {a.purpose!r} ({a.where('purpose')}) is not in purposes.yaml"
            f"{_hint(a.purpose, list(policy.purposes))}",
        )
    if a.lawful_basis not in LAWFUL_BASES:
        j.deny(
            "CT-POLICY-UNKNOWN-LAWFUL-BASIS",
            f"lawful basis {a.lawful_basis!r} ({a.where('lawful_basis')}) is not one of "
            f"{', '.join(LAWFUL_BASES)}{_hint(a.lawful_basis, list(LAWFUL_BASES))}",
        )
    for i, name in enumerate(a.fields):
        if name not in policy.fields:
            j.deny(
                "CT-POLICY-UNKNOWN-FIELD",
                f"{name!r} ({a.where(f'fields[{i}]')}) is not a census field in fields.yaml"
                f"{_hint(name, list(policy.fields))}",
                name,
            )
    for name, transform in a.transforms.items():
        where = a.where(f"transforms.{name}")
        if name not in a.fields:
            j.deny(
                "CT-POLICY-TRANSFORM-UNSHARED",
                f"transform for {name!r} ({where}), a field the agreement does not share",
            )
        elif transform not in TRANSFORMS:
            j.deny(
                "CT-POLICY-UNKNOWN-TRANSFORM",
                f"transform {transform!r} for {name} ({where}) is not one of {', '.join(TRANSFORMS)}"
                f"{_hint(transform, list(TRANSFORMS))}",
                name,
            )
        elif (
            name in policy.fields and transform != "none" and transform not in policy.fields[name].transforms
        ):
            usable = ", ".join(("none", *policy.fields[name].transforms))
            j.deny(
                "CT-POLICY-TRANSFORM-NOT-APPLICABLE",
                f"transform {transform!r} does not apply to {name} ({where}); it can take: {usable}",
                name,
            )
    for i, nc_year in enumerate(a.scope.nc_years):
        if nc_year not in NC_YEAR:
            j.deny(
                "CT-POLICY-UNKNOWN-NC-YEAR",
                f"scope NC year {nc_year!r} ({a.where(f'scope.nc_years[{i}]')}) is not a census NC year "
                f"({', '.join(sorted(NC_YEAR))})",
            )
    if a.scope.la:
        for i, laestab in enumerate(a.scope.laestab):
            if laestab[:3] not in a.scope.la:
                j.deny(
                    "CT-POLICY-SCOPE-CONFLICT",
                    f"scope school {laestab} ({a.where(f'scope.laestab[{i}]')}) is not in the scope's "
                    f"LAs ({', '.join(a.scope.la)}): nothing would be shared from it",
                )


def _dates(a: Agreement, as_of: date, high_risk: bool, j: _Judgement) -> None:
    if a.valid_to < a.valid_from:
        j.deny(
            "CT-POLICY-DATES",
            f"valid_to {a.valid_to} ({a.where('valid_to')}) is before valid_from {a.valid_from}",
        )
    if a.approval is None:
        why = " (high-risk purposes are allowed only with an approval)" if high_risk else ""
        j.deny(
            "CT-POLICY-NO-APPROVAL",
            f"no approval ({a.where('approval')}): every agreement needs a recorded approval{why}",
        )
    elif a.approval.approved_on > as_of:
        j.deny(
            "CT-POLICY-NOT-YET-APPROVED",
            f"approval {a.approval.reference} is dated {a.approval.approved_on} "
            f"({a.where('approval.approved_on')}), after {as_of}",
        )
    if as_of < a.valid_from:
        j.deny(
            "CT-POLICY-NOT-YET-VALID",
            f"not valid until {a.valid_from} ({a.where('valid_from')}); checked for {as_of}",
        )
    elif as_of > a.valid_to:
        j.deny("CT-POLICY-EXPIRED", f"expired on {a.valid_to} ({a.where('valid_to')}); checked for {as_of}")


def _builtin_fields(a: Agreement, known: list[FieldPolicy], j: _Judgement) -> None:
    for f in known:
        if f.never_share:
            j.deny(
                "CT-POLICY-NEVER-SHARE",
                f"{f.name} ({a.where(f'fields[{a.fields.index(f.name)}]')}) is never shared, whatever the "
                "purpose, gateway or approval (nationality and country of birth were collected 2016-2018 "
                "only; families could refuse and DfE agreed to delete them)",
                f.name,
            )
    special = [f for f in known if f.special_category]
    condition = a.special_category_condition
    for f in special:
        if condition is None:
            j.deny(
                "CT-POLICY-ART9-MISSING",
                f"{f.name} is special category data (Art 9): the agreement names no "
                f"special_category_condition ({a.where('special_category_condition')})",
                f.name,
            )
    if special and condition is not None:
        _art9(a, condition, j)


def art9_conditions(text: str) -> tuple[set[str], set[int]]:
    """The Art 9(2) letters and DPA 2018 Schedule 1 paragraphs a ``;``-separated condition cites."""
    letters: set[str] = set()
    paragraphs: set[int] = set()
    for part in (p.strip() for p in text.split(";")):
        cited = _ART9.match(part)
        name = re.sub(r"[\s-]+", "_", part.casefold())
        if cited:
            letters.add(cited.group(1).lower())
        elif name in ART9_NAMES:
            letters.add(ART9_NAMES[name])
        schedule = _SCHEDULE1.match(part)
        if schedule:
            paragraphs.add(int(schedule.group(1)))
    return letters, paragraphs


def _art9(a: Agreement, condition: str, j: _Judgement) -> None:
    where = a.where("special_category_condition")
    letters, paragraphs = art9_conditions(condition)
    if not letters:
        j.deny(
            "CT-POLICY-ART9-UNKNOWN",
            f"special_category_condition {condition!r} ({where}) cites no Art 9(2)(a)-(j) condition, e.g. "
            "'Art 9(2)(g) substantial public interest; DPA 2018 Sch 1 para 6' or "
            "'substantial_public_interest; DPA 2018 Sch 1 para 6'",
        )
    for letter in sorted(letters):
        if letter in SCHEDULE1_PART1 and SCHEDULE1_PART1[letter] not in paragraphs:
            para = SCHEDULE1_PART1[letter]
            j.deny(
                "CT-POLICY-ART9-SCHEDULE1",
                f"Art 9(2)({letter}) is met only with DPA 2018 Schedule 1 Part 1 paragraph {para} (s10): "
                f"add 'DPA 2018 Sch 1 para {para}' to special_category_condition ({where})",
            )
        elif letter == "g" and not paragraphs.intersection(SCHEDULE1_PART2):
            j.deny(
                "CT-POLICY-ART9-SCHEDULE1",
                "Art 9(2)(g) is met only with a DPA 2018 Schedule 1 Part 2 paragraph (6 to 28, s10(3)), "
                f"e.g. 'DPA 2018 Sch 1 para 6' (statutory purposes) or 'para 18' (safeguarding): none is "
                f"cited in special_category_condition ({where})",
            )


def normalised_body(name: str) -> str:
    """A body's name compared for identity: case, punctuation, "the", legal suffixes and words naming
    a body's own committee ("board", "committee", ...) left out."""
    drop = {"the", "ltd", "limited", "plc", "llp", "inc", "board", "committee", "panel", "of", "directors"}
    words = re.sub(r"[^0-9a-z]+", " ", name.casefold().replace("&", " and ")).split()
    return " ".join(w for w in words if w not in drop)


def _approver(a: Agreement, j: _Judgement) -> None:
    if a.approval is None:
        return
    approver, recipient = normalised_body(a.approval.approved_by), normalised_body(a.recipient.name)
    if approver and (approver == recipient or approver.startswith(recipient + " ")):
        j.deny(
            "CT-POLICY-APPROVER-IS-RECIPIENT",
            f"approval {a.approval.reference} was given by {a.approval.approved_by!r} "
            f"({a.where('approval.approved_by')}), the recipient itself: an agreement is approved by a "
            "body independent of the recipient",
        )


def _gateways(policy: Policy, a: Agreement, j: _Judgement) -> None:
    if a.legal_gateway is None:
        return
    where = a.where("legal_gateway")
    cited = [c.strip() for c in a.legal_gateway.split(";") if c.strip()]
    found = []
    for citation in cited:
        gateway = policy.gateway(citation)
        if gateway is None:
            known = [g.citation for g in policy.gateways.values()]
            j.deny(
                "CT-POLICY-GATEWAY-UNKNOWN",
                f"legal gateway {citation!r} ({where}) is not in gateways.yaml{_hint(citation, known)}",
            )
        else:
            found.append(gateway)
    supported = any(g.supports(a.purpose) for g in found)
    if found and len(found) == len(cited) and a.purpose in policy.purposes and not supported:
        j.deny(
            "CT-POLICY-GATEWAY-PURPOSE",
            f"no cited legal gateway ({'; '.join(g.citation for g in found)}, {where}) supports purpose "
            f"{a.purpose} (gateways.yaml)",
        )


def is_direct_marketing(purpose: str) -> bool:
    return "marketing" in purpose.split(".")


def objection_mode(a: Agreement) -> str:
    """How pupils' objections apply to shares under ``a``: ``recorded`` (legal obligation: Art 21 does
    not apply), ``overridden`` (an approved override under public task or legitimate interests, never
    for direct marketing) or ``honoured``. An override the law does not allow also denies the agreement
    (see :func:`evaluate`); this function alone never sends an objecting pupil it should not."""
    if a.lawful_basis == "legal_obligation":
        return "recorded"
    overridable = a.lawful_basis in OBJECTION_BASES and not is_direct_marketing(a.purpose)
    return "overridden" if a.objection_override is not None and overridable else "honoured"


def _objections(a: Agreement, as_of: date, j: _Judgement) -> str:
    """How pupils' objections apply to this agreement (UK GDPR Art 21); deny an override that the law
    does not allow."""
    override = a.objection_override
    where = a.where("objection_override")
    if override is not None:
        if is_direct_marketing(a.purpose):
            j.deny(
                "CT-POLICY-ART21-MARKETING",
                f"objection_override ({where}) for direct marketing: an objection to direct marketing is "
                "absolute (Art 21(3)), no override is possible",
            )
        elif a.lawful_basis not in OBJECTION_BASES:
            j.deny(
                "CT-POLICY-ART21-OVERRIDE",
                f"objection_override ({where}) under lawful basis {a.lawful_basis}: Art 21(1) objections, "
                "and so their override, concern public_task and legitimate_interests only",
            )
        elif override.ground == "research_public_interest" and not a.purpose.startswith("research."):
            j.deny(
                "CT-POLICY-ART21-OVERRIDE",
                f"objection_override ground research_public_interest ({where}) for purpose {a.purpose}: "
                "Art 21(6) covers research and statistics only",
            )
        elif override.approved_on > as_of:
            j.deny(
                "CT-POLICY-ART21-OVERRIDE",
                f"objection_override {override.reference} is dated {override.approved_on}, after {as_of}",
            )
        elif normalised_body(override.approved_by) == normalised_body(a.recipient.name):
            j.deny(
                "CT-POLICY-ART21-OVERRIDE",
                f"objection_override {override.reference} was approved by the recipient itself ({where})",
            )
    if a.lawful_basis == "legal_obligation":
        j.notes.append(
            "lawful basis legal_obligation: the right to object (Art 21) does not apply; pupils' "
            "objections are recorded in the share register and the pupils are sent"
        )
        return "recorded"
    if a.lawful_basis in OBJECTION_BASES and override is not None and not is_direct_marketing(a.purpose):
        j.notes.append(
            f"objections overridden on {OVERRIDE_GROUNDS.get(override.ground, override.ground)} "
            f"(approval {override.reference}): objecting pupils are sent"
        )
        return "overridden"
    return "honoured"


def _builtin_purpose(policy: Policy, a: Agreement, high_risk: bool, j: _Judgement) -> None:
    purpose = policy.purposes.get(a.purpose)
    if high_risk:
        j.flags.add("high_risk")
    incompatible = purpose is not None and not purpose.compatible_with_collection
    if (incompatible or high_risk) and a.legal_gateway is None:
        why = (
            "is high risk: allowed only with a named legal gateway and an approval"
            if high_risk
            else "is not compatible with the purpose of collection: it needs a named legal gateway"
        )
        j.deny("CT-POLICY-GATEWAY-REQUIRED", f"purpose {a.purpose} {why} ({a.where('legal_gateway')})")


def _lifted(rule: Rule, a: Agreement, field: str | None) -> bool:
    """Whether every ``unless`` condition of the rule holds (a rule without ``unless`` always holds)."""
    if not rule.unless:
        return False
    held = {
        "legal_gateway": a.legal_gateway is not None,
        "approval": a.approval is not None,
        "special_category_condition": a.special_category_condition is not None,
        "transformed": field is not None and a.transform(field) != "none",
        "pseudonymised": field is not None and a.transform(field) == "pseudonymise",
    }
    return all(held[c] for c in rule.unless)


def _rules(policy: Policy, a: Agreement, known: list[FieldPolicy], j: _Judgement) -> None:
    for rule in policy.rules:
        if not rule.applies(a.purpose, a.recipient.type):
            continue
        if rule.is_field_rule:
            hit = [f.name for f in known if rule.selects(f) and not _lifted(rule, a, f.name)]
        else:
            hit = [] if _lifted(rule, a, None) else [""]
        if not hit:
            continue
        if rule.effect == "flag":
            j.flags.add(rule.flag or rule.id)
            continue
        for name in hit:
            subject = f"{name}: " if name else ""
            j.deny(rule.code, f"{subject}{rule.reason} (rule {rule.id}, {rule.location})", name or None)


def evaluate(policy: Policy, agreement: Agreement, as_of: date) -> Verdict:
    """The verdict on ``agreement`` for the day ``as_of``."""
    j = _Judgement()
    known = [policy.fields[name] for name in agreement.fields if name in policy.fields]
    high_risk = is_high_risk(policy, agreement.purpose)
    _names(policy, agreement, j)
    _dates(agreement, as_of, high_risk, j)
    _approver(agreement, j)
    _builtin_fields(agreement, known, j)
    _builtin_purpose(policy, agreement, high_risk, j)
    _gateways(policy, agreement, j)
    objections = _objections(agreement, as_of, j)
    _rules(policy, agreement, known, j)
    allowed = not j.reasons
    return Verdict(
        agreement=agreement.id,
        verdict="allow" if allowed else "deny",
        flags=tuple(sorted(j.flags)),
        reasons=tuple(j.reasons),
        fields_allowed=agreement.fields if allowed else (),
        fields_denied=() if allowed else agreement.fields,
        policy_version=policy.version_hash,
        as_of=as_of,
        source=agreement.display,
        objections=objections,
        notes=tuple(j.notes),
    )


def refused(agreement: str, error: PolicyError, version: str, as_of: date, source: str = "") -> Verdict:
    """A deny for an agreement that could not be judged: one reason per problem, each with file:line."""
    problems = error.problems
    reasons = (
        tuple(PolicyReason(p.code, str(p), None) for p in problems)
        if problems
        else (PolicyReason(error.code, error.message, None),)
    )
    return Verdict(agreement, "deny", (), reasons, (), (), version, as_of, source)


def _name_of(agreement_id_or_file: str) -> str:
    path = Path(agreement_id_or_file)
    return path.stem if path.suffix in (".yaml", ".yml") else agreement_id_or_file


def check_agreement(agreement_id_or_file: str, as_of: date, policies_dir: Path) -> Verdict:
    """Load the policy and judge one agreement (an id, or an agreement file). Never raises for bad
    policy files or an unknown agreement: the verdict is then deny with the problem(s) as reasons."""
    try:
        policy = load_policy(policies_dir)
        agreement = policy.agreement(agreement_id_or_file)
    except PolicyError as exc:
        name = _name_of(agreement_id_or_file)
        directory = policies_dir.expanduser().resolve()
        own = directory / AGREEMENTS_DIR / f"{name}.yaml"
        source = f"{directory.name}/{AGREEMENTS_DIR}/{own.name}" if own.is_file() else ""
        return refused(name, exc, policy_version(policies_dir), as_of, source)
    return evaluate(policy, agreement, as_of)


@dataclass(frozen=True)
class PolicyReport:
    """Every agreement's verdict on one day, and the policy's own problems (empty when it is valid)."""

    policy_version: str
    as_of: date
    verdicts: tuple[Verdict, ...]
    problems: tuple[PolicyProblem, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {
            "policy_version": self.policy_version,
            "as_of": self.as_of.isoformat(),
            "valid": not self.problems,
            "problems": [
                {"code": p.code, "file": p.file, "line": p.line, "message": p.message} for p in self.problems
            ],
            "agreements": [v.as_dict() for v in self.verdicts],
        }


def check_all(as_of: date, policies_dir: Path) -> PolicyReport:
    """A verdict for every agreement, by id. If the policy is invalid, every agreement file is listed
    as deny with the problems (nothing is ever allowed by default)."""
    try:
        policy = load_policy(policies_dir)
    except PolicyError as exc:
        version = policy_version(policies_dir)
        directory = policies_dir.expanduser().resolve()
        verdicts = tuple(
            refused(p.stem, exc, version, as_of, f"{directory.name}/{p.relative_to(directory).as_posix()}")
            for p in agreement_files(directory)
        )
        problems = exc.problems or (PolicyProblem(str(policies_dir), None, exc.message, exc.code),)
        return PolicyReport(version, as_of, verdicts, problems)
    directory = policy.directory
    judged = {a.id: evaluate(policy, a, as_of) for a in policy.agreements.values()}
    for stem, problems in policy.broken.items():
        source = f"{directory.name}/{AGREEMENTS_DIR}/{stem}.yaml"
        judged[stem] = refused(stem, PolicyError.of(problems), policy.version_hash, as_of, source)
    verdicts = tuple(judged[k] for k in sorted(judged))
    broken = tuple(p for problems in policy.broken.values() for p in problems)
    return PolicyReport(policy.version_hash, as_of, verdicts, broken)
