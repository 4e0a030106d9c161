"""The evaluator: a table of agreements (the shipped ones and variations of them) with the verdict,
reason codes, fields at fault and flags a compliance officer should see; determinism; objections."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import yaml

from censustrace.consent.evaluate import (
    REASON_CODES,
    Verdict,
    check_agreement,
    check_all,
    evaluate,
    purpose_covers,
)
from censustrace.consent.policies import load_policy
from tests.plugins.helpers.policies import CENSUS_DAY, REPO, SHIPPED, copy_policies, edit, line_of


def shipped(agreement_id: str) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((SHIPPED / "agreements" / f"{agreement_id}.yaml").read_text())
    return data


@dataclass(frozen=True)
class Case:
    """``base`` with ``changes`` (key -> value; None deletes nothing, it writes null), or with a raw
    text edit, judged on ``as_of``."""

    base: str
    verdict: str
    codes: tuple[str, ...] = ()
    at_fault: frozenset[str] = frozenset()
    flags: frozenset[str] = frozenset()
    changes: dict[str, Any] = field(default_factory=dict)
    text_edit: tuple[str, str] | None = None
    as_of: date = CENSUS_DAY


APPROVAL = {
    "reference": "DS09999",
    "approved_by": "Data Sharing Approvals Panel",
    "approved_on": date(2026, 8, 1),
}
STAT = shipped("la330-statutory-return-2026")
RESEARCH = shipped("research-attainment-gaps-2026")

TABLE: dict[str, Case] = {
    "issue 6 example as written (no Art 9 condition)": Case(
        "la330-sen-transport-2026",
        "deny",
        ("CT-POLICY-ART9-MISSING",),
        frozenset({"sen_provision"}),
        changes={"special_category_condition": None},
    ),
    "unknown field": Case(
        "la330-admissions-2026",
        "deny",
        ("CT-POLICY-UNKNOWN-FIELD",),
        frozenset({"postcde"}),
        changes={"fields": ["upn", "forename", "postcde"]},
    ),
    "unknown purpose": Case(
        "la330-admissions-2026",
        "deny",
        ("CT-POLICY-UNKNOWN-PURPOSE",),
        changes={"purpose": "education.admission"},
    ),
    "unknown lawful basis": Case(
        "la330-admissions-2026",
        "deny",
        ("CT-POLICY-UNKNOWN-LAWFUL-BASIS",),
        changes={"lawful_basis": "public_interest"},
    ),
    "expired": Case("la330-admissions-2026", "deny", ("CT-POLICY-EXPIRED",), as_of=date(2027, 9, 1)),
    "last day of validity": Case("la330-admissions-2026", "allow", as_of=date(2027, 8, 31)),
    "not yet valid": Case(
        "la330-admissions-2026", "deny", ("CT-POLICY-NOT-YET-VALID",), as_of=date(2026, 8, 31)
    ),
    "no approval": Case(
        "la330-admissions-2026", "deny", ("CT-POLICY-NO-APPROVAL",), changes={"approval": None}
    ),
    "approval dated after the day of the check": Case(
        "la330-admissions-2026",
        "deny",
        ("CT-POLICY-NOT-YET-APPROVED",),
        changes={"approval": {**APPROVAL, "approved_on": date(2026, 10, 2)}},
    ),
    "validity dates reversed": Case(
        "la330-admissions-2026",
        "deny",
        ("CT-POLICY-DATES", "CT-POLICY-NOT-YET-VALID"),
        changes={"valid_from": date(2027, 8, 31), "valid_to": date(2026, 9, 1)},
    ),
    "special category without Art 9 condition": Case(
        "research-attainment-gaps-2026",
        "deny",
        ("CT-POLICY-ART9-MISSING",),
        frozenset({"ethnicity", "sen_provision"}),
        frozenset({"special_category"}),
        changes={"special_category_condition": None},
    ),
    "Art 9 condition citing no ground": Case(
        "research-attainment-gaps-2026",
        "deny",
        ("CT-POLICY-ART9-UNKNOWN",),
        changes={"special_category_condition": "because the panel agreed"},
    ),
    "law enforcement with gateway and approval: allowed, flagged high_risk": Case(
        "police-missing-education-2026", "allow", flags=frozenset({"high_risk"})
    ),
    "law enforcement without gateway": Case(
        "police-missing-education-2026",
        "deny",
        ("CT-POLICY-GATEWAY-REQUIRED",),
        flags=frozenset({"high_risk"}),
        changes={"legal_gateway": None},
    ),
    "law enforcement without approval": Case(
        "police-missing-education-2026",
        "deny",
        ("CT-POLICY-NO-APPROVAL",),
        flags=frozenset({"high_risk"}),
        changes={"approval": None},
    ),
    "law enforcement asking for ethnicity and FSM": Case(
        "police-missing-education-2026",
        "deny",
        ("CT-POLICY-ART9-MISSING", "CT-RULE-ENFORCEMENT-NO-SPECIAL-CATEGORY-OR-DISADVANTAGE"),
        frozenset({"ethnicity", "fsm_eligible"}),
        frozenset({"high_risk"}),
        changes={"fields": ["upn", "forename", "ethnicity", "fsm_eligible"]},
    ),
    "immigration enforcement with gateway and approval: allowed, flagged high_risk": Case(
        "home-office-immigration-2026",
        "allow",
        flags=frozenset({"high_risk"}),
        changes={"legal_gateway": "s20 Immigration and Asylum Act 1999", "approval": APPROVAL},
    ),
    "police recipient for safeguarding is flagged high_risk": Case(
        "la330-admissions-2026",
        "allow",
        flags=frozenset({"high_risk"}),
        changes={
            "purpose": "local_authority.safeguarding",
            "recipient": {"name": "Police", "type": "police"},
            "legal_gateway": "s11 Children Act 2004",
        },
    ),
    "research with names": Case(
        "research-attainment-gaps-2026",
        "deny",
        ("CT-RULE-RESEARCH-DEIDENTIFIED-ONLY",),
        frozenset({"forename"}),
        changes={"fields": [*RESEARCH["fields"], "forename"]},
    ),
    "research with the UPN not pseudonymised": Case(
        "research-attainment-gaps-2026",
        "deny",
        ("CT-RULE-RESEARCH-DEIDENTIFIED-ONLY",),
        frozenset({"upn"}),
        changes={"transforms": {"dob": "year", "postcode": "district"}},
    ),
    "incompatible purpose without gateway": Case(
        "nhs-school-nursing-2026", "deny", ("CT-POLICY-GATEWAY-REQUIRED",), changes={"legal_gateway": None}
    ),
    "compatible purpose needs no gateway": Case(
        "la330-admissions-2026", "allow", changes={"legal_gateway": None}
    ),
    "transform that does not apply to the field": Case(
        "la330-sen-transport-2026",
        "deny",
        ("CT-POLICY-TRANSFORM-NOT-APPLICABLE",),
        frozenset({"postcode"}),
        changes={"transforms": {"upn": "pseudonymise", "postcode": "year"}},
    ),
    "unknown transform": Case(
        "la330-sen-transport-2026",
        "deny",
        ("CT-POLICY-UNKNOWN-TRANSFORM",),
        frozenset({"dob"}),
        changes={"transforms": {"dob": "hash"}},
    ),
    "transform of a field not shared": Case(
        "la330-sen-transport-2026",
        "deny",
        ("CT-POLICY-TRANSFORM-UNSHARED",),
        changes={"transforms": {"uprn": "pseudonymise"}},
    ),
    "unknown NC year in scope": Case(
        "la330-admissions-2026",
        "deny",
        ("CT-POLICY-UNKNOWN-NC-YEAR",),
        changes={"scope": {"la": ["330"], "nc_years": ["Y6"]}},
    ),
    "scope school outside the scope's LA": Case(
        "la330-admissions-2026",
        "deny",
        ("CT-POLICY-SCOPE-CONFLICT",),
        changes={"scope": {"la": ["330"], "laestab": ["3314000"]}},
    ),
    "statutory return asking for nationality": Case(
        "la330-statutory-return-2026",
        "deny",
        ("CT-POLICY-NEVER-SHARE",),
        frozenset({"nationality", "country_of_birth"}),
        changes={"fields": [*STAT["fields"], "nationality", "country_of_birth"]},
    ),
    "commercial marketing even with gateway and Art 9 condition": Case(
        "tutoring-marketing-2026",
        "deny",
        (
            "CT-POLICY-APPROVER-IS-RECIPIENT",
            "CT-POLICY-GATEWAY-UNKNOWN",
            "CT-RULE-NO-COMMERCIAL-USE",
            "CT-RULE-NO-SPECIAL-CATEGORY-TO-OTHER-RECIPIENTS",
        ),
        frozenset({"sen_provision"}),
        changes={
            "legal_gateway": "none really",
            "special_category_condition": "Art 9(2)(a) explicit consent",
        },
    ),
    "gateway not in gateways.yaml": Case(
        "la330-sen-transport-2026",
        "deny",
        ("CT-POLICY-GATEWAY-UNKNOWN",),
        changes={"legal_gateway": "s508B Education Act 1996; s999 Invented Act 2031"},
    ),
    "gateway written another way (alias, case, 'section')": Case(
        "research-attainment-gaps-2026",
        "allow",
        flags=frozenset({"special_category"}),
        changes={"legal_gateway": "prescribed persons regulations 2009; Section 83 children act 1989"},
    ),
    "gateway for another purpose": Case(
        "nhs-school-nursing-2026",
        "deny",
        ("CT-POLICY-GATEWAY-PURPOSE",),
        changes={"legal_gateway": "s115 Crime and Disorder Act 1998"},
    ),
    "police request citing DPA 2018 Sch 2 para 2": Case(
        "police-missing-education-2026",
        "allow",
        flags=frozenset({"high_risk"}),
        changes={"legal_gateway": "DPA 2018 Schedule 2 Part 1 paragraph 2"},
    ),
    "approved by the recipient's own board": Case(
        "la330-admissions-2026",
        "deny",
        ("CT-POLICY-APPROVER-IS-RECIPIENT",),
        changes={"approval": {**APPROVAL, "approved_by": "The Example Council School Admissions Board"}},
    ),
    "Art 9 by name with its Part 2 paragraph": Case(
        "la330-sen-transport-2026",
        "allow",
        flags=frozenset({"special_category"}),
        changes={"special_category_condition": "substantial_public_interest; DPA 2018 Sch 1 para 6"},
    ),
    "Art 9(2)(g) citation without a Schedule 1 paragraph": Case(
        "la330-sen-transport-2026",
        "deny",
        ("CT-POLICY-ART9-SCHEDULE1",),
        changes={"special_category_condition": "Art 9(2)(g) substantial public interest"},
    ),
    "Art 9(2)(g) with a Part 1 paragraph only": Case(
        "la330-sen-transport-2026",
        "deny",
        ("CT-POLICY-ART9-SCHEDULE1",),
        changes={"special_category_condition": "substantial_public_interest; DPA 2018 Sch 1 para 2"},
    ),
    "Art 9 research by name without paragraph 4": Case(
        "research-attainment-gaps-2026",
        "deny",
        ("CT-POLICY-ART9-SCHEDULE1",),
        changes={"special_category_condition": "archiving_research_statistics"},
    ),
    "objection override for direct marketing": Case(
        "tutoring-marketing-2026",
        "deny",
        (
            "CT-POLICY-APPROVER-IS-RECIPIENT",
            "CT-POLICY-ART9-MISSING",
            "CT-POLICY-GATEWAY-REQUIRED",
            "CT-POLICY-ART21-MARKETING",
            "CT-RULE-NO-COMMERCIAL-USE",
            "CT-RULE-NO-SPECIAL-CATEGORY-TO-OTHER-RECIPIENTS",
        ),
        frozenset({"sen_provision"}),
        changes={
            "objection_override": {
                "ground": "compelling_legitimate_grounds",
                "reference": "X1",
                "approved_by": "Data Sharing Approvals Panel",
                "approved_on": date(2026, 8, 1),
            }
        },
    ),
    "research override outside research": Case(
        "la330-admissions-2026",
        "deny",
        ("CT-POLICY-ART21-OVERRIDE",),
        changes={
            "objection_override": {
                "ground": "research_public_interest",
                "reference": "X2",
                "approved_by": "Data Sharing Approvals Panel",
                "approved_on": date(2026, 8, 1),
            }
        },
    ),
    "typo'd key": Case(
        "la330-admissions-2026",
        "deny",
        ("CT-POLICY-INVALID",),
        text_edit=("\nlawful_basis:", "\nlawfull_basis:"),
    ),
    "wrong type": Case(
        "la330-admissions-2026",
        "deny",
        ("CT-POLICY-INVALID",),
        text_edit=("retention_days: 400", "retention_days: a year"),
    ),
    "invalid YAML syntax": Case(
        "la330-admissions-2026",
        "deny",
        ("CT-POLICY-YAML",),
        text_edit=("frequency: once", "frequency: 'once"),
    ),
}


def _write(policies: Path, case: Case) -> Path:
    path = policies / "agreements" / f"{case.base}.yaml"
    if case.text_edit:
        edit(path, *case.text_edit)
    elif case.changes:
        path.write_text(yaml.safe_dump({**shipped(case.base), **case.changes}, sort_keys=False))
    return path


@pytest.mark.parametrize("name", list(TABLE))
def test_verdict_table(name: str, tmp_path: Path) -> None:
    case = TABLE[name]
    policies = copy_policies(tmp_path)
    path = _write(policies, case)
    verdict = check_agreement(case.base, case.as_of, policies)

    assert verdict.verdict == case.verdict, [r.message for r in verdict.reasons]
    assert tuple(dict.fromkeys(r.code for r in verdict.reasons)) == case.codes
    assert {r.field for r in verdict.reasons if r.field} == case.at_fault
    assert case.flags <= set(verdict.flags)
    if case.verdict == "allow":
        assert verdict.fields_allowed == load_policy(policies).agreements[case.base].fields
        assert verdict.fields_denied == ()
    else:
        assert verdict.fields_allowed == ()
        # Every deny says where to look: the agreement's line, the rule's line or the broken file's.
        for reason in verdict.reasons:
            assert re.search(r"policies/[\w/.-]+\.yaml:\d+", reason.message), reason.message
    if case.text_edit:
        line = line_of(path, case.text_edit[1].strip().split("\n")[-1][:12])
        assert any(f"{path.name}:{line}" in r.message for r in verdict.reasons), verdict.reasons


def test_every_reason_code_is_documented() -> None:
    docs = (REPO / "docs/policies.md").read_text()
    for code in REASON_CODES:
        assert f"`{code}`" in docs or f"{code}`" in docs, code
    for rule in load_policy(SHIPPED).rules:
        assert f"`{rule.id}`" in docs, rule.id


def _documented_verdicts() -> dict[str, tuple[str, tuple[str, ...], tuple[str, ...]]]:
    docs = (REPO / "docs/policies.md").read_text()
    section = docs.split("## Shipped agreements", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 6 and cells[0].startswith("`"):
            codes = () if cells[4] == "—" else tuple(c.strip() for c in cells[4].split(","))
            flags = () if cells[5] == "—" else tuple(f.strip() for f in cells[5].split(","))
            rows[cells[0].strip("`")] = (cells[3].strip("*"), codes, flags)
    return rows


def test_every_shipped_agreement_has_the_verdict_documented() -> None:
    documented = _documented_verdicts()
    report = check_all(CENSUS_DAY, SHIPPED)
    assert report.problems == ()
    actual = {
        v.agreement: (v.verdict, tuple(dict.fromkeys(r.code for r in v.reasons)), v.flags)
        for v in report.verdicts
    }
    assert actual == documented
    # The demo has both outcomes, and the cases the issue names.
    verdicts = {name: verdict for name, (verdict, _, _) in actual.items()}
    assert {"allow", "deny"} == set(verdicts.values())
    assert verdicts["home-office-immigration-2026"] == "deny"
    assert verdicts["tutoring-marketing-2026"] == "deny"
    assert verdicts["research-migration-2026"] == "deny"
    assert verdicts["la330-admissions-2025"] == "deny"
    assert verdicts["la330-inclusion-planning-2026"] == "deny"
    assert verdicts["la330-sen-transport-2026"] == "allow"


def _json(verdict: Verdict) -> str:
    return json.dumps(verdict.as_dict(), sort_keys=True)


def test_same_inputs_give_identical_json(tmp_path: Path) -> None:
    first = [_json(v) for v in check_all(CENSUS_DAY, SHIPPED).verdicts]
    again = [_json(v) for v in check_all(CENSUS_DAY, SHIPPED).verdicts]
    elsewhere = [_json(v) for v in check_all(CENSUS_DAY, copy_policies(tmp_path)).verdicts]
    assert first == again == elsewhere
    one = check_agreement("tutoring-marketing-2026", CENSUS_DAY, SHIPPED)
    assert _json(one) == _json(check_agreement("tutoring-marketing-2026", CENSUS_DAY, SHIPPED))


def test_evaluate_is_pure() -> None:
    policy = load_policy(SHIPPED)
    agreement = policy.agreements["la330-sen-transport-2026"]
    assert evaluate(policy, agreement, CENSUS_DAY) == evaluate(policy, agreement, CENSUS_DAY)
    assert evaluate(policy, agreement, CENSUS_DAY).policy_version == policy.version_hash


def test_a_new_law_enforcement_purpose_is_high_risk_without_saying_so(tmp_path: Path) -> None:
    policies = copy_policies(tmp_path)
    with (policies / "purposes.yaml").open("a") as fh:
        fh.write("  law_enforcement.missing_children:\n")
        fh.write("    description: Finding missing children.\n")
        fh.write("    compatible_with_collection: true\n")
    path = policies / "agreements/police-missing-education-2026.yaml"
    edit(path, "purpose: law_enforcement.crime_prevention", "purpose: law_enforcement.missing_children")
    edit(
        path,
        'legal_gateway: "s115 Crime and Disorder Act 1998; DPA 2018 Sch 2 para 2"',
        "legal_gateway: null",
    )
    verdict = check_agreement("police-missing-education-2026", CENSUS_DAY, policies)
    assert verdict.verdict == "deny"
    assert "high_risk" in verdict.flags
    assert [r.code for r in verdict.reasons] == ["CT-POLICY-GATEWAY-REQUIRED"]


def test_unknown_agreement_is_denied_with_a_suggestion() -> None:
    verdict = check_agreement("la330-sen-transport", CENSUS_DAY, SHIPPED)
    assert verdict.verdict == "deny"
    assert verdict.reasons[0].code == "CT-POLICY-UNKNOWN-AGREEMENT"
    assert "did you mean 'la330-sen-transport-2026'" in verdict.reasons[0].message


def test_a_draft_file_outside_the_policy_is_judged_by_it(tmp_path: Path) -> None:
    draft = tmp_path / "drafts" / "draft.yaml"
    draft.parent.mkdir()
    data = {
        **shipped("la330-admissions-2026"),
        "id": "la330-admissions-draft",
        "fields": ["upn", "nationality"],
    }
    draft.write_text(yaml.safe_dump(data, sort_keys=False))
    verdict = check_agreement(str(draft), CENSUS_DAY, SHIPPED)
    assert verdict.agreement == "la330-admissions-draft"
    assert [r.code for r in verdict.reasons] == ["CT-POLICY-NEVER-SHARE"]
    assert verdict.source == str(draft)
    assert verdict.policy_version == load_policy(SHIPPED).version_hash

    draft.write_text(draft.read_text().replace("purpose:", "purpse:"))
    verdict = check_agreement(str(draft), CENSUS_DAY, SHIPPED)
    assert verdict.verdict == "deny"
    assert f"{draft}:{line_of(draft, 'purpse:')}: unknown key 'purpse'" in verdict.reasons[0].message

    missing = check_agreement(str(tmp_path / "nope.yaml"), CENSUS_DAY, SHIPPED)
    assert missing.reasons[0].code == "CT-POLICY-UNKNOWN-AGREEMENT"


@pytest.mark.parametrize(
    ("objected", "share", "covered"),
    [
        ("research.approved", "research.approved", True),
        ("research", "research.approved", True),
        ("research.approved", "research.approved.longitudinal", True),
        ("research.approved", "research", False),
        ("research.approved", "research.approved_other", False),
        ("health.school_nursing", "research.approved", False),
    ],
)
def test_an_objection_covers_its_sub_purposes(objected: str, share: str, covered: bool) -> None:
    assert purpose_covers(objected, share) is covered
