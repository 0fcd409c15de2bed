"""simple_segment.plan: loading Segment's tracking-plan JSON, choosing rules and versions, violations' paths."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from simple_segment import ConfigurationError, PlanViolationError, ValidationError, _messages
from simple_segment.plan import TrackingPlan, Violation

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "tracking_plan.json"


def schema(properties: dict[str, Any] | None = None, required: list[str] | None = None, field: str = "properties"):
    """A rule's JSON Schema whose ``field`` (properties/traits) has these properties."""
    inner: dict[str, Any] = {"type": "object", "properties": properties or {}}
    if required:
        inner["required"] = required
    return {"$schema": "http://json-schema.org/draft-07/schema#", "type": "object", "properties": {field: inner}}


def track_rule(key: str, properties: dict[str, Any], required: list[str] | None = None, version: int = 1):
    return {"key": key, "type": "TRACK", "version": version, "jsonSchema": schema(properties, required)}


ORDER = track_rule(
    "Order Completed",
    {
        "currency": {"enum": ["USD", "EUR"]},
        "total": {"type": "number"},
        "email": {"type": "string", "format": "email"},
        "paid_at": {"type": "string", "format": "date-time"},
        "receipt": {"type": "string", "format": "uri"},
        "products": {
            "type": "array",
            "items": {"type": "object", "required": ["sku"], "properties": {"sku": {"type": "string"},
                                                                              "price": {"type": "number"}}},
        },
    },
    ["currency", "total"],
)


def track(event: str = "Order Completed", properties: dict[str, Any] | None = None, **kwargs: Any):
    return _messages.track("user-1", event, properties or {}, **kwargs)


def paths(violations: list[Violation]) -> list[str]:
    return [v.path for v in violations]


# -- loading ----------------------------------------------------------------------------


def test_every_documented_shape_loads_the_same_rules(tmp_path: Path) -> None:
    """{"rules"}, under "trackingPlan", a whole API answer under "data", json_schema as JSON text (Terraform), a file."""
    rules = [ORDER]
    terraform = [{"key": "Order Completed", "type": "TRACK", "version": 1, "json_schema": json.dumps(ORDER["jsonSchema"])}]
    path = tmp_path / "plan.json"
    path.write_text(json.dumps({"trackingPlan": {"rules": rules}}))
    shapes = [
        {"rules": rules},
        {"trackingPlan": {"name": "x", "rules": rules}},
        {"data": {"rules": rules, "pagination": {}}},
        {"rules": terraform},
    ]
    plans = [TrackingPlan.load(shape) for shape in shapes] + [TrackingPlan.load(path), TrackingPlan.load(str(path))]
    bad = track(properties={"currency": "GBP", "total": 1})
    for plan in plans:
        assert [(r.type, r.key, r.version) for r in plan.rules] == [("TRACK", "Order Completed", 1)]
        assert paths(plan.validate(bad)) == ["properties.currency"]


@pytest.mark.parametrize(
    ("data", "field", "words"),
    [
        ({"nope": []}, "tracking_plan", '"rules"'),
        ({"rules": [{"type": "ALIAS", "jsonSchema": {}}]}, "rules[0].type", "TRACK"),
        ({"rules": [{"type": "TRACK", "jsonSchema": {}}]}, "rules[0].key", "event name"),
        ({"rules": [{"type": "TRACK", "key": "E", "version": 0}]}, "rules[0].version", "integer"),
        ({"rules": [{"type": "TRACK", "key": "E", "json_schema": "{not json"}]}, "rules[0].json_schema", "JSON"),
        ({"rules": [{"type": "TRACK", "key": "E", "jsonSchema": {"type": "strang"}}]}, "rules[0].jsonSchema.type",
         "draft-07"),
        ({"rules": [track_rule("E", {}), track_rule("E", {})]}, "rules[1]", "twice"),
    ],
)
def test_a_malformed_plan_is_a_configuration_error_naming_the_place(data: Any, field: str, words: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        TrackingPlan.load(data)
    assert caught.value.field == field
    assert words in caught.value.reason


def test_an_unreadable_file_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="cannot read"):
        TrackingPlan.load(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ConfigurationError, match="not valid JSON"):
        TrackingPlan.load(tmp_path / "bad.json")
    with pytest.raises(ConfigurationError, match="unplanned"):
        TrackingPlan.load({"rules": []}, unplanned="deny")  # type: ignore[arg-type]


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)


