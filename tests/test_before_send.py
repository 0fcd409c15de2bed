"""before_send(msg): one interception point for single calls and batches alike."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import WRITE_KEY

from simple_segment import Client, Message, ValidationError
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
