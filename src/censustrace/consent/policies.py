"""Policy as code: load and check every file in ``policies/`` (see docs/policies.md).

``fields.yaml``, ``purposes.yaml``, ``rules.yaml`` and ``agreements/<id>.yaml`` are each validated against
their JSON Schema in ``policies/schemas/`` (2020-12, ``additionalProperties: false`` so a typo'd key is
refused) and then checked against the census model. YAML is *composed* rather than loaded, so every value
keeps its line: a problem is always reported as ``file:line``. Dates stay text until checked (PyYAML
would turn them into ``date`` objects that JSON Schema cannot see).

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
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final, Literal

import yaml

from censustrace.census import codes
from censustrace.census.model import IDENTIFYING_FIELDS, PUPIL_FIELDS
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


def refused_codes(field_name: str) -> frozenset[str]:
    """Codes of ``field_name`` that are a refusal or a gap, never sent as values (empty for most)."""
    if field_name not in PUPIL_FIELDS:
        raise PolicyError(f"unknown census field {field_name!r}", code="CT-POLICY-UNKNOWN-FIELD")
    return _REFUSED_CODES.get(field_name, frozenset())


# Reading YAML with lines -----------------------------------------------------------------------------
_LOADER: Final[Any] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_SCALARS: Final = yaml.constructor.SafeConstructor()
_TAG: Final = "tag:yaml.org,2002:"
PathKey = tuple[str | int, ...]


@dataclass
class _Document:
    """A YAML (or JSON) document as plain data, with the line of every value and of every key."""

    data: Any
    display: str
    lines: dict[PathKey, int] = field(default_factory=dict)
    key_lines: dict[PathKey, int] = field(default_factory=dict)

    def line(self, path: PathKey) -> int:
        """Line of the value at ``path`` (or of its nearest ancestor)."""
        while path and path not in self.lines:
            path = path[:-1]
        return self.lines.get(path, 1)

    def key_line(self, path: PathKey) -> int:
        """Line of the key naming the value at ``path``: where a missing item is reported."""
        return self.key_lines.get(path) or self.line(path)


class _NodeError(Exception):
    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.message = message


def _line(node: yaml.Node) -> int:
    return int(node.start_mark.line) + 1


def _convert(node: yaml.Node, path: PathKey, doc: _Document) -> Any:
    doc.lines[path] = _line(node)
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise _NodeError(_line(key_node), "a key must be plain text")
            key = str(key_node.value)
            if key in out:
                raise _NodeError(_line(key_node), f"duplicate key {key!r}")
            doc.key_lines[(*path, key)] = _line(key_node)
            out[key] = _convert(value_node, (*path, key), doc)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_convert(item, (*path, i), doc) for i, item in enumerate(node.value)]
    if not isinstance(node, yaml.ScalarNode):
        raise _NodeError(_line(node), "unsupported YAML node")
    tag = str(node.tag).removeprefix(_TAG)
    if tag in ("str", "timestamp"):  # dates stay text: the schema checks them, then date.fromisoformat
        return str(node.value)
    if tag == "null":
        return None
    if tag == "bool":
        return _SCALARS.construct_yaml_bool(node)
    if tag == "int":
        return _SCALARS.construct_yaml_int(node)
    if tag == "float":
        return _SCALARS.construct_yaml_float(node)
    raise _NodeError(_line(node), f"unsupported YAML value type {node.tag!r}")


def _read_text(path: Path, display: str, problems: list[PolicyProblem]) -> str | None:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        problems.append(PolicyProblem(display, None, f"cannot read ({exc.strerror})", "CT-POLICY-FILE"))
        return None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        problems.append(PolicyProblem(display, line, "not UTF-8 text", "CT-POLICY-YAML"))
        return None


def _read_yaml(path: Path, display: str, problems: list[PolicyProblem]) -> _Document | None:
    text = _read_text(path, display, problems)
    if text is None:
        return None
    try:
        node = yaml.compose(text, Loader=_LOADER)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        what = str(exc.problem or exc.context or "syntax error")
        if exc.context and exc.problem and exc.context_mark is not None:
            what += f" ({exc.context} started on line {int(exc.context_mark.line) + 1})"
            if "end of stream" in what:  # e.g. an unclosed quote: where it was opened is what to fix
                mark = exc.context_mark
        line = int(mark.line) + 1 if mark is not None else None
        problems.append(PolicyProblem(display, line, f"invalid YAML: {what}", "CT-POLICY-YAML"))
        return None
    except yaml.YAMLError as exc:
        problems.append(PolicyProblem(display, None, f"invalid YAML: {exc}", "CT-POLICY-YAML"))
        return None
    if node is None:
        problems.append(PolicyProblem(display, 1, "empty file", "CT-POLICY-INVALID"))
        return None
    doc = _Document(None, display)
    try:
        doc.data = _convert(node, (), doc)
    except _NodeError as exc:
        problems.append(PolicyProblem(display, exc.line, exc.message, "CT-POLICY-YAML"))
        return None
    return doc


# Schemas ---------------------------------------------------------------------------------------------
def _load_schema(path: Path, display: str, problems: list[PolicyProblem]) -> dict[str, Any] | None:
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import SchemaError

    text = _read_text(path, display, problems)
    if text is None:
        return None
    try:
        schema = json.loads(text)
    except json.JSONDecodeError as exc:
        problems.append(PolicyProblem(display, exc.lineno, f"invalid JSON: {exc.msg}", "CT-POLICY-SCHEMA"))
        return None
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "(top)"
        problems.append(
            PolicyProblem(
                display, None, f"not a valid JSON Schema at {where}: {exc.message}", "CT-POLICY-SCHEMA"
            )
        )
        return None
    if not isinstance(schema, dict):
        problems.append(PolicyProblem(display, 1, "a JSON Schema must be an object", "CT-POLICY-SCHEMA"))
        return None
    return schema


def _path_text(path: Iterable[str | int]) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top)"


def _schema_problems(doc: _Document, schema: Mapping[str, Any]) -> list[PolicyProblem]:
    from jsonschema import Draft202012Validator, FormatChecker
    from jsonschema.exceptions import best_match

    validator = Draft202012Validator(schema, format_checker=FormatChecker())
    found: list[PolicyProblem] = []
    suggested: set[PathKey] = set()  # keys a typo probably meant: their "missing" is the same problem
    missing: list[tuple[PathKey, PolicyProblem]] = []
    for top in validator.iter_errors(doc.data):
        err = best_match([top])
        path: PathKey = tuple(err.absolute_path)
        where = f" in {_path_text(path)}" if path else ""
        if err.validator == "additionalProperties" and isinstance(err.instance, dict):
            allowed = sorted(err.schema.get("properties", {}))
            for key in sorted(k for k in err.instance if k not in allowed):
                close = difflib.get_close_matches(key, allowed, n=1)
                if close:
                    suggested.add((*path, close[0]))
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                message = f"unknown key {key!r}{where}{hint}; allowed: {', '.join(allowed)}"
                line = doc.key_lines.get((*path, key), doc.line(path))
                found.append(PolicyProblem(doc.display, line, message))
        elif err.validator == "required" and isinstance(err.instance, dict):
            for key in err.validator_value:
                if key not in err.instance:
                    problem = PolicyProblem(doc.display, doc.key_line(path), f"missing key {key!r}{where}")
                    missing.append(((*path, key), problem))
        elif err.validator == "not" and isinstance(err.instance, dict) and "required" in err.validator_value:
            # The schemas use not/required for "this key only with that value" (a deny rule's flag).
            for key in err.validator_value["required"]:
                line = doc.key_lines.get((*path, key), doc.line(path))
                found.append(PolicyProblem(doc.display, line, f"key {key!r} is not allowed here{where}"))
        else:
            found.append(PolicyProblem(doc.display, doc.line(path), f"{_path_text(path)}: {err.message}"))
    found += [problem for key, problem in missing if key not in suggested]
    found.sort(key=lambda p: (p.line or 0, p.message))
    return found[:MAX_PROBLEMS_PER_FILE]


def _checked(
    path: Path, display: str, schema: Mapping[str, Any] | None, problems: list[PolicyProblem]
) -> _Document | None:
    """The document if it parses and matches its schema; its problems otherwise."""
    doc = _read_yaml(path, display, problems)
    if doc is None or schema is None:
        return None
    found = _schema_problems(doc, schema)
    problems.extend(found)
    return None if found else doc


# The files -------------------------------------------------------------------------------------------
def _fields(doc: _Document, problems: list[PolicyProblem]) -> dict[str, FieldPolicy]:
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


def _purposes(doc: _Document) -> dict[str, Purpose]:
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
    doc: _Document,
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


def _date(doc: _Document, path: PathKey, problems: list[PolicyProblem]) -> date:
    value: Any = doc.data
    for part in path:
        value = value[part]
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        problems.append(
            PolicyProblem(doc.display, doc.line(path), f"{_path_text(path)}: not a date: {value!r}")
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
    doc = _checked(path, display, schema, problems)
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
        lines=MappingProxyType({_path_text(p): line for p, line in doc.lines.items() if p}),
    )
    return agreement if len(problems) == before else None


def _override(
    doc: _Document, data: Mapping[str, Any] | None, problems: list[PolicyProblem]
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
    doc: _Document, purposes: Mapping[str, Purpose], problems: list[PolicyProblem]
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
        return _load_schema(path, _display(directory, path), problems)

    def document(name: str) -> _Document | None:
        path = directory / name
        if not path.is_file():
            problems.append(PolicyProblem(_display(directory, path), None, "missing", "CT-POLICY-FILE"))
            return None
        return _checked(path, _display(directory, path), schema(SCHEMA_OF[name]), problems)

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
        schema = _load_schema(schema_path, _display(directory, schema_path), problems)
    if schema is None:
        return problems or [PolicyProblem(str(schema_path), None, "missing", "CT-POLICY-FILE")]
    if schema_name is None:
        in_folder = path.resolve().parent == directory / AGREEMENTS_DIR
        if in_folder and path.suffix != ".yaml":
            problems.append(PolicyProblem(display, None, "not an agreement file: agreements are <id>.yaml"))
        _load_agreement(path, display, schema, problems, check_name=in_folder)
    else:
        _checked(path, display, schema, problems)
    return problems