def test_without_jsonschema_loading_says_what_to_install() -> None:
    """A real interpreter where jsonschema cannot be imported: ConfigurationError naming the extra."""
    done = run_python(
        "import sys; sys.modules['jsonschema'] = None\n"
        "from simple_segment.plan import TrackingPlan\n"
        "from simple_segment import ConfigurationError\n"
        "try:\n"
        f"    TrackingPlan.load({str(EXAMPLE)!r})\n"
        "except ConfigurationError as e:\n"
        "    print(e)\n"
    )
    assert done.returncode == 0, done.stderr
    assert "pip install 'simple-segment[plan]'" in done.stdout


def test_import_simple_segment_does_not_import_jsonschema() -> None:
    done = run_python("import sys, simple_segment, simple_segment.plan, simple_segment.testing; "
                      "print('jsonschema' in sys.modules)")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


# -- violations ---------------------------------------------------------------------------


def test_a_conforming_message_has_no_violations() -> None:
    plan = TrackingPlan.load({"rules": [ORDER]})
    ok = track(properties={"currency": "EUR", "total": 9.5, "email": "a@example.com",
                           "paid_at": "2024-05-06T07:08:09.123+00:00", "receipt": "https://example.com/r/1",
                           "products": [{"sku": "a", "price": 1}]})
    assert plan.validate(ok) == []
    plan.check(ok)


def test_paths_are_dotted_missing_required_at_its_own_path_and_array_items_indexed() -> None:
    plan = TrackingPlan.load({"rules": [ORDER]})
    msg = track(properties={"currency": "EUR", "products": [{"sku": "a"}, {"sku": "b", "price": "free"}, {}]})
    violations = plan.validate(msg)
    assert sorted(paths(violations)) == sorted(
        ["properties.total", "properties.products[1].price", "properties.products[2].sku"]
    )
    by_path = {v.path: v for v in violations}
    assert by_path["properties.total"].message == "'total' is a required property"
    assert "not of type 'number'" in by_path["properties.products[1].price"].message
    assert {v.rule for v in violations} == {"Order Completed"}


@pytest.mark.parametrize(
    ("name", "value"), [("email", "not-an-address"), ("paid_at", "yesterday"), ("receipt", "not a uri")]
)
def test_formats_are_enforced(name: str, value: str) -> None:
    """email, date-time and uri are checked (the plan extra installs what jsonschema needs for them)."""
    plan = TrackingPlan.load({"rules": [ORDER]})
    violations = plan.validate(track(properties={"currency": "EUR", "total": 1, name: value}))
    assert paths(violations) == [f"properties.{name}"]
    assert "is not a" in violations[0].message


def test_keys_that_are_not_names_are_quoted_in_paths() -> None:
    plan = TrackingPlan.load({"rules": [track_rule("E", {"Order ID": {"type": "string"}})]})
    assert paths(plan.validate(track("E", {"Order ID": 5}))) == ['properties["Order ID"]']


def test_rules_apply_by_type_key_and_common() -> None:
    rules = [
        ORDER,
        {"type": "COMMON", "jsonSchema": {"required": ["userId"]}},
        {"type": "IDENTIFY", "jsonSchema": schema({"email": {"type": "string", "format": "email"}}, field="traits")},
        {"type": "GROUP", "jsonSchema": schema({"seats": {"type": "integer"}}, field="traits")},
        {"type": "PAGE", "key": "Home", "jsonSchema": schema({"path": {"const": "/"}})},
        {"type": "PAGE", "jsonSchema": schema({}, ["path"])},
        {"type": "SCREEN", "jsonSchema": schema({"kind": {"type": "string"}})},
    ]
    plan = TrackingPlan.load({"rules": rules})
    anonymous = _messages.track(None, "Order Completed", {"currency": "EUR", "total": 1}, anonymous_id="a")
    checked = {
        "common": paths(plan.validate(anonymous)),
        "identify": plan.validate(_messages.identify("u", {"email": "x"})),
        "group": paths(plan.validate(_messages.group("u", "g", {"seats": "many"}))),
        "home page": paths(plan.validate(_messages.page("u", None, "Home", {"path": "/other"}))),
        "other page": paths(plan.validate(_messages.page("u", None, "Pricing", {}))),
        "screen": paths(plan.validate(_messages.screen("u", None, "S", {"kind": 1}))),
        "alias": paths(plan.validate(_messages.alias("a", "u"))),
        "unplanned track": paths(plan.validate(track("Something Else"))),
    }
    assert checked["common"] == ["userId"]
    assert [(v.path, v.rule) for v in checked["identify"]] == [("traits.email", "IDENTIFY")]
    assert checked["group"] == ["traits.seats"]
    assert checked["home page"] == ["properties.path"]
    assert checked["other page"] == ["properties.path"]
    assert checked["screen"] == ["properties.kind"]
    assert checked["alias"] == []  # COMMON only, and it has a userId
    assert checked["unplanned track"] == []
    assert plan.validate(anonymous)[0].rule == "COMMON"


