"""Policy as code: load and check every file in ``policies/`` (see docs/policies.md).

``fields.yaml``, ``purposes.yaml``, ``rules.yaml`` and ``agreements/<id>.yaml`` are each validated against
their JSON Schema in ``policies/schemas/`` (2020-12, ``additionalProperties: false`` so a typo'd key is
refused) and then checked against the census model. YAML is *composed* rather than loaded, so every value
keeps its line: a problem is always reported as ``file:line``. Dates stay text until checked (PyYAML
would turn them into ``date`` objects that JSON Schema cannot see). Reading and schema checks are in
``censustrace.consent.yaml_lines``; the records built are in ``censustrace.consent.policy_model``.

An invalid *shared* file (fields, purposes, rules, gateways, a schema) makes :func:`load_policy` raise
:class:`PolicyError` listing every problem found; the evaluator turns that into a deny of every agreement,
never a default allow. An invalid *agreement* file is kept in ``Policy.broken`` with its problems: that
agreement alone is denied (file and line), the others are judged normally. What an agreement *refers to*
(its purpose, fields, lawful basis, transforms, NC years) is judged by the evaluator, so an agreement
naming an unknown field is a valid file whose verdict is deny with a reason.
"""

from __future__ import annotations

import difflib
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from types import MappingProxyType
from typing import Any

from censustrace.census.model import IDENTIFYING_FIELDS, PUPIL_FIELDS
from censustrace.consent.policy_model import (
    AGREEMENT_SCHEMA,
    AGREEMENTS_DIR,
    FIELD_CONDITIONS,
    FIELDS_FILE,
    GATEWAYS_FILE,
    NEVER_SHARE_FIELDS,
    PURPOSES_FILE,
    RULES_FILE,
    SCHEMA_OF,
    SCHEMAS_DIR,
    SPECIAL_CATEGORY_FIELDS,
    TRANSFORMS,
    Agreement,
    Approval,
    FieldPolicy,
    Gateway,
    ObjectionOverride,
    PolicyError,
    PolicyProblem,
    Purpose,
    Recipient,
    Rule,
    Scope,
    UnknownAgreement,
    citation_key,
    purpose_matches,
)
from censustrace.consent.yaml_lines import Document, PathKey, checked, load_schema, path_text, read_yaml


