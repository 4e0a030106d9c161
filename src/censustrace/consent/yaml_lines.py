"""Reading a policy file with its lines: YAML is *composed* rather than loaded, so every value and
every key keeps its line and a problem is always reported as ``file:line``. Dates stay text until
checked (PyYAML would turn them into ``date`` objects that JSON Schema cannot see). A document is then
checked against its JSON Schema (2020-12), each schema error turned into one problem at its line.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import yaml

from censustrace.consent.policy_model import MAX_PROBLEMS_PER_FILE, PolicyProblem

_LOADER: Final[Any] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_SCALARS: Final = yaml.constructor.SafeConstructor()
_TAG: Final = "tag:yaml.org,2002:"
PathKey = tuple[str | int, ...]


@dataclass
class Document:
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


def _convert(node: yaml.Node, path: PathKey, doc: Document) -> Any:
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


def read_text(path: Path, display: str, problems: list[PolicyProblem]) -> str | None:
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


def read_yaml(path: Path, display: str, problems: list[PolicyProblem]) -> Document | None:
    text = read_text(path, display, problems)
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
    doc = Document(None, display)
    try:
        doc.data = _convert(node, (), doc)
    except _NodeError as exc:
        problems.append(PolicyProblem(display, exc.line, exc.message, "CT-POLICY-YAML"))
        return None
    return doc


# Schemas ---------------------------------------------------------------------------------------------
def load_schema(path: Path, display: str, problems: list[PolicyProblem]) -> dict[str, Any] | None:
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import SchemaError

    text = read_text(path, display, problems)
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


def path_text(path: Iterable[str | int]) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top)"


def _schema_problems(doc: Document, schema: Mapping[str, Any]) -> list[PolicyProblem]:
    from jsonschema import Draft202012Validator, FormatChecker
    from jsonschema.exceptions import best_match

    validator = Draft202012Validator(schema, format_checker=FormatChecker())
    found: list[PolicyProblem] = []
    suggested: set[PathKey] = set()  # keys a typo probably meant: their "missing" is the same problem
    missing: list[tuple[PathKey, PolicyProblem]] = []
    for top in validator.iter_errors(doc.data):
        err = best_match([top])
        path: PathKey = tuple(err.absolute_path)
        where = f" in {path_text(path)}" if path else ""
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
            found.append(PolicyProblem(doc.display, doc.line(path), f"{path_text(path)}: {err.message}"))
    found += [problem for key, problem in missing if key not in suggested]
    found.sort(key=lambda p: (p.line or 0, p.message))
    return found[:MAX_PROBLEMS_PER_FILE]


def checked(
    path: Path, display: str, schema: Mapping[str, Any] | None, problems: list[PolicyProblem]
) -> Document | None:
    """The document if it parses and matches its schema; its problems otherwise."""
    doc = read_yaml(path, display, problems)
    if doc is None or schema is None:
        return None
    found = _schema_problems(doc, schema)
    problems.extend(found)
    return None if found else doc
