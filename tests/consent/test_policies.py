"""Loading and checking the policy files: the shipped ones are valid and complete, and every kind of
broken file is refused with its file and line named (and then no agreement is allowed)."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from censustrace.census.model import IDENTIFYING_FIELDS, PUPIL_FIELDS
from censustrace.consent.evaluate import check_agreement
from censustrace.consent.policies import load_policy, policy_version
from censustrace.consent.policy_model import TRANSFORMS, PolicyError, PolicyProblem, refused_codes
from tests.plugins.helpers.policies import CENSUS_DAY, SHIPPED, copy_policies, edit, line_of


def test_shipped_policy_is_valid_and_describes_every_census_field() -> None:
    policy = load_policy(SHIPPED)
    assert tuple(policy.fields) == PUPIL_FIELDS
    assert {f for f, p in policy.fields.items() if p.identifying} >= IDENTIFYING_FIELDS
    assert {f for f, p in policy.fields.items() if p.never_share} == {"nationality", "country_of_birth"}
    assert {f for f, p in policy.fields.items() if p.special_category} == {
        "ethnicity",
        "sen_provision",
        "sen_needs",
    }
    for required in (
        "education.statutory_return",
        "education.admissions",
        "education.sen_transport",
        "local_authority.safeguarding",
        "research.approved",
        "health.school_nursing",
        "law_enforcement.crime_prevention",
        "immigration.enforcement",
        "commercial.marketing",
    ):
        assert required in policy.purposes
    assert all(rule.reason and rule.id for rule in policy.rules)
    assert len(policy.agreements) >= 10
    assert all(a.source.name == f"{a.id}.yaml" for a in policy.agreements.values())


def test_consent_purposes_of_the_generator_are_known() -> None:
    from censustrace.census.generator import names

    purposes = load_policy(SHIPPED).purposes
    assert set(names.OBJECTION_SHARE) <= set(purposes)


def test_refused_codes_come_from_the_census_code_sets() -> None:
    assert refused_codes("ethnicity") == {"REFU", "NOBT"}
    assert refused_codes("language") == {"REF", "NOT"}
    assert refused_codes("nationality") == refused_codes("country_of_birth") == {"REF", "NYO", "NKO"}
    assert refused_codes("service_child") == {"R", "U"}
    assert refused_codes("sen_needs") == frozenset()
    assert refused_codes("upn") == frozenset()
    with pytest.raises(PolicyError) as err:
        refused_codes("ethnicty")
    assert err.value.code == "CT-POLICY-UNKNOWN-FIELD"


def test_transforms_cover_the_contract() -> None:
    assert {"pseudonymise", "year_month", "year", "district", "sector", "none"} <= set(TRANSFORMS)
    for field in load_policy(SHIPPED).fields.values():
        assert set(field.transforms) <= set(TRANSFORMS) - {"none"}


def _objects(schema: Any) -> list[dict[str, Any]]:
    found = []
    if isinstance(schema, dict):
        if schema.get("type") == "object":
            found.append(schema)
        for value in schema.values():
            found += _objects(value)
    elif isinstance(schema, list):
        for value in schema:
            found += _objects(value)
    return found


@pytest.mark.parametrize("name", sorted(p.name for p in (SHIPPED / "schemas").glob("*.json")))
def test_every_schema_refuses_unknown_keys(name: str) -> None:
    schema = json.loads((SHIPPED / "schemas" / name).read_text())
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    for obj in _objects(schema):
        # Closed: no extra keys, or (for maps keyed by name) every value checked by a schema.
        assert obj.get("additionalProperties") is False or isinstance(
            obj.get("additionalProperties"), dict
        ), obj


def test_version_hash_is_stable_wherever_the_folder_is_and_changes_on_any_edit(tmp_path: Path) -> None:
    copy = copy_policies(tmp_path)
    assert policy_version(copy) == policy_version(SHIPPED) == load_policy(SHIPPED).version_hash
    edit(copy / "rules.yaml", "effect: flag\n    flag: high_risk", "effect: flag\n    flag: high_risk ")
    assert policy_version(copy) != policy_version(SHIPPED)


Breaker = Callable[[Path], tuple[str, str]]  # breaks a copy; returns (file, text on the expected line)


def _typo_key(d: Path) -> tuple[str, str]:
    edit(d / "agreements/la330-sen-transport-2026.yaml", "\nrecipient:", "\nrecipent:")
    return "agreements/la330-sen-transport-2026.yaml", "recipent:"


def _wrong_type(d: Path) -> tuple[str, str]:
    edit(d / "agreements/la330-admissions-2026.yaml", "retention_days: 400", 'retention_days: "400"')
    return "agreements/la330-admissions-2026.yaml", "retention_days"


def _unquoted_la(d: Path) -> tuple[str, str]:
    edit(d / "agreements/la330-admissions-2026.yaml", 'la: ["330"]', "la: [330]")
    return "agreements/la330-admissions-2026.yaml", "scope:"


def _fields_not_a_list(d: Path) -> tuple[str, str]:
    edit(d / "agreements/la330-admissions-2026.yaml", "fields: [upn, forename", "fields: upn\nx: [forename")
    return "agreements/la330-admissions-2026.yaml", "fields: upn"


def _yaml_syntax(d: Path) -> tuple[str, str]:
    edit(d / "agreements/nhs-school-nursing-2026.yaml", "frequency: termly", "frequency: [termly")
    return "agreements/nhs-school-nursing-2026.yaml", "format: csv"


def _duplicate_key(d: Path) -> tuple[str, str]:
    edit(d / "agreements/nhs-school-nursing-2026.yaml", "format: csv", "format: csv\nfrequency: daily")
    return "agreements/nhs-school-nursing-2026.yaml", "frequency: daily"


def _bad_date(d: Path) -> tuple[str, str]:
    edit(d / "agreements/la330-admissions-2026.yaml", "valid_to: 2027-08-31", "valid_to: 2027-02-30")
    return "agreements/la330-admissions-2026.yaml", "valid_to"


def _id_not_file_name(d: Path) -> tuple[str, str]:
    edit(
        d / "agreements/la330-admissions-2026.yaml", "id: la330-admissions-2026", "id: la330-admissions-2027"
    )
    return "agreements/la330-admissions-2026.yaml", "id:"


def _python_tag(d: Path) -> tuple[str, str]:
    edit(d / "agreements/la330-admissions-2026.yaml", "format: csv", "format: !!python/name:os.system csv")
    return "agreements/la330-admissions-2026.yaml", "format:"


def _empty_agreement(d: Path) -> tuple[str, str]:
    (d / "agreements/empty.yaml").write_text("# nothing yet\n")
    return "agreements/empty.yaml", "# nothing yet"


def _yml_suffix(d: Path) -> tuple[str, str]:
    (d / "agreements/la330-admissions-2026.yaml").rename(d / "agreements/la330-admissions-2026.yml")
    return "agreements/la330-admissions-2026.yml", ""


def _field_missing(d: Path) -> tuple[str, str]:
    text = (d / "fields.yaml").read_text()
    start = text.index("  uprn:\n")
    end = text.index("  fsm_eligible:\n")
    (d / "fields.yaml").write_text(text[:start] + text[end:])
    return "fields.yaml", "fields:"


def _never_share_lowered(d: Path) -> tuple[str, str]:
    text = (d / "fields.yaml").read_text()
    start = text.index("  nationality:\n")
    cut = text.index("never_share: true", start)
    (d / "fields.yaml").write_text(text[:cut] + "never_share: false" + text[cut + len("never_share: true") :])
    return "fields.yaml", "  nationality:\n never_share: false"


def _rule_category_typo(d: Path) -> tuple[str, str]:
    edit(d / "rules.yaml", "categories: [disadvantage,", "categories: [disadvantaged,")
    return "rules.yaml", "disadvantaged"


def _rule_purpose_typo(d: Path) -> tuple[str, str]:
    edit(d / "rules.yaml", 'purposes: ["commercial.*"]', 'purposes: ["comercial.*"]')
    return "rules.yaml", "comercial"


def _rule_typo_key(d: Path) -> tuple[str, str]:
    edit(d / "rules.yaml", "    recipient_types: [other]", "    recipient_type: [other]")
    return "rules.yaml", "recipient_type:"


def _deny_rule_with_flag(d: Path) -> tuple[str, str]:
    edit(
        d / "rules.yaml",
        "  - id: no-commercial-use\n    effect: deny\n",
        "  - id: no-commercial-use\n    effect: deny\n    flag: x\n",
    )
    return "rules.yaml", "flag: x"


def _purpose_wrong_type(d: Path) -> tuple[str, str]:
    text = (d / "purposes.yaml").read_text()
    at = text.index("  commercial.marketing:")
    cut = text.index("compatible_with_collection: false", at)
    text = (
        text[:cut]
        + 'compatible_with_collection: "no"'
        + text[cut + len("compatible_with_collection: false") :]
    )
    (d / "purposes.yaml").write_text(text)
    return "purposes.yaml", 'compatible_with_collection: "no"'


def _schema_not_json(d: Path) -> tuple[str, str]:
    path = d / "schemas/agreement.schema.json"
    path.write_text(path.read_text().replace('"type": "object",', '"type": "object"', 1))
    return "schemas/agreement.schema.json", '"additionalProperties": false,'


def _schema_missing(d: Path) -> tuple[str, str]:
    (d / "schemas/rules.schema.json").unlink()
    return "schemas/rules.schema.json", ""


BROKEN: dict[str, tuple[Breaker, str]] = {
    "typo'd key": (_typo_key, "CT-POLICY-INVALID"),
    "wrong type": (_wrong_type, "CT-POLICY-INVALID"),
    "unquoted LA number": (_unquoted_la, "CT-POLICY-INVALID"),
    "fields not a list": (_fields_not_a_list, "CT-POLICY-INVALID"),
    "invalid YAML syntax": (_yaml_syntax, "CT-POLICY-YAML"),
    "duplicate key": (_duplicate_key, "CT-POLICY-YAML"),
    "impossible date": (_bad_date, "CT-POLICY-INVALID"),
    "id is not the file name": (_id_not_file_name, "CT-POLICY-INVALID"),
    "python tag": (_python_tag, "CT-POLICY-YAML"),
    "empty agreement": (_empty_agreement, "CT-POLICY-INVALID"),
    "agreement named .yml": (_yml_suffix, "CT-POLICY-INVALID"),
    "census field missing from fields.yaml": (_field_missing, "CT-POLICY-INVALID"),
    "nationality no longer never_share": (_never_share_lowered, "CT-POLICY-FLOOR"),
    "rule category matches nothing": (_rule_category_typo, "CT-POLICY-INVALID"),
    "rule purpose matches nothing": (_rule_purpose_typo, "CT-POLICY-INVALID"),
    "rule typo'd key": (_rule_typo_key, "CT-POLICY-INVALID"),
    "deny rule with a flag": (_deny_rule_with_flag, "CT-POLICY-INVALID"),
    "purpose flag of the wrong type": (_purpose_wrong_type, "CT-POLICY-INVALID"),
    "schema not JSON": (_schema_not_json, "CT-POLICY-SCHEMA"),
    "schema missing": (_schema_missing, "CT-POLICY-FILE"),
}


def _problems_of(policies: Path, file: str) -> list[PolicyProblem]:
    """The problems of one file: raised by load_policy for a shared file, kept per agreement otherwise."""
    try:
        policy = load_policy(policies)
    except PolicyError as err:
        found = list(err.problems)
    else:
        found = [p for problems in policy.broken.values() for p in problems]
    assert all("Traceback" not in str(p) for p in found)
    return [p for p in found if p.file == f"policies/{file}"]


@pytest.mark.parametrize("case", list(BROKEN))
def test_a_broken_file_is_named_with_its_line(case: str, tmp_path: Path) -> None:
    breaker, code = BROKEN[case]
    policies = copy_policies(tmp_path)
    file, text = breaker(policies)
    problems = _problems_of(policies, file)
    assert problems, case
    assert problems[0].code == code, str(problems[0])
    if text:
        after, _, text = text.rpartition("\n")
        assert problems[0].line == line_of(policies / file, text, after), str(problems[0])
        assert f"policies/{file}:{problems[0].line}" in str(problems[0])
    verdict = check_agreement("la330-statutory-return-2026", CENSUS_DAY, policies)
    if file.startswith("agreements/"):
        # Each agreement stands alone: a broken one is denied on its own, the others are judged normally.
        assert verdict.verdict == "allow", [r.message for r in verdict.reasons]
        stem = Path(file).stem
        own = check_agreement(stem, CENSUS_DAY, policies)
        assert own.verdict == "deny"
        assert any(f"policies/{file}" in r.message for r in own.reasons)
    else:
        # Never a default allow: a broken shared file denies every agreement, naming the file.
        assert verdict.verdict == "deny"
        assert verdict.fields_allowed == ()
        assert any(f"policies/{file}" in r.message for r in verdict.reasons)


def test_a_typo_names_the_key_it_probably_meant(tmp_path: Path) -> None:
    policies = copy_policies(tmp_path)
    _typo_key(policies)
    problems = _problems_of(policies, "agreements/la330-sen-transport-2026.yaml")
    assert "unknown key 'recipent' (did you mean 'recipient'?)" in " ".join(map(str, problems))


def test_every_problem_is_reported_not_just_the_first(tmp_path: Path) -> None:
    from censustrace.consent.policies import lint_policy

    policies = copy_policies(tmp_path)
    _typo_key(policies)
    _yaml_syntax(policies)
    _rule_purpose_typo(policies)
    with pytest.raises(PolicyError):
        load_policy(policies)
    files = {p.file for p in lint_policy(policies)}
    assert "policies/rules.yaml" in files
    # With the shared file fixed, both broken agreements are listed on their own.
    (policies / "rules.yaml").write_text((SHIPPED / "rules.yaml").read_text())
    files = {p.file for p in lint_policy(policies)}
    assert {
        "policies/agreements/la330-sen-transport-2026.yaml",
        "policies/agreements/nhs-school-nursing-2026.yaml",
    } <= files


def test_missing_policies_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(PolicyError) as err:
        load_policy(tmp_path / "nowhere")
    assert err.value.code == "CT-POLICY-FILE"
    verdict = check_agreement("la330-sen-transport-2026", CENSUS_DAY, tmp_path / "nowhere")
    assert verdict.verdict == "deny"
    assert verdict.reasons[0].code == "CT-POLICY-FILE"


def test_dates_are_dates_whether_quoted_or_not(tmp_path: Path) -> None:
    policies = copy_policies(tmp_path)
    edit(policies / "agreements/la330-admissions-2026.yaml", "valid_to: 2027-08-31", 'valid_to: "2027-08-31"')
    agreement = load_policy(policies).agreements["la330-admissions-2026"]
    assert agreement.valid_to == date(2027, 8, 31)
    assert agreement.approval is not None
    assert agreement.approval.approved_on == date(2026, 8, 20)
    path = policies / "agreements/la330-admissions-2026.yaml"
    assert agreement.where("valid_to") == f"policies/agreements/{path.name}:{line_of(path, 'valid_to')}"


def test_policies_dir_setting_defaults_to_the_checkout(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from censustrace.config import Settings

    monkeypatch.delenv("CENSUSTRACE_POLICIES_DIR", raising=False)
    assert Settings().policies_dir == SHIPPED
    monkeypatch.setenv("CENSUSTRACE_POLICIES_DIR", str(tmp_path))
    assert Settings().policies_dir == tmp_path
