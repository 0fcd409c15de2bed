"""A Segment tracking plan (Protocols) loaded once and checked against messages.

The plan is read as Segment's Public API and its Terraform provider hold it: a list
of rules, each ``{"key": ..., "type": "TRACK", "version": 1, "jsonSchema": {...}}``
whose JSON Schema (draft-07) describes the whole message.  Every rule is compiled
once, when the plan is loaded; :meth:`TrackingPlan.validate` picks the rules that
apply to a message and lists what it breaks.

``jsonschema`` (the ``plan`` extra) is imported only when a plan is loaded.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

from simple_segment.errors import ConfigurationError, PlanViolationError

from ._fast import Predicate, compile_predicate

if TYPE_CHECKING:
    from jsonschema.exceptions import ValidationError as SchemaError
    from jsonschema.protocols import Validator

__all__ = ["RULE_TYPES", "Rule", "TrackingPlan", "Unplanned", "Violation", "violation_error"]

RULE_TYPES = ("TRACK", "IDENTIFY", "GROUP", "PAGE", "SCREEN", "COMMON")
"""The rule types of a Segment tracking plan."""

Unplanned = Literal["allow", "reject"]
"""What a track event with no rule in the plan is: allowed, or a violation."""

INSTALL_HINT = "pip install 'simple-segment[plan]'"

_MESSAGE_LIMIT = 200
"""Longest violation message kept: jsonschema repeats whole values in some of them."""

# Draft-07's formats.  jsonschema checks some of them only when an optional package is
# there (date-time and time: rfc3339-validator; uri: rfc3986-validator...); a plan
# that uses one it cannot check is refused rather than left unchecked.
_DRAFT7_FORMATS = frozenset({
    "date", "date-time", "email", "hostname", "idn-email", "idn-hostname", "ipv4", "ipv6", "iri",
    "iri-reference", "json-pointer", "regex", "relative-json-pointer", "time", "uri", "uri-reference",
    "uri-template",
})
_PLAIN_KEY = re.compile(r"[A-Za-z_$][A-Za-z0-9_$-]*\Z")


class Violation(NamedTuple):
    """One way a message breaks the plan.

    A tuple, so it survives pickling and JSON (inside
    :class:`~simple_segment.PlanViolationError`).  Since: 0.2.0
    """

    path: str
    """Dotted path of the offending value (``properties.products[1].price``); a missing
    required property is reported at its own path."""
    message: str
    """What is wrong, in jsonschema's words."""
    rule: str
    """The rule's key (``"Order Completed"``), or its type for keyless rules (``"COMMON"``)."""

    def __str__(self) -> str:
        return f"{self.path}: {self.message} [{self.rule}]"


@dataclass(frozen=True)
class Rule:
    """One rule of a plan, as loaded.

    Since: 0.2.0
    """

    type: str
    """TRACK, IDENTIFY, GROUP, PAGE, SCREEN or COMMON."""
    key: str | None
    """The event name (TRACK) or page/screen name; None for a keyless rule."""
    version: int
    """The rule's version (1 when the plan does not say)."""
    json_schema: Mapping[str, Any]
    """The draft-07 JSON Schema of the whole message."""

    @property
    def name(self) -> str:
        """The key, or the type for a keyless rule: what violations name."""
        return self.key if self.key is not None else self.type


class _Compiled(NamedTuple):
    rule: Rule
    validator: Validator
    valid: Predicate | None
    """The schema as plain predicates (see ``_fast``), when it uses only what they cover."""


