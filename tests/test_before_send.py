"""before_send(msg): one interception point for single calls and batches alike."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import WRITE_KEY

import simple_segment
from simple_segment import Client, ConfigurationError, Message, ValidationError
from simple_segment.testing import FakeSegment, capture


def scrub_email(msg: Message) -> Message:
    properties = {k: v for k, v in msg.get("properties", {}).items() if k != "email"}
    return Message({**msg, "properties": properties, "context": {**msg["context"], "scrubbed": True}})


def test_hook_changes_what_is_sent_for_calls_and_batches(fake_segment: FakeSegment) -> None:
    """The hook sees each validated message; what it returns is sent, and returned to the caller."""
    seen: list[str] = []

    def hook(msg: Message) -> Message:
        seen.append(msg["event"])
        return scrub_email(msg)

    with Client(WRITE_KEY, host=fake_segment.url, before_send=hook) as client:
        ok, msg = client.track("u", "Single", {"email": "a@b.c", "plan": "pro"})
        with client.batch(context={"app": {"name": "x"}}) as batch:
            batch.track("u", "Batched", {"email": "a@b.c"})
    assert ok is True
    assert seen == ["Single", "Batched"]
    assert msg["properties"] == {"plan": "pro"}
    single, batched = fake_segment.messages
    assert single == msg
    assert batched["properties"] == {}
    assert batched["context"]["scrubbed"] is True
    assert batched["context"]["app"] == {"name": "x"}  # the hook saw the batch defaults merged in


def test_returning_none_drops_the_message(fake_segment: FakeSegment) -> None:
    """None drops the message: nothing is sent and the call returns (False, msg)."""

    def drop_internal(msg: Message) -> Message | None:
        return None if msg.get("userId", "").startswith("internal-") else msg

    with Client(WRITE_KEY, host=fake_segment.url, before_send=drop_internal) as client:
        ok, msg = client.track("internal-1", "E")
        kept = client.track("user-1", "E")
        with client.batch() as batch:
            dropped_in_batch = batch.track("internal-2", "E")
            batch.track("user-2", "E")
    assert (ok, msg["userId"]) == (False, "internal-1")
    assert kept[0] is True
    assert dropped_in_batch[0] is False
    assert [m["userId"] for m in fake_segment.messages] == ["user-1", "user-2"]
    assert batch.messages_sent == 1


def test_an_exception_in_the_hook_surfaces_at_the_call_site(fake_segment: FakeSegment) -> None:
    """The hook's own error propagates unchanged; nothing is sent (on_error is for delivery only)."""

    def broken(msg: Message) -> Message:
        raise KeyError("hook failed")

    seen: list[Any] = []
    with Client(WRITE_KEY, host=fake_segment.url, before_send=broken, on_error=lambda e, m: seen.append(e)) as client:
        with pytest.raises(KeyError, match="hook failed"):
            client.track("u", "E")
        with pytest.raises(KeyError), client.batch() as batch:
            batch.track("u", "E")
    assert fake_segment.requests == []
    assert seen == []


@pytest.mark.parametrize(
    ("result", "field"),
    [
        ("not a dict", "before_send()"),
        ({"type": "track"}, "before_send().messageId"),
        (lambda m: {**m, "type": "bogus"}, "before_send().type"),
        (lambda m: {k: v for k, v in m.items() if k != "userId"}, "before_send().userId"),
        (lambda m: {**m, "event": ""}, "before_send().event"),
        (lambda m: {**m, "properties": {"bad": float("nan")}}, "before_send().properties.bad"),
        (lambda m: {**m, "properties": {"obj": object()}}, "before_send().properties.obj"),
        (lambda m: {**m, "properties": []}, "before_send().properties"),
    ],
)
def test_what_the_hook_returns_is_validated_again(result: Any, field: str, fake_segment: FakeSegment) -> None:
    """A hook that breaks the message gets a ValidationError naming the field; nothing is sent."""
    hook = result if callable(result) else (lambda _msg: result)
    with Client(WRITE_KEY, host=fake_segment.url, before_send=hook) as client, pytest.raises(ValidationError) as info:
        client.track("u", "E")
    assert info.value.field == field
    assert fake_segment.requests == []


def test_hook_runs_under_capture_and_send_false() -> None:
    """capture() and send=False take the same path: the hook runs before anything is recorded."""
    with Client(WRITE_KEY, send=False, before_send=scrub_email) as client, capture() as sent:
        _, msg = client.track("u", "E", {"email": "a@b.c"})
    assert msg["properties"] == {}
    assert list(sent) == [msg]


def test_the_callers_message_is_not_changed_by_a_mutating_hook(fake_segment: FakeSegment) -> None:
    """A hook that mutates what it is given cannot reach the caller's own dicts."""
    properties = {"email": "a@b.c"}

    def mutate(msg: Message) -> Message:
        msg["properties"].clear()
        return msg

    with Client(WRITE_KEY, host=fake_segment.url, before_send=mutate) as client:
        client.track("u", "E", properties)
    assert properties == {"email": "a@b.c"}
    assert fake_segment.messages[0]["properties"] == {}


# -- a list of hooks ---------------------------------------------------------------------


