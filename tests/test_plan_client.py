"""Client(tracking_plan=..., on_violation=...): the message as it would be sent is checked at the call.

Real clients against a FakeSegment on loopback: what the server receives says what was sent.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from conftest import WRITE_KEY

import simple_segment
from simple_segment import Client, ConfigurationError, PlanViolationError
from simple_segment.plan import TrackingPlan
from simple_segment.testing import FakeSegment, capture

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "tracking_plan.json"

PLAN = {
    "rules": [
        {
            "key": "Order Completed",
            "type": "TRACK",
            "jsonSchema": {
                "properties": {
                    "properties": {
                        "type": "object",
                        "required": ["total"],
                        "properties": {"total": {"type": "number"}, "currency": {"enum": ["USD", "EUR"]}},
                    },
                    "context": {
                        "properties": {"app": {"required": ["version"], "properties": {"version": {"type": "string"}}}}
                    },
                },
            },
        },
    ],
}
GOOD = {"total": 10, "currency": "EUR"}
BAD = {"total": "ten", "currency": "GBP"}


@pytest.fixture
def plan() -> TrackingPlan:
    return TrackingPlan.load(PLAN)


def make(server: FakeSegment, plan: TrackingPlan, **options: Any) -> Client:
    return Client(WRITE_KEY, host=server.url, timeout=2, total_timeout=8, backoff_factor=0.01,
                  tracking_plan=plan, **options)


def test_raise_is_the_default_and_nothing_is_sent(fake_segment: FakeSegment, plan: TrackingPlan) -> None:
    with make(fake_segment, plan) as client:
        assert client.on_violation == "raise"
        assert client.tracking_plan is plan
        with pytest.raises(PlanViolationError) as caught:
            client.track("user-1", "Order Completed", BAD)
        assert caught.value.paths == ["properties.total", "properties.currency"]
        client.track("user-1", "Order Completed", GOOD)
    assert [m["properties"] for m in fake_segment.messages] == [GOOD]
    assert len(fake_segment.requests) == 1


def test_drop_returns_false_counts_and_logs_at_debug(
    fake_segment: FakeSegment, plan: TrackingPlan, caplog: pytest.LogCaptureFixture
) -> None:
    with make(fake_segment, plan, on_violation="drop") as client, caplog.at_level(logging.DEBUG, "simple_segment"):
        ok, msg = client.track("user-1", "Order Completed", BAD)
        assert ok is False
        assert msg["properties"] == BAD
        assert client.violations_dropped == 1
        assert client.track("user-1", "Order Completed", GOOD)[0] is True
        assert client.violations_dropped == 1
    dropped = [r for r in caplog.records if "breaks the tracking plan" in r.getMessage()]
    assert [r.levelno for r in dropped] == [logging.DEBUG]
    assert "properties.currency" in dropped[0].getMessage()
    assert [m["properties"] for m in fake_segment.messages] == [GOOD]


def test_warn_logs_a_warning_then_sends(
    fake_segment: FakeSegment, plan: TrackingPlan, caplog: pytest.LogCaptureFixture
) -> None:
    with make(fake_segment, plan, on_violation="warn") as client, caplog.at_level(logging.DEBUG, "simple_segment"):
        ok, _ = client.track("user-1", "Order Completed", BAD)
    assert ok is True
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "properties.total" in warnings[0].getMessage()
    assert [m["properties"] for m in fake_segment.messages] == [BAD]
    assert client.violations_dropped == 0


def test_send_switches_validation_off(fake_segment: FakeSegment, plan: TrackingPlan) -> None:
    with make(fake_segment, plan, on_violation="send") as client:
        assert client.track("user-1", "Order Completed", BAD)[0] is True
    assert [m["properties"] for m in fake_segment.messages] == [BAD]


def test_the_message_checked_is_the_one_after_before_send(fake_segment: FakeSegment, plan: TrackingPlan) -> None:
    """A hook that repairs a message makes it pass; one that breaks it makes it fail."""

    def repair(msg: dict[str, Any]) -> dict[str, Any]:
        msg["properties"] = {"total": 1} if msg["properties"].get("fix") else {"total": "broken"}
        return msg

    with make(fake_segment, plan, before_send=repair) as client:
        client.track("user-1", "Order Completed", {"fix": True, "total": "no"})
        with pytest.raises(PlanViolationError, match=r"properties\.total"):
            client.track("user-1", "Order Completed", {"total": 5})
    assert [m["properties"] for m in fake_segment.messages] == [{"total": 1}]


def test_in_a_batch_a_violating_call_raises_at_the_call_and_the_rest_are_sent(
    fake_segment: FakeSegment, plan: TrackingPlan
) -> None:
    with make(fake_segment, plan) as client, client.batch() as batch:
        batch.track("user-1", "Order Completed", GOOD)
        with pytest.raises(PlanViolationError):
            batch.track("user-2", "Order Completed", BAD)
        batch.track("user-3", "Order Completed", GOOD)
    assert [m["userId"] for m in fake_segment.messages] == ["user-1", "user-3"]
    assert batch.messages_sent == 2


def test_a_batch_context_is_merged_before_the_check(fake_segment: FakeSegment, plan: TrackingPlan) -> None:
    """The plan requires context.app.version (a str): a batch's context supplies it, merged recursively under the message's own."""
    with make(fake_segment, plan) as client:
        with client.batch(context={"app": {"version": "1.2"}}) as batch:
            batch.track("user-1", "Order Completed", GOOD)
            batch.track("user-2", "Order Completed", GOOD, context={"app": {"name": "x"}})  # version still merged in
            with pytest.raises(PlanViolationError, match=r"context\.app\.version"):
                batch.track("user-4", "Order Completed", GOOD, context={"app": {"version": 2}})  # its own wins
        with client.batch() as batch, pytest.raises(PlanViolationError):
            batch.track("user-3", "Order Completed", GOOD, context={"app": {}})
    assert [m["userId"] for m in fake_segment.messages] == ["user-1", "user-2"]
    assert fake_segment.messages[1]["context"]["app"] == {"version": "1.2", "name": "x"}


def test_drop_inside_a_batch_returns_false(plan: TrackingPlan) -> None:
    with capture() as sent, Client(WRITE_KEY, tracking_plan=plan, on_violation="drop") as client:
        with client.batch() as batch:
            assert batch.track("user-1", "Order Completed", BAD)[0] is False
            assert batch.track("user-2", "Order Completed", GOOD)[0] is True
        assert client.violations_dropped == 1
    assert [m["userId"] for m in sent] == ["user-2"]


def test_module_settings_of_the_same_names(plan: TrackingPlan) -> None:
    simple_segment.write_key = WRITE_KEY
    simple_segment.tracking_plan = plan
    with capture() as sent:
        with pytest.raises(PlanViolationError):
            simple_segment.track("user-1", "Order Completed", BAD)
        simple_segment.on_violation = "drop"
        assert simple_segment.track("user-1", "Order Completed", BAD)[0] is False
        assert simple_segment.default_client is not None
        assert simple_segment.default_client.violations_dropped == 1
        simple_segment.tracking_plan = str(EXAMPLE)  # a path is loaded
        assert simple_segment.track("user-1", "Order Completed", BAD)[0] is False
    assert list(sent) == []


def test_options_are_validated() -> None:
    with pytest.raises(ConfigurationError) as caught:
        Client(WRITE_KEY, on_violation="ignore")  # type: ignore[arg-type]
    assert caught.value.field == "on_violation"
    with pytest.raises(ConfigurationError) as caught:
        Client(WRITE_KEY, tracking_plan={"rules": []})  # type: ignore[arg-type]
    assert caught.value.field == "tracking_plan"
    with pytest.raises(ConfigurationError, match="cannot read"):
        Client(WRITE_KEY, tracking_plan="/nonexistent/plan.json")
    assert Client(WRITE_KEY).violations_dropped == 0
    assert Client(WRITE_KEY).tracking_plan is None


def test_captured_messages_are_checked_in_one_call(plan: TrackingPlan) -> None:
    with capture() as sent, Client(WRITE_KEY, tracking_plan=plan, on_violation="warn") as client:
        client.track("user-1", "Order Completed", GOOD)
        sent.check(plan)
        client.track("user-2", "Order Completed", BAD)
    with pytest.raises(PlanViolationError) as caught:
        sent.check(plan)
    assert caught.value.paths == ["messages[1].properties.total", "messages[1].properties.currency"]


PLAN_TEST = """
import simple_segment

