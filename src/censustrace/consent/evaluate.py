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
from censustrace.consent.policies import (
    AGREEMENTS_DIR,
    HIGH_RISK_PURPOSES,
    LAWFUL_BASES,
    TRANSFORMS,
    Agreement,
    FieldPolicy,
    Policy,
    PolicyError,
    PolicyProblem,
    Rule,
    agreement_files,
    load_policy,
    policy_version,
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
        "CT-POLICY-GATEWAY-REQUIRED": "An incompatible or high-risk purpose needs a named legal gateway.",
    }
)

_ART9: Final = re.compile(
    r"^\s*(?:UK\s+GDPR\s+)?(?:Art(?:icle)?\.?\s*)?9\s*\(\s*2\s*\)\s*\(\s*[a-j]\s*\)", re.IGNORECASE
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
    if special and condition is not None and not _ART9.match(condition):
        j.deny(
            "CT-POLICY-ART9-UNKNOWN",
            f"special_category_condition {condition!r} ({a.where('special_category_condition')}) cites no "
            "Art 9(2)(a)-(j) condition, e.g. 'Art 9(2)(g) substantial public interest'",
        )


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
    _builtin_fields(agreement, known, j)
    _builtin_purpose(policy, agreement, high_risk, j)
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
    verdicts = tuple(evaluate(policy, a, as_of) for a in policy.agreements.values())
    return PolicyReport(policy.version_hash, as_of, verdicts)