def test_unplanned_reject_makes_an_unknown_event_a_violation() -> None:
    plan = TrackingPlan.load({"rules": [ORDER]}, unplanned="reject")
    assert plan.validate(track("Nope")) == [Violation("event", "'Nope' is not in the tracking plan", "Nope")]


VERSIONED = {"rules": [
    track_rule("E", {}, ["one"], version=1),
    track_rule("E", {}, ["three"], version=3),
    track_rule("E", {}, ["two"], version=2),
]}


def versioned(version: object = None) -> dict[str, Any]:
    context = {} if version is None else {"protocols": {"event_version": version}}
    return track("E", {}, context=context)


def test_the_highest_version_applies_unless_the_message_asks_for_one() -> None:
    """context.protocols.event_version (an int) selects; a version not in the plan, or not an int, falls back."""
    plan = TrackingPlan.load(VERSIONED)
    assert paths(plan.validate(versioned())) == ["properties.three"]
    assert paths(plan.validate(versioned(1))) == ["properties.one"]
    assert paths(plan.validate(versioned(2))) == ["properties.two"]
    assert paths(plan.validate(versioned(7))) == ["properties.three"]
    assert paths(plan.validate(versioned("1"))) == ["properties.three"]
    assert paths(plan.validate(versioned(1.5))) == ["properties.three"]
    assert [r.version for r in plan.rules_for(versioned(2))] == [2]


def test_default_version_oldest_is_what_segment_protocols_does() -> None:
    plan = TrackingPlan.load(VERSIONED, default_version="oldest")
    assert paths(plan.validate(versioned())) == ["properties.one"]
    assert paths(plan.validate(versioned(3))) == ["properties.three"]


def test_check_and_check_all_raise_one_error_naming_every_path() -> None:
    plan = TrackingPlan.load({"rules": [ORDER]})
    good = track(properties={"currency": "EUR", "total": 1})
    bad = track(properties={"currency": "GBP", "total": "1"})
    with pytest.raises(PlanViolationError) as caught:
        plan.check(bad)
    error = caught.value
    assert isinstance(error, ValidationError)
    assert error.paths == ["properties.currency", "properties.total"]
    assert "properties.currency" in str(error)
    assert "properties.total" in str(error)
    with pytest.raises(PlanViolationError) as caught:
        plan.check_all([good, bad, bad])
    assert caught.value.paths == [
        "messages[1].properties.currency", "messages[1].properties.total",
        "messages[2].properties.currency", "messages[2].properties.total",
    ]
    plan.check_all([good, good])


def test_the_error_survives_pickle_and_a_json_round_trip() -> None:
    plan = TrackingPlan.load({"rules": [ORDER]})
    with pytest.raises(PlanViolationError) as caught:
        plan.check(track(properties={"currency": "GBP", "total": 1}))
    error = caught.value
    again = pickle.loads(pickle.dumps(error))
    assert again.violations == error.violations
    assert isinstance(again.violations[0], Violation)
    rebuilt = type(error)(*json.loads(json.dumps(error.args)))
    assert str(rebuilt) == str(error)
    assert rebuilt.paths == ["properties.currency"]


def test_the_readme_example_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """The first example of README "Tracking plans" runs as written, from the repository root."""
    import re

    readme = (EXAMPLE.parent.parent / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Tracking plans\n", 1)[1].split("\n## ", 1)[0]
    code = re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)[0]
    monkeypatch.chdir(EXAMPLE.parent.parent)
    exec(compile(code, "README.md Tracking plans", "exec"), {"__name__": "readme_example"})  # noqa: S102