def test_good():
    simple_segment.track("user-1", "Signed Up", {"plan": "pro"})

def test_bad():
    simple_segment.track("user-1", "Signed Up", {"plan": "platinum"})

def test_uses_the_fixture(segment_plan, segment_capture):
    simple_segment.identify("user-1", {"email": "ada@example.com"})
    segment_capture.check(segment_plan)
"""


def test_pytest_ini_option_fails_a_test_on_any_violation(pytester: pytest.Pytester) -> None:
    """segment_plan = <path>: a test whose code sends a violating message fails, naming the path and the line."""
    (pytester.path / "plan.json").write_text(EXAMPLE.read_text())
    pytester.makeini("[pytest]\nsegment_plan = plan.json\n")
    pytester.makeconftest(
        "import pytest, simple_segment\n"
        "from simple_segment.testing import capture\n"
        "@pytest.fixture(autouse=True)\n"
        "def quiet():\n"
        "    simple_segment.write_key = 'k'\n"
        "    with capture():\n"
        "        yield\n"
    )
    pytester.makepyfile(test_app=PLAN_TEST)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:randomly")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["*test_app.py:7: track 'Signed Up' breaks the tracking plan: properties.plan:*"])


def test_without_the_ini_option_the_fixture_says_how_to_set_it(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_it(segment_plan):\n    pass\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:randomly")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*set the ini option `segment_plan = path/to/tracking_plan.json`*"])


def test_a_deferred_scope_checks_at_the_call_with_its_context_merged(fake_segment: FakeSegment, plan: TrackingPlan) -> None:
    """Inside scope(defer=True): a violating call raises at its line, nothing is posted until the scope ends."""
    with make(fake_segment, plan) as client:
        with simple_segment.scope(context={"app": {"version": "1.2"}}, defer=True):
            assert client.track("user-1", "Order Completed", GOOD)[0] is True  # the scope supplies app.version
            with pytest.raises(PlanViolationError, match=r"context\.app\.version"):
                client.track("user-2", "Order Completed", GOOD, context={"app": {"version": 2}})
            with pytest.raises(PlanViolationError):
                client.track("user-3", "Order Completed", BAD)
            client.track("user-4", "Order Completed", GOOD)
            assert fake_segment.messages == []  # held until the scope ends
    assert [m["userId"] for m in fake_segment.messages] == ["user-1", "user-4"]
    assert len(fake_segment.requests) == 1