class TrackingPlan:
    """A tracking plan, its rules compiled once; load one with :meth:`load`.

    Which rules apply to a message: every COMMON rule, plus for a track message the
    TRACK rule keyed by its event; for a page or screen message the PAGE/SCREEN rule
    keyed by its name, else the keyless one; for identify and group the keyless rule.
    Where a rule has several versions, the highest applies unless the message asks for
    one in ``context.protocols.event_version`` (an int, as Segment Protocols reads it);
    a version the plan does not have falls back to the default, as in Protocols.  With
    ``default_version="oldest"`` a message that asks for none is checked against the
    oldest version, which is what Segment's Protocols does.

    Since: 0.2.0
    """

    def __init__(
        self,
        rules: Sequence[Rule],
        *,
        unplanned: Unplanned = "allow",
        default_version: Literal["latest", "oldest"] = "latest",
    ) -> None:
        if unplanned not in ("allow", "reject"):
            raise ConfigurationError("unplanned", f"must be 'allow' or 'reject', not {unplanned!r}")
        if default_version not in ("latest", "oldest"):
            raise ConfigurationError("default_version", f"must be 'latest' or 'oldest', not {default_version!r}")
        self.unplanned: Unplanned = unplanned
        self.default_version = default_version
        self.rules: tuple[Rule, ...] = tuple(rules)
        self._index: dict[tuple[str, str | None], list[_Compiled]] = {}
        for position, rule in enumerate(self.rules):
            versions = self._index.setdefault((rule.type, rule.key), [])
            if any(known.rule.version == rule.version for known in versions):
                raise ConfigurationError(
                    f"rules[{position}]", f"{rule.type} rule {rule.name!r} version {rule.version} appears twice"
                )
            versions.append(_compile(rule, f"rules[{position}]"))
        for versions in self._index.values():
            versions.sort(key=lambda compiled: compiled.rule.version)
        self._common = tuple(self._index.get(("COMMON", None), ()))

    def __repr__(self) -> str:
        return f"<TrackingPlan {len(self.rules)} rules unplanned={self.unplanned!r}>"

    # -- loading ----------------------------------------------------------------------

    @classmethod
    def load(
        cls,
        path_or_dict: str | os.PathLike[str] | Mapping[str, Any],
        *,
        unplanned: Unplanned = "allow",
        default_version: Literal["latest", "oldest"] = "latest",
    ) -> TrackingPlan:
        """Load a plan from a JSON file or from its parsed JSON, and compile its rules.

        Accepts ``{"rules": [...]}`` as the Public API lists them, the same under
        ``"trackingPlan"`` (and under ``"data"``, a whole API answer), and the
        Terraform provider's ``json_schema`` (an object or its JSON text) for
        ``jsonSchema``.  Raises :class:`~simple_segment.ConfigurationError` naming the
        problem: the ``plan`` extra is not installed (``pip install
        'simple-segment[plan]'``), the file cannot be read, a rule is malformed or its
        schema is not valid draft-07, or it uses a format that cannot be checked.
        Since: 0.2.0
        """
        if isinstance(path_or_dict, Mapping):
            data: object = path_or_dict
        else:
            data = _read(Path(path_or_dict))
        return cls(parse_rules(data), unplanned=unplanned, default_version=default_version)

    # -- validating -------------------------------------------------------------------

    def rules_for(self, message: Mapping[str, Any]) -> list[Rule]:
        """Return the rules (one version each) that apply to ``message``."""
        return [compiled.rule for compiled in self._applicable(message)[0]]

    def validate(self, message: Mapping[str, Any]) -> list[Violation]:
        """Return every way ``message`` (a message as sent, in wire names) breaks the plan.

        Empty when it conforms.  Never raises for a bad message; formats (``email``,
        ``date-time``, ``uri``...) are checked.  Since: 0.2.0
        """
        applicable, unplanned = self._applicable(message)
        violations: list[Violation] = []
        if unplanned is not None:
            violations.append(Violation("event", f"{unplanned!r} is not in the tracking plan", unplanned))
        for compiled in applicable:
            valid = compiled.valid
            if valid is not None and valid(message):
                continue  # the common case: conforms, said in a few µs
            name = compiled.rule.name
            violations.extend(_violation(error, name) for error in compiled.validator.iter_errors(message))
        return violations

    def check(self, message: Mapping[str, Any]) -> None:
        """Raise :class:`~simple_segment.PlanViolationError` if ``message`` breaks the plan.

        Since: 0.2.0
        """
        violations = self.validate(message)
        if violations:
            raise violation_error(violations)

    def check_all(self, messages: Iterable[Mapping[str, Any]]) -> None:
        """Check many messages at once; raise one error naming every violation of every message.

        Paths start with the message's position: ``messages[2].properties.currency``.
        Raises :class:`~simple_segment.PlanViolationError`.  Since: 0.2.0
        """
        found = [
            violation._replace(path=f"messages[{index}].{violation.path}")
            for index, message in enumerate(messages)
            for violation in self.validate(message)
        ]
        if found:
            raise violation_error(found)

    def _applicable(self, message: Mapping[str, Any]) -> tuple[list[_Compiled], str | None]:
        """Return the compiled rules for ``message``, and the event name when it is an unplanned track."""
        index = self._index
        requested = _requested_version(message)
        chosen = [self._pick(versions, requested) for versions in (self._common,) if versions]
        kind = message.get("type")
        unplanned = None
        if kind == "track":
            event = message.get("event")
            versions = index.get(("TRACK", event)) if isinstance(event, str) else None
            if versions:
                chosen.append(self._pick(versions, requested))
            elif self.unplanned == "reject":
                unplanned = str(event)
        elif kind in ("page", "screen"):
            rule_type = kind.upper()
            name = message.get("name")
            versions = (index.get((rule_type, name)) if isinstance(name, str) else None) or index.get((rule_type, None))
            if versions:
                chosen.append(self._pick(versions, requested))
        elif kind in ("identify", "group"):
            versions = index.get((kind.upper(), None))
            if versions:
                chosen.append(self._pick(versions, requested))
        return chosen, unplanned

    def _pick(self, versions: Sequence[_Compiled], requested: int | None) -> _Compiled:
        if requested is not None:
            for compiled in versions:
                if compiled.rule.version == requested:
                    return compiled
        return versions[-1] if self.default_version == "latest" else versions[0]


