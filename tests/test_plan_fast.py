"""The compiled predicates (simple_segment.plan._fast) agree with jsonschema on every value.

They decide "valid?" on the hot path; jsonschema is the reference.  Hypothesis draws
JSON values shaped like the schemas' messages (and arbitrary ones) and compares.
"""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simple_segment import _messages
from simple_segment.plan import TrackingPlan
from simple_segment.plan._fast import compile_predicate

CHECKER = jsonschema.Draft7Validator.FORMAT_CHECKER
KEYWORDS = frozenset(jsonschema.Draft7Validator.VALIDATORS)

SCHEMAS: list[dict[str, Any]] = [
    {
        "type": "object",
        "required": ["a", "b"],
        "properties": {
            "a": {"type": "integer", "minimum": 0, "exclusiveMaximum": 10},
            "b": {"enum": ["x", "y", 1, True, None, 2.5]},
            "c": {"type": ["string", "null"], "minLength": 2, "maxLength": 4, "pattern": "^[a-z]"},
            "d": {"type": "array", "items": {"type": "number", "maximum": 3}, "minItems": 1, "maxItems": 3},
            "e": {"type": "object", "additionalProperties": False, "properties": {"k": {"const": 1}},
                  "minProperties": 1},
            "f": {"type": "string", "format": "date-time"},
            "g": {"type": "string", "format": "email"},
            "h": {"type": "boolean"},
        },
        "additionalProperties": {"type": ["number", "string", "boolean"]},
    },
    {"type": "array", "items": {"type": "object", "required": ["sku"], "properties": {"sku": {"type": "string"}}}},
    {"exclusiveMinimum": 1.5, "multipleOf_is_not_here": 3, "title": "t", "description": "d"},
    True,
    False,
]

KEYS = st.sampled_from(["a", "b", "c", "d", "e", "f", "g", "h", "k", "sku", "z"])
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 12), st.floats(-3, 12, allow_nan=False, allow_infinity=False),
    st.sampled_from(["x", "y", "ab", "Ab", "abcde", "2024-05-06T07:08:09Z", "yesterday", "a@b.c", "nope", ""]),
    st.text(max_size=5),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(KEYS, inner, max_size=6)),
    max_leaves=20,
)


@pytest.mark.parametrize("schema", SCHEMAS, ids=range(len(SCHEMAS)))
@settings(max_examples=400, deadline=None)
@given(value=VALUES)
def test_predicates_agree_with_jsonschema(schema: Any, value: Any) -> None:
    predicate = compile_predicate(schema, KEYWORDS, CHECKER.conforms)
    assert predicate is not None
    expected = jsonschema.Draft7Validator(schema, format_checker=CHECKER).is_valid(value)
    assert predicate(value) is expected


@pytest.mark.parametrize(
    "schema",
    [
        {"$ref": "#/definitions/x", "definitions": {"x": {"type": "string"}}},
        {"anyOf": [{"type": "string"}]},
        {"properties": {"a": {"multipleOf": 2}}},
        {"items": [{"type": "string"}]},
        {"enum": [[1], {"a": 1}]},
        {"dependencies": {"a": ["b"]}},
    ],
)
def test_keywords_it_does_not_cover_leave_the_rule_to_jsonschema(schema: dict[str, Any]) -> None:
    assert compile_predicate(schema, KEYWORDS, CHECKER.conforms) is None


def test_a_rule_without_a_predicate_is_still_checked() -> None:
    plan = TrackingPlan.load({"rules": [{
        "key": "E", "type": "TRACK",
        "jsonSchema": {
            "definitions": {"money": {"type": "number", "multipleOf": 0.01}},
            "properties": {"properties": {"properties": {"total": {"$ref": "#/definitions/money"}}}},
        },
    }]})
    assert [v.path for v in plan.validate(_messages.track("u", "E", {"total": "1"}))] == ["properties.total"]
    assert plan.validate(_messages.track("u", "E", {"total": 1.25})) == []


NEAR_VALID = st.fixed_dictionaries(
    {"a": st.one_of(st.integers(-1, 11), st.floats(-1, 11, allow_nan=False), st.booleans()),
     "b": st.sampled_from(["x", "y", 1, 1.0, True, False, None, 2.5, 0, "z"])},
    optional={
        "c": st.one_of(st.none(), st.sampled_from(["ab", "Ab", "abcde", "a", "abc"])),
        "d": st.lists(st.one_of(st.integers(0, 4), st.floats(0, 4, allow_nan=False), st.booleans()), max_size=4),
        "e": st.one_of(st.just({}), st.just({"k": 1}), st.just({"k": 1.0}), st.just({"k": True}), st.just({"j": 1})),
        "f": st.sampled_from(["2024-05-06T07:08:09Z", "2024-05-06T07:08:09.123+02:00", "2024-13-06T07:08:09Z", "x"]),
        "g": st.sampled_from(["a@b.c", "nope"]),
        "h": st.one_of(st.booleans(), st.integers(0, 1)),
        "z": SCALARS,
    },
)


@settings(max_examples=1500, deadline=None)
@given(value=NEAR_VALID)
def test_predicates_agree_on_values_close_to_valid(value: dict[str, Any]) -> None:
    """The first schema with messages that pass or fail by one keyword: both outcomes are drawn often."""
    predicate = compile_predicate(SCHEMAS[0], KEYWORDS, CHECKER.conforms)
    assert predicate is not None
    assert predicate(value) is jsonschema.Draft7Validator(SCHEMAS[0], format_checker=CHECKER).is_valid(value)