def tag(name: str, seen: list[str]) -> Any:
    """A hook that records its name and appends it to ``context.hooks``."""

    def hook(msg: Message) -> Message:
        seen.append(name)
        msg["context"]["hooks"] = [*msg["context"].get("hooks", []), name]
        return msg

    return hook


@pytest.mark.parametrize("container", [list, tuple])
def test_a_list_of_hooks_runs_in_order(fake_segment: FakeSegment, container: Any) -> None:
    """Each hook gets what the previous one returned, for calls and batches alike; the last result is sent."""
    seen: list[str] = []
    hooks = container([tag("first", seen), tag("second", seen), tag("third", seen)])
    with Client(WRITE_KEY, host=fake_segment.url, before_send=hooks) as client:
        ok, msg = client.track("u", "Single")
        with client.batch() as batch:
            batch.track("u", "Batched")
    assert ok is True
    assert seen == ["first", "second", "third"] * 2
    assert [m["context"]["hooks"] for m in fake_segment.messages] == [["first", "second", "third"]] * 2
    assert fake_segment.messages[0] == msg
    assert client.before_send == tuple(hooks)


def test_a_drop_stops_the_chain(fake_segment: FakeSegment) -> None:
    """A hook returning None drops the message: later hooks do not run and the call returns (False, msg)."""
    seen: list[str] = []

    def drop_internal(msg: Message) -> Message | None:
        seen.append("drop_internal")
        return None if msg["userId"].startswith("internal-") else msg

    with Client(
        WRITE_KEY, host=fake_segment.url, before_send=[tag("first", seen), drop_internal, tag("last", seen)]
    ) as client:
        ok, msg = client.track("internal-1", "E")
        assert seen == ["first", "drop_internal"]
        with client.batch() as batch:
            dropped = batch.track("internal-2", "E")
            batch.track("user-2", "E")
    assert ok is False
    assert msg["context"]["hooks"] == ["first"]  # the message as the dropping hook got it
    assert dropped[0] is False
    assert [m["userId"] for m in fake_segment.messages] == ["user-2"]
    assert fake_segment.messages[0]["context"]["hooks"] == ["first", "last"]


def test_what_each_hook_returns_is_validated_naming_the_hook(fake_segment: FakeSegment) -> None:
    """A hook of a list that breaks the message gets a ValidationError naming its index."""
    with Client(
        WRITE_KEY, host=fake_segment.url, before_send=[lambda m: m, lambda m: {**m, "type": "bogus"}]
    ) as client, pytest.raises(ValidationError) as info:
        client.track("u", "E")
    assert info.value.field == "before_send[1]().type"
    with Client(
        WRITE_KEY, host=fake_segment.url, before_send=[lambda m: m, lambda m: {**m, "properties": {"x": float("inf")}}]
    ) as client, pytest.raises(ValidationError) as info:
        client.track("u", "E")
    assert info.value.field == "before_send[1]().properties.x"
    assert fake_segment.requests == []


@pytest.mark.parametrize(
    ("value", "where"),
    [
        ([scrub_email, 42], "[1] must be callable"),
        ((scrub_email, "hook"), "[1] must be callable"),
        ([[scrub_email, {"not": "callable"}]], "[0][1] must be callable"),
        (42, "must be callable as before_send(msg) or a list"),
    ],
)
def test_a_hook_that_is_not_callable_is_a_configuration_error(value: Any, where: str) -> None:
    """Each hook must be callable: ConfigurationError on before_send, naming the index."""
    with pytest.raises(ConfigurationError) as info:
        Client(WRITE_KEY, before_send=value)
    assert info.value.field == "before_send"
    assert where in info.value.reason


def test_an_integration_adds_its_hook_without_taking_the_users(fake_segment: FakeSegment) -> None:
    """``before_send = [before_send, its_hook]`` works whatever the user set: none, one hook or a list."""
    seen: list[str] = []
    integration = tag("integration", seen)
    for users in (None, tag("user", seen), [tag("user", seen), tag("user-2", seen)]):
        simple_segment.write_key, simple_segment.host = WRITE_KEY, fake_segment.url
        simple_segment.before_send = users
        simple_segment.before_send = [simple_segment.before_send, integration]
        simple_segment.track("u", "E")
    assert [m["context"]["hooks"] for m in fake_segment.messages] == [
        ["integration"],
        ["user", "integration"],
        ["user", "user-2", "integration"],
    ]
    assert Client(WRITE_KEY, before_send=[None, []]).before_send is None


def test_hooks_see_scope_context_and_run_at_the_call_in_a_deferred_scope(fake_segment: FakeSegment) -> None:
    """In a deferring scope the hooks run at the call (a drop returns (False, msg) there), not at delivery."""
    seen: list[str] = []

    def drop_without_ip(msg: Message) -> Message | None:
        seen.append(msg["event"])
        return msg if "ip" in msg["context"] else None

    with Client(WRITE_KEY, host=fake_segment.url, before_send=[drop_without_ip]) as client:
        with simple_segment.scope(defer=True):
            dropped = client.track("u", "No Ip")
            with simple_segment.scope(context={"ip": "1.2.3.4"}):
                kept = client.track("u", "Ip")
            assert seen == ["No Ip", "Ip"]
        assert seen == ["No Ip", "Ip"]
    assert (dropped[0], kept[0]) == (False, True)
    assert [m["event"] for m in fake_segment.messages] == ["Ip"]