def _requested_version(message: Mapping[str, Any]) -> int | None:
    context = message.get("context")
    protocols = context.get("protocols") if isinstance(context, dict) else None
    version = protocols.get("event_version") if isinstance(protocols, dict) else None
    # Protocols reads an integer; 3.2, "2" or True select nothing (the default applies).
    return version if type(version) is int else None


def violation_error(violations: Sequence[Violation]) -> PlanViolationError:
    """Return the error that names every violation (its ``field`` is the first path)."""
    first = violations[0]
    return PlanViolationError(first.path, first.message, list(violations))


# -- reading a plan --------------------------------------------------------------------


def _read(path: Path) -> object:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigurationError("tracking_plan", f"cannot read {str(path)!r}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigurationError("tracking_plan", f"{str(path)!r} is not UTF-8 text: {exc.reason}") from None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise ConfigurationError("tracking_plan", f"{str(path)!r} is not valid JSON: {exc}") from None


def parse_rules(data: object) -> list[Rule]:
    """Read the rules of a plan's JSON; raise :class:`ConfigurationError` naming what is wrong."""
    if isinstance(data, Mapping) and isinstance(data.get("data"), Mapping):
        data = data["data"]
    if isinstance(data, Mapping) and isinstance(data.get("trackingPlan"), Mapping):
        data = data["trackingPlan"]
    rules = data.get("rules") if isinstance(data, Mapping) else None
    if not isinstance(rules, list):
        raise ConfigurationError("tracking_plan", 'must be a JSON object with a list of "rules"')
    return [_rule(raw, f"rules[{position}]") for position, raw in enumerate(rules)]


def _rule(raw: object, where: str) -> Rule:
    if not isinstance(raw, Mapping):
        raise ConfigurationError(where, "must be an object")
    kind = raw.get("type")
    if kind not in RULE_TYPES:
        raise ConfigurationError(f"{where}.type", f"must be one of {', '.join(RULE_TYPES)}, not {kind!r}")
    key = _key(raw.get("key"), kind, where)
    version = raw.get("version", 1)
    if type(version) is not int or version < 1:
        raise ConfigurationError(f"{where}.version", f"must be an integer >= 1, not {version!r}")
    schema = raw.get("jsonSchema", raw.get("json_schema"))
    if isinstance(schema, str):  # Terraform holds it as JSON text (jsonencode)
        try:
            schema = json.loads(schema)
        except ValueError as exc:
            raise ConfigurationError(f"{where}.json_schema", f"is not valid JSON: {exc}") from None
    if schema is None:
        schema = {}
    if not isinstance(schema, Mapping):
        raise ConfigurationError(f"{where}.jsonSchema", "must be a JSON Schema object")
    return Rule(kind, key, version, schema)


def _key(key: object, kind: str, where: str) -> str | None:
    if key is not None and not isinstance(key, str):
        raise ConfigurationError(f"{where}.key", f"must be a string, not {type(key).__name__}")
    if kind == "TRACK" and not key:
        raise ConfigurationError(f"{where}.key", "a TRACK rule needs the event name as its key")
    # IDENTIFY, GROUP and COMMON rules apply to every message of their type, whatever their key.
    return key or None if kind in ("TRACK", "PAGE", "SCREEN") else None


def _compile(rule: Rule, where: str) -> _Compiled:
    try:
        import jsonschema  # noqa: PLC0415 - the plan extra, imported only when a plan is loaded
    except ImportError:
        raise ConfigurationError(
            "tracking_plan", f"tracking plans need the jsonschema package: {INSTALL_HINT}"
        ) from None
    validator_class = jsonschema.Draft7Validator
    try:
        validator_class.check_schema(rule.json_schema)
    except jsonschema.SchemaError as exc:
        inner = _path_text(exc.absolute_path)
        field = f"{where}.jsonSchema{'' if not inner else inner if inner.startswith('[') else '.' + inner}"
        raise ConfigurationError(field, f"is not a valid draft-07 schema: {exc.message}") from None
    checker = validator_class.FORMAT_CHECKER
    missing = sorted((_formats(rule.json_schema) & _DRAFT7_FORMATS) - set(checker.checkers))
    if missing:
        raise ConfigurationError(
            f"{where}.jsonSchema",
            f"uses format {', '.join(missing)}, which jsonschema cannot check without its optional packages: "
            f"{INSTALL_HINT}",
        )
    validator = validator_class(rule.json_schema, format_checker=checker)
    valid = compile_predicate(rule.json_schema, frozenset(validator.VALIDATORS), checker.conforms)
    return _Compiled(rule, validator, valid)


def _formats(schema: object) -> set[str]:
    found: set[str] = set()
    stack = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, Mapping):
            value = node.get("format")
            if isinstance(value, str):
                found.add(value)
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return found


# -- violations ------------------------------------------------------------------------


def _path_text(parts: Iterable[str | int]) -> str:
    text = ""
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        elif _PLAIN_KEY.match(part):
            text += f".{part}" if text else part
        else:
            text += f"[{json.dumps(part, ensure_ascii=False)}]"
    return text


def _violation(error: SchemaError, rule: str) -> Violation:
    parts: list[str | int] = list(error.absolute_path)
    if error.validator == "required" and isinstance(error.validator_value, list):
        # jsonschema says "'currency' is a required property" at the object; name the property itself.
        for name in error.validator_value:
            if isinstance(name, str) and error.message.startswith(f"{name!r} "):
                parts.append(name)
                break
    message = error.message
    if len(message) > _MESSAGE_LIMIT:
        message = f"{message[: _MESSAGE_LIMIT - 3]}..."
    return Violation(_path_text(parts) or "(message)", message, rule)