@dataclass(frozen=True)
class Policy:
    fields: Mapping[str, FieldPolicy]
    purposes: Mapping[str, Purpose]
    rules: tuple[Rule, ...]
    agreements: Mapping[str, Agreement]
    version_hash: str
    directory: Path = field(default=Path(), compare=False)
    agreement_schema: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)
    gateways: Mapping[str, Gateway] = field(default_factory=dict, compare=False)
    #: Agreement files that could not be read or are invalid, by file stem: each is denied on its own.
    broken: Mapping[str, tuple[PolicyProblem, ...]] = field(default_factory=dict, compare=False)

    def gateway(self, citation: str) -> Gateway | None:
        """The gateway cited by ``citation`` (its citation or an alias), or None."""
        key = citation_key(citation)
        for gateway in self.gateways.values():
            if key in (citation_key(c) for c in (gateway.citation, *gateway.aliases)):
                return gateway
        return None

    def agreement(self, id_or_path: str) -> Agreement:
        """The agreement with this id, or the agreement file at this path (a draft outside
        ``agreements/`` is checked against the same schema). Raises :class:`UnknownAgreement`, or
        :class:`PolicyError` for an invalid agreement file or draft."""
        if id_or_path in self.agreements:
            return self.agreements[id_or_path]
        if id_or_path in self.broken:
            raise PolicyError.of(self.broken[id_or_path])
        path = Path(id_or_path)
        if path.suffix in (".yaml", ".yml") or "/" in id_or_path or path.is_file():
            if not path.is_file():
                raise UnknownAgreement(f"agreement file {id_or_path} does not exist")
            resolved = path.resolve()
            for agreement in self.agreements.values():
                if agreement.source.resolve() == resolved:
                    return agreement
            if resolved.parent == self.directory / AGREEMENTS_DIR and resolved.stem in self.broken:
                raise PolicyError.of(self.broken[resolved.stem])
            problems: list[PolicyProblem] = []
            draft = _load_agreement(path, str(path), self.agreement_schema, problems, check_name=False)
            if draft is None:
                raise PolicyError.of(problems)
            return draft
        close = difflib.get_close_matches(id_or_path, [*self.agreements, *self.broken], n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise UnknownAgreement(
            f"no agreement {id_or_path!r} in {self.directory.name}/{AGREEMENTS_DIR}{hint}; "
            f"known: {', '.join(sorted(self.agreements)) or 'none'}"
        )


# The files -------------------------------------------------------------------------------------------
def _fields(doc: Document, problems: list[PolicyProblem]) -> dict[str, FieldPolicy]:
    entries: dict[str, Any] = doc.data["fields"]
    out: dict[str, FieldPolicy] = {}
    for name, entry in entries.items():
        line = doc.key_lines.get(("fields", name), 1)
        if name not in PUPIL_FIELDS:
            close = difflib.get_close_matches(name, PUPIL_FIELDS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            problems.append(PolicyProblem(doc.display, line, f"{name!r} is not a census field{hint}"))
            continue
        bad = [t for t in entry.get("transforms", ()) if t not in TRANSFORMS or t == "none"]
        if bad:
            problems.append(
                PolicyProblem(
                    doc.display,
                    doc.line(("fields", name, "transforms")),
                    f"fields.{name}.transforms: unknown transform {bad[0]!r}; "
                    f"known: {', '.join(t for t in TRANSFORMS if t != 'none')}",
                )
            )
        policy = FieldPolicy(
            name=name,
            description=entry["description"],
            category=entry["category"],
            special_category=entry["special_category"],
            identifying=entry["identifying"],
            sensitivity=entry["sensitivity"],
            never_share=entry["never_share"],
            transforms=tuple(entry.get("transforms", ())),
            retention_days=entry.get("retention_days"),
        )
        floors = [
            ("never_share", name in NEVER_SHARE_FIELDS and not policy.never_share, "never shared"),
            (
                "special_category",
                name in SPECIAL_CATEGORY_FIELDS and not policy.special_category,
                "Art 9 data",
            ),
            ("identifying", name in IDENTIFYING_FIELDS and not policy.identifying, "identifies a pupil"),
        ]
        for key, lowered, why in floors:
            if lowered:
                problems.append(
                    PolicyProblem(
                        doc.display,
                        doc.line(("fields", name, key)),
                        f"fields.{name}.{key} must be true ({name} is {why}; built-in, see docs/policies.md)",
                        "CT-POLICY-FLOOR",
                    )
                )
        out[name] = policy
    missing = [f for f in PUPIL_FIELDS if f not in entries]
    if missing:
        problems.append(
            PolicyProblem(
                doc.display, doc.key_line(("fields",)), f"census fields missing: {', '.join(missing)}"
            )
        )
    return out


def _purposes(doc: Document) -> dict[str, Purpose]:
    return {
        pid: Purpose(
            id=pid,
            description=entry["description"],
            compatible_with_collection=entry["compatible_with_collection"],
            high_risk=entry.get("high_risk", False),
        )
        for pid, entry in doc.data["purposes"].items()
    }


def _rules(
    doc: Document,
    fields_: Mapping[str, FieldPolicy],
    purposes: Mapping[str, Purpose],
    problems: list[PolicyProblem],
) -> tuple[Rule, ...]:
    out: list[Rule] = []
    seen: set[str] = set()
    for i, entry in enumerate(doc.data["rules"]):

        def problem(key: str, message: str, i: int = i) -> None:
            line = doc.line(("rules", i, key))
            problems.append(PolicyProblem(doc.display, line, f"rules[{i}].{key}: {message}"))

        rule = Rule(
            id=entry["id"],
            effect=entry["effect"],
            reason=" ".join(entry["reason"].split()),
            flag=entry.get("flag"),
            purposes=tuple(entry.get("purposes", ())),
            recipient_types=tuple(entry.get("recipient_types", ())),
            fields=tuple(entry.get("fields", ())),
            categories=tuple(entry.get("categories", ())),
            field_flags=tuple(entry.get("field_flags", ())),
            unless=tuple(entry.get("unless", ())),
            location=f"{doc.display}:{doc.line(('rules', i))}",
        )
        if rule.id in seen:
            problem("id", f"duplicate rule id {rule.id!r}")
        seen.add(rule.id)
        # A name that matches nothing would make the rule silently do nothing: refuse it.
        for name in rule.fields:
            if name not in fields_ and fields_:
                problem("fields", f"unknown field {name!r}")
        for category in rule.categories:
            if fields_ and not any(f.in_category(category) for f in fields_.values()):
                problem("categories", f"no field has category {category!r}")
        for pattern in rule.purposes:
            if purposes and not any(purpose_matches(pattern, p) for p in purposes):
                problem("purposes", f"{pattern!r} matches no purpose in {PURPOSES_FILE}")
        if not rule.is_field_rule and FIELD_CONDITIONS.intersection(rule.unless):
            problem("unless", "transformed and pseudonymised apply to field rules only")
        out.append(rule)
    return tuple(out)


def _date(doc: Document, path: PathKey, problems: list[PolicyProblem]) -> date:
    value: Any = doc.data
    for part in path:
        value = value[part]
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        problems.append(
            PolicyProblem(doc.display, doc.line(path), f"{path_text(path)}: not a date: {value!r}")
        )
        return date.min


def _load_agreement(
    path: Path,
    display: str,
    schema: Mapping[str, Any] | None,
    problems: list[PolicyProblem],
    *,
    check_name: bool = True,
) -> Agreement | None:
    before = len(problems)
    doc = checked(path, display, schema, problems)
    if doc is None:
        return None
    data = doc.data
    if check_name and data["id"] != path.stem:
        problems.append(
            PolicyProblem(
                display,
                doc.line(("id",)),
                f"id {data['id']!r} differs from the file name: agreements are named <id>.yaml",
            )
        )
    approval = data["approval"]
    agreement = Agreement(
        id=data["id"],
        recipient=Recipient(name=data["recipient"]["name"], type=data["recipient"]["type"]),
        purpose=data["purpose"],
        lawful_basis=data["lawful_basis"],
        special_category_condition=data["special_category_condition"],
        legal_gateway=data["legal_gateway"],
        approval=None
        if approval is None
        else Approval(
            reference=approval["reference"],
            approved_by=approval["approved_by"],
            approved_on=_date(doc, ("approval", "approved_on"), problems),
        ),
        valid_from=_date(doc, ("valid_from",), problems),
        valid_to=_date(doc, ("valid_to",), problems),
        fields=tuple(data["fields"]),
        scope=Scope(
            la=tuple(data.get("scope", {}).get("la", ())),
            laestab=tuple(data.get("scope", {}).get("laestab", ())),
            nc_years=tuple(data.get("scope", {}).get("nc_years", ())),
        ),
        transforms=MappingProxyType(dict(data.get("transforms", {}))),
        frequency=data["frequency"],
        format=data["format"],
        retention_days=data["retention_days"],
        source=path,
        objection_override=_override(doc, data.get("objection_override"), problems),
        display=display,
        lines=MappingProxyType({path_text(p): line for p, line in doc.lines.items() if p}),
    )
    return agreement if len(problems) == before else None


def _override(
    doc: Document, data: Mapping[str, Any] | None, problems: list[PolicyProblem]
) -> ObjectionOverride | None:
    if data is None:
        return None
    return ObjectionOverride(
        ground=data["ground"],
        reference=data["reference"],
        approved_by=data["approved_by"],
        approved_on=_date(doc, ("objection_override", "approved_on"), problems),
    )


def _gateways(
    doc: Document, purposes: Mapping[str, Purpose], problems: list[PolicyProblem]
) -> dict[str, Gateway]:
    out: dict[str, Gateway] = {}
    seen: dict[str, str] = {}
    for gid, entry in doc.data["gateways"].items():
        gateway = Gateway(
            id=gid,
            citation=entry["citation"],
            statute=entry["statute"],
            section=entry["section"],
            aliases=tuple(entry.get("aliases", ())),
            purposes=tuple(entry["purposes"]),
            description=entry["description"],
        )
        for i, text in enumerate((gateway.citation, *gateway.aliases)):
            key = citation_key(text)
            where = ("gateways", gid, "citation") if i == 0 else ("gateways", gid, "aliases", i - 1)
            if key in seen and seen[key] != gid:
                problems.append(
                    PolicyProblem(doc.display, doc.line(where), f"{text!r} is also cited by {seen[key]}")
                )
            seen[key] = gid
        for i, pattern in enumerate(gateway.purposes):
            if purposes and not any(purpose_matches(pattern, p) for p in purposes):
                problems.append(
                    PolicyProblem(
                        doc.display,
                        doc.line(("gateways", gid, "purposes", i)),
                        f"gateways.{gid}.purposes: {pattern!r} matches no purpose in {PURPOSES_FILE}",
                    )
                )
        out[gid] = gateway
    return out


def _display(directory: Path, path: Path) -> str:
    """How a policy file is named in messages: ``policies/agreements/x.yaml``, whatever the cwd."""
    return f"{directory.name}/{path.relative_to(directory).as_posix()}"


def policy_files(policies_dir: Path) -> list[Path]:
    """Every file that is part of the policy (hidden files aside), sorted by path."""
    if not policies_dir.is_dir():
        return []
    return sorted(
        p
        for p in policies_dir.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(policies_dir).parts)
    )


def policy_version(policies_dir: Path) -> str:
    """sha256 over every policy file (relative path and bytes), sorted by path: any edit changes it."""
    digest = hashlib.sha256()
    directory = policies_dir.resolve()
    for path in policy_files(directory):
        try:
            data = path.read_bytes()
        except OSError:
            data = b"\0unreadable"
        name = path.relative_to(directory).as_posix().encode()
        digest.update(b"%d:%s:%d:" % (len(name), name, len(data)))
        digest.update(data)
    return digest.hexdigest()


def agreement_files(policies_dir: Path) -> tuple[Path, ...]:
    """The agreement files (``agreements/<id>.yaml``), sorted, whether or not they are valid."""
    folder = policies_dir / AGREEMENTS_DIR
    if not folder.is_dir():
        return ()
    return tuple(sorted(p for p in folder.iterdir() if p.is_file() and p.suffix == ".yaml"))


def read_agreement(path: Path, policies_dir: Path) -> tuple[Any, list[PolicyProblem]]:
    """The plain data of one agreement file, read as :func:`load_policy` reads it but not checked, and
    the problems that stopped it being read (then the data is None). For the share DAGs at parse time,
    which must exist for a broken agreement too."""
    problems: list[PolicyProblem] = []
    doc = read_yaml(path, _display(policies_dir, path), problems)
    return (None if doc is None else doc.data), problems


def load_policy(policies_dir: Path) -> Policy:
    """Every policy file read and checked; :class:`PolicyError` listing every problem (file:line) if
    any file is missing or invalid."""
    directory = policies_dir.expanduser().resolve()
    if not directory.is_dir():
        raise PolicyError(
            f"policies folder {directory} does not exist (CENSUSTRACE_POLICIES_DIR)", code="CT-POLICY-FILE"
        )
    problems: list[PolicyProblem] = []

    def schema(name: str) -> dict[str, Any] | None:
        path = directory / SCHEMAS_DIR / name
        if not path.is_file():
            problems.append(PolicyProblem(_display(directory, path), None, "missing", "CT-POLICY-FILE"))
            return None
        return load_schema(path, _display(directory, path), problems)

    def document(name: str) -> Document | None:
        path = directory / name
        if not path.is_file():
            problems.append(PolicyProblem(_display(directory, path), None, "missing", "CT-POLICY-FILE"))
            return None
        return checked(path, _display(directory, path), schema(SCHEMA_OF[name]), problems)

    fields_doc, purposes_doc, rules_doc = document(FIELDS_FILE), document(PURPOSES_FILE), document(RULES_FILE)
    gateways_doc = document(GATEWAYS_FILE)
    fields_ = _fields(fields_doc, problems) if fields_doc else {}
    purposes = _purposes(purposes_doc) if purposes_doc else {}
    rules = _rules(rules_doc, fields_, purposes, problems) if rules_doc else ()
    gateways = _gateways(gateways_doc, purposes, problems) if gateways_doc else {}

    agreement_schema = schema(AGREEMENT_SCHEMA)
    agreements: dict[str, Agreement] = {}
    broken: dict[str, tuple[PolicyProblem, ...]] = {}
    folder = directory / AGREEMENTS_DIR
    if folder.is_dir():
        for path in sorted(folder.iterdir()):
            if path.name.startswith("."):
                continue
            display = _display(directory, path)
            own: list[PolicyProblem] = []
            if not path.is_file() or path.suffix != ".yaml":
                own.append(PolicyProblem(display, None, "not an agreement file: agreements are <id>.yaml"))
                agreement = None
            else:
                agreement = _load_agreement(path, display, agreement_schema or None, own)
            if agreement is not None and agreement.id in agreements:  # unreachable: ids are file names
                own.append(PolicyProblem(display, agreement.lines.get("id"), "duplicate agreement id"))
            if own or agreement is None:
                # Judged on its own: this agreement is denied, the others are not affected.
                broken[path.stem] = tuple(own) or (PolicyProblem(display, None, "unreadable"),)
            else:
                agreements[agreement.id] = agreement
    if problems:
        raise PolicyError.of(problems)
    return Policy(
        fields=MappingProxyType(fields_),
        purposes=MappingProxyType(purposes),
        rules=rules,
        agreements=MappingProxyType(dict(sorted(agreements.items()))),
        version_hash=policy_version(directory),
        directory=directory,
        agreement_schema=agreement_schema or {},
        gateways=MappingProxyType(gateways),
        broken=MappingProxyType(dict(sorted(broken.items()))),
    )


def lint_policy(policies_dir: Path) -> list[PolicyProblem]:
    """Every problem of every file in the policies folder (shared files and each agreement), as
    ``policy lint`` reports them; empty when all is well."""
    try:
        policy = load_policy(policies_dir)
    except PolicyError as exc:
        found = list(exc.problems) or [PolicyProblem(str(policies_dir), None, exc.message, exc.code)]
        return found
    return [p for problems in policy.broken.values() for p in problems]


def lint_file(path: Path, policies_dir: Path) -> list[PolicyProblem]:
    """The problems of one file: an agreement draft (anywhere), or one of the shared files by name.

    A shared file is checked against its schema (and, for the gateway list, the purposes); an agreement
    against the agreement schema. Problems of the rest of the policy are not reported here."""
    display = str(path)
    problems: list[PolicyProblem] = []
    if not path.is_file():
        return [PolicyProblem(display, None, "no such file", "CT-POLICY-FILE")]
    directory = policies_dir.expanduser().resolve()
    schema_name = SCHEMA_OF.get(path.name)
    if schema_name is None and path.suffix not in (".yaml", ".yml"):
        return [PolicyProblem(display, None, "not a policy file: agreements are <id>.yaml")]
    schema_path = directory / SCHEMAS_DIR / (schema_name or AGREEMENT_SCHEMA)
    schema = None
    if schema_path.is_file():
        schema = load_schema(schema_path, _display(directory, schema_path), problems)
    if schema is None:
        return problems or [PolicyProblem(str(schema_path), None, "missing", "CT-POLICY-FILE")]
    if schema_name is None:
        in_folder = path.resolve().parent == directory / AGREEMENTS_DIR
        if in_folder and path.suffix != ".yaml":
            problems.append(PolicyProblem(display, None, "not an agreement file: agreements are <id>.yaml"))
        _load_agreement(path, display, schema, problems, check_name=in_folder)
    else:
        checked(path, display, schema, problems)
    return problems
