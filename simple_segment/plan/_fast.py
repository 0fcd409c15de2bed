"""A rule's schema compiled to plain Python predicates: is this message valid, yes or no.

jsonschema interprets a schema on every call (a new validator object per subschema
visited), about 130 µs for a ten-property event: more than a third of a delivered
call.  Most tracking-plan schemas use a small part of draft-07 (type, enum, const,
properties, required, additionalProperties, items, bounds, pattern, format), so each
rule's schema is compiled once, when the plan is loaded, into closures that answer
"valid?" exactly as jsonschema would for those keywords.  Only a message found invalid
goes through jsonschema, which says where and why.  A schema that uses any other
draft-07 keyword (``$ref``, ``anyOf``, ``dependencies``...) gets no predicate and is
always checked by jsonschema.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sized
from typing import Any

__all__ = ["compile_predicate"]

Predicate = Callable[[Any], bool]
Conforms = Callable[[Any, str], bool]

# Draft-07 keywords that only annotate: jsonschema does not validate them.
_ANNOTATIONS = frozenset({"$schema", "$id", "$comment", "title", "description", "default", "examples",
                          "definitions", "readOnly", "writeOnly"})
_SUPPORTED = frozenset({
    "type", "enum", "const", "properties", "required", "additionalProperties", "items", "minItems", "maxItems",
    "minProperties", "maxProperties", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "minLength",
    "maxLength", "pattern", "format",
})


class _UnsupportedError(Exception):
    """The schema uses a keyword this compiler leaves to jsonschema."""


def compile_predicate(schema: object, keywords: frozenset[str], conforms: Conforms) -> Predicate | None:
    """Return a predicate equal to jsonschema's ``is_valid`` for ``schema``, or None if it cannot be made.

    ``keywords`` are the draft's validating keywords (``Draft7Validator.VALIDATORS``);
    other keys are ignored, as jsonschema ignores them.  ``conforms(value, format)`` is
    the format checker's.
    """
    try:
        return _compile(schema, keywords, conforms)
    except _UnsupportedError:
        return None


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


_TYPES: dict[str, Predicate] = {
    "null": lambda value: value is None,
    "boolean": lambda value: isinstance(value, bool),
    "string": lambda value: isinstance(value, str),
    "array": lambda value: isinstance(value, list),
    "object": lambda value: isinstance(value, dict),
    "number": _is_number,
    # Draft-07: 1.0 is an integer.
    "integer": lambda value: _is_number(value) and (isinstance(value, int) or float(value).is_integer()),
}


def _scalar_in(values: list[Any]) -> Predicate:
    # jsonschema's equality: True is not 1, 1 is 1.0, a string equals only a string.
    if not all(value is None or isinstance(value, (str, int, float, bool)) for value in values):
        raise _UnsupportedError
    strings = frozenset(value for value in values if isinstance(value, str))
    numbers = [value for value in values if _is_number(value)]
    has_true = any(value is True for value in values)
    has_false = any(value is False for value in values)
    has_none = any(value is None for value in values)

    def member(value: object) -> bool:
        if isinstance(value, str):
            return value in strings
        if value is True:
            return has_true
        if value is False:
            return has_false
        if value is None:
            return has_none
        if _is_number(value):
            return any(value == number for number in numbers)
        return False

    return member


def _compile(schema: object, keywords: frozenset[str], conforms: Conforms) -> Predicate:  # noqa: C901 - one branch per keyword
    if schema is True:
        return lambda _: True
    if schema is False:
        return lambda _: False
    if not isinstance(schema, Mapping):
        raise _UnsupportedError
    if any(key in keywords and key not in _SUPPORTED and key not in _ANNOTATIONS for key in schema):
        raise _UnsupportedError
    checks: list[Predicate] = []
    kinds = schema.get("type")
    if kinds is not None:
        names = [kinds] if isinstance(kinds, str) else kinds
        if not isinstance(names, list) or not all(name in _TYPES for name in names):
            raise _UnsupportedError
        tests = [_TYPES[name] for name in names]
        checks.append(tests[0] if len(tests) == 1 else lambda value: any(test(value) for test in tests))
    if "enum" in schema:
        if not isinstance(schema["enum"], list):
            raise _UnsupportedError
        checks.append(_scalar_in(schema["enum"]))
    if "const" in schema:
        checks.append(_scalar_in([schema["const"]]))
    checks.extend(_object_checks(schema, keywords, conforms))
    checks.extend(_other_checks(schema, keywords, conforms))
    if not checks:
        return lambda _: True
    return _all(checks)


def _all(checks: list[Predicate]) -> Predicate:
    if len(checks) == 1:
        return checks[0]
    if len(checks) == 2:  # noqa: PLR2004 - the usual pair (type and properties), without a loop
        first, second = checks
        return lambda value: first(value) and second(value)
    chain = tuple(checks)

    def every(value: object) -> bool:
        for check in chain:  # noqa: SIM110 - a loop is faster here than all() over a generator
            if not check(value):
                return False
        return True

    return every


def _object_checks(schema: Mapping[str, Any], keywords: frozenset[str], conforms: Conforms) -> list[Predicate]:
    checks: list[Predicate] = []
    required = schema.get("required")
    if required is not None:
        if not isinstance(required, list):
            raise _UnsupportedError
        names = tuple(required)
        checks.append(lambda value: not isinstance(value, dict) or all(name in value for name in names))
    properties = schema.get("properties")
    if properties is not None:
        if not isinstance(properties, Mapping):
            raise _UnsupportedError
        compiled = tuple((name, _compile(sub, keywords, conforms)) for name, sub in properties.items())

        def each(value: object) -> bool:
            if isinstance(value, dict):
                for name, check in compiled:
                    if name in value and not check(value[name]):
                        return False
            return True

        checks.append(each)
    if "additionalProperties" in schema:
        extra = _compile(schema["additionalProperties"], keywords, conforms)
        known = frozenset(properties or ())
        checks.append(
            lambda value: not isinstance(value, dict) or all(extra(value[k]) for k in value if k not in known)
        )
    return checks


def _other_checks(schema: Mapping[str, Any], keywords: frozenset[str], conforms: Conforms) -> list[Predicate]:  # noqa: C901 - one branch per keyword
    checks: list[Predicate] = []
    if "items" in schema:
        if not isinstance(schema["items"], (Mapping, bool)):
            raise _UnsupportedError  # the tuple form
        item = _compile(schema["items"], keywords, conforms)
        checks.append(lambda value: not isinstance(value, list) or all(item(entry) for entry in value))
    sizes: tuple[tuple[str, type[Sized], Callable[[int, int], bool]], ...] = (
        ("minProperties", dict, lambda n, b: n >= b),
        ("maxProperties", dict, lambda n, b: n <= b),
        ("minItems", list, lambda n, b: n >= b),
        ("maxItems", list, lambda n, b: n <= b),
        ("minLength", str, lambda n, b: n >= b),
        ("maxLength", str, lambda n, b: n <= b),
    )
    for key, kind, fits in sizes:
        if key in schema:
            bound = _bound(schema[key])
            checks.append(_sized(kind, bound, fits))
    numeric: tuple[tuple[str, Callable[[Any, Any], bool]], ...] = (
        ("minimum", lambda v, b: v >= b),
        ("maximum", lambda v, b: v <= b),
        ("exclusiveMinimum", lambda v, b: v > b),
        ("exclusiveMaximum", lambda v, b: v < b),
    )
    for key, fits in numeric:
        if key in schema:
            limit = schema[key]
            if not _is_number(limit) or not math.isfinite(limit):
                raise _UnsupportedError
            checks.append(_limited(limit, fits))
    if "pattern" in schema:
        if not isinstance(schema["pattern"], str):
            raise _UnsupportedError
        search = re.compile(schema["pattern"]).search
        checks.append(lambda value: not isinstance(value, str) or search(value) is not None)
    if "format" in schema:
        name = schema["format"]
        checks.append(lambda value: conforms(value, name))
    return checks


def _sized(kind: type[Sized], bound: int, fits: Callable[[int, int], bool]) -> Predicate:
    return lambda value: not isinstance(value, kind) or fits(len(value), bound)


def _limited(limit: float, fits: Callable[[Any, Any], bool]) -> Predicate:
    return lambda value: not _is_number(value) or fits(value, limit)


def _bound(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _UnsupportedError
    return value
