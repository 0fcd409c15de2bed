"""``simple_segment.scope()``: ambient context merged into every message, and delivery deferred to the block's end.

Everything here goes over real HTTP to the loopback FakeSegment: what is asserted is
what reached the wire.
"""

from __future__ import annotations

import asyncio
import contextvars
import gc
import logging
import threading
import tracemalloc
import uuid
from typing import Any

import pytest
from conftest import WRITE_KEY

import simple_segment
from simple_segment import (
    BatchDeliveryError,
    Client,
    Pending,
    RetryableBatchDeliveryError,
    Scope,
    SegmentError,
    ValidationError,
    scope,
    stable_ids,
)
from simple_segment._ids import STABLE_IDS_NAMESPACE
from simple_segment.testing import FakeSegment, capture


def quick_client(server: FakeSegment, key: str = WRITE_KEY, **options: Any) -> Client:
    return Client(key, host=server.url, timeout=2, total_timeout=8, backoff_factor=0.01, **options)


def ids(messages: list[dict[str, Any]]) -> list[str]:
    return [m["messageId"] for m in messages]


# -- context and integrations ---------------------------------------------------------


PRECEDENCE = [
    # (outer scope, inner scope, batch, message's own) -> context on the wire (library aside)
    pytest.param({"ip": "outer"}, None, None, None, {"ip": "outer"}, id="outer scope only"),
    pytest.param({"ip": "outer"}, {"ip": "inner"}, None, None, {"ip": "inner"}, id="inner over outer"),
    pytest.param({"ip": "outer"}, {"ip": "inner"}, {"ip": "batch"}, None, {"ip": "batch"}, id="batch over scopes"),
    pytest.param({"ip": "o"}, {"ip": "i"}, {"ip": "b"}, {"ip": "own"}, {"ip": "own"}, id="message over all"),
    pytest.param(
        {"page": {"url": "o-url", "path": "/o", "title": "o"}},
        {"page": {"path": "/i", "search": "?i"}},
        {"page": {"search": "?b", "referrer": "b"}},
        {"page": {"referrer": "own"}},
        {"page": {"url": "o-url", "path": "/i", "title": "o", "search": "?b", "referrer": "own"}},
        id="nested dicts merged key by key",
    ),
    pytest.param(
        {"app": {"name": "o", "build": {"n": 1, "sha": "o"}}},
        None,
        None,
        {"app": {"build": {"sha": "own"}}},
        {"app": {"name": "o", "build": {"n": 1, "sha": "own"}}},
        id="recursive at any depth",
    ),
    pytest.param({"page": {"path": "/o"}}, {"page": "not a dict"}, None, None, {"page": "not a dict"}, id="a value wins"),
    pytest.param({"page": "text"}, None, None, {"page": {"path": "/own"}}, {"page": {"path": "/own"}}, id="a dict wins"),
    pytest.param({"ip": "o"}, None, {"locale": "fr"}, {"timezone": "UTC"}, {"ip": "o", "locale": "fr", "timezone": "UTC"},
                 id="disjoint keys all kept"),
]


@pytest.mark.parametrize(("outer", "inner", "batch_context", "own", "expected"), PRECEDENCE)
@pytest.mark.parametrize("kind", ["context", "integrations"])
def test_precedence_message_then_batch_then_inner_then_outer(
    fake_segment: FakeSegment,
    kind: str,
    outer: dict[str, Any],
    inner: dict[str, Any] | None,
    batch_context: dict[str, Any] | None,
    own: dict[str, Any] | None,
    expected: dict[str, Any],
) -> None:
    """The message's own > batch(...) > inner scope > outer scope, recursively; the same for integrations."""
    with quick_client(fake_segment) as client, scope(**{kind: outer}), scope(**{kind: inner}):
        if batch_context is None:
            ok, msg = client.track("u", "E", **{kind: own})
        else:
            with client.batch(**{kind: batch_context}) as batch:
                ok, msg = batch.track("u", "E", **{kind: own})
    assert ok is True
    (sent,) = fake_segment.messages
    assert sent == msg
    got = dict(sent[kind])
    if kind == "context":
        assert got.pop("library")["name"] == "simple_segment"
    assert got == expected


def test_scope_applies_to_module_functions_clients_and_batches(fake_segment: FakeSegment) -> None:
    """One scope reaches the module-level functions, every Client and every Batch; it ends with its block."""
    simple_segment.write_key, simple_segment.host = "module-key", fake_segment.url
    with quick_client(fake_segment) as client:
        with scope(context={"ip": "10.0.0.1"}, integrations={"Amplitude": False}):
            simple_segment.track("u", "Module")
            client.identify("u", {"plan": "pro"})
            with client.batch() as batch:
                batch.page("u", "Docs", "Install")
            with simple_segment.batch() as module_batch:
                module_batch.group("u", "acme")
        client.track("u", "After")
    *inside, after = fake_segment.messages
    assert [m["type"] for m in inside] == ["track", "identify", "page", "group"]
    assert all(m["context"]["ip"] == "10.0.0.1" for m in inside)
    assert all(m["integrations"] == {"Amplitude": False} for m in inside)
    assert "ip" not in after["context"]
    assert after["integrations"] == {}


def test_hooks_see_the_merged_message_and_each_message_gets_its_own_copy(fake_segment: FakeSegment) -> None:
    """before_send runs after the merge; a hook changing one message's nested context cannot reach the next."""

    def hook(msg: simple_segment.Message) -> simple_segment.Message:
        msg["context"]["page"]["seen"] = msg["properties"]["n"]
        return msg

    page = {"path": "/checkout"}
    with quick_client(fake_segment, before_send=hook) as client, scope(context={"page": page}) as active:
        for n in range(3):
            client.track("u", "E", {"n": n})
    assert [m["context"]["page"] for m in fake_segment.messages] == [{"path": "/checkout", "seen": n} for n in range(3)]
    assert page == {"path": "/checkout"}  # the caller's dict was copied when the scope was made
    assert active.context == {"page": {"path": "/checkout"}}


def test_bad_scope_values_raise_at_scope() -> None:
    """context and integrations must be dicts of JSON-able values: ValidationError when the scope is made."""
    with pytest.raises(ValidationError) as info:
        scope(context=["ip"])  # type: ignore[arg-type]
    assert info.value.field == "context"
    with pytest.raises(ValidationError) as info:
        scope(integrations={"x": object()})
    assert info.value.field == "integrations.x"


def test_a_scope_object_is_entered_once_at_a_time() -> None:
    """Entering an open scope again, or detaching a closed one, raises SegmentError; reuse after exit works."""
    active = scope(context={"ip": "1"})
    with active:
        with pytest.raises(SegmentError, match="already open"), active:
            pass
        assert simple_segment._scope.current() is active
    with pytest.raises(SegmentError, match="not open"):
        active.detach()
    with active:
        assert simple_segment._scope.current() is active
    assert simple_segment._scope.current() is None
    assert isinstance(active, Scope)


# -- defer=True --------------------------------------------------------------------------


def test_deferred_calls_return_at_once_and_go_as_one_request_at_exit(fake_segment: FakeSegment) -> None:
    """Inside a deferring scope calls return (True, msg) without a request; the end sends one batch."""
    with quick_client(fake_segment) as client:
        with scope(context={"ip": "1.2.3.4"}, defer=True) as active:
            results = [client.track("u", "E", {"i": i}) for i in range(5)]
            results.append(client.identify("u", {"plan": "pro"}))
            assert fake_segment.requests == []
            assert active.pending is not None
            assert len(active.pending) == 6
            assert active.pending.message_ids() == [msg["messageId"] for _, msg in results]
        (request,) = fake_segment.requests
    assert all(ok for ok, _ in results)
    assert request.batch == [msg for _, msg in results]
    assert all(m["context"]["ip"] == "1.2.3.4" for m in request.batch)
    assert request.write_key == WRITE_KEY


def test_bad_arguments_still_raise_at_the_call(fake_segment: FakeSegment) -> None:
    """Validation and encoding happen at the call: a bad argument raises there and holds nothing."""
    with quick_client(fake_segment) as client:
        with scope(defer=True) as active:
            client.track("u", "Good")
            with pytest.raises(ValidationError):
                client.track("u", None)
            with pytest.raises(ValidationError):
                client.track("u", "E", {"nan": float("nan")})
            with pytest.raises(simple_segment.MessageTooLargeError):
                client.track("u", "E", {"blob": "x" * 40_000})
            assert active.pending is not None
            assert len(active.pending) == 1
        assert [m["event"] for m in fake_segment.messages] == ["Good"]


def test_messages_are_encoded_at_the_call(fake_segment: FakeSegment) -> None:
    """What is sent is what the call built: changing the returned msg or the caller's dicts later changes nothing."""
    properties: dict[str, Any] = {"items": [1, 2]}
    with quick_client(fake_segment) as client:
        with scope(defer=True):
            _, msg = client.track("u", "E", properties)
            properties["items"].append(3)
            msg["properties"]["late"] = True
        (sent,) = fake_segment.messages
    assert sent["properties"] == {"items": [1, 2]}


def test_a_deferring_scope_holds_only_encoded_bytes(fake_segment: FakeSegment) -> None:
    """Memory grows by about the encoded size of each held message, not by a dict per message."""
    with quick_client(fake_segment) as client, scope(defer=True) as active:
        gc.collect()
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            encoded = 0
            for i in range(2_000):
                _, msg = client.track("user", "Event", {"text": f"{i}:" + "y" * 1_000, "n": i, "nested": {"a": [1, 2]}})
                encoded += len(simple_segment._wire.encode_message(msg))
                del msg
            grown = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
        assert active.pending is not None
        assert len(active.pending) == 2_000
    assert grown < encoded * 1.3, (grown, encoded)
    assert len(fake_segment.messages) == 2_000


def test_nested_deferring_scope_joins_the_outermost(fake_segment: FakeSegment) -> None:
    """An inner defer=True scope sends nothing at its end; the outermost deferring scope sends it all at once."""
    with quick_client(fake_segment) as client:
        with scope(defer=True) as outer:
            client.track("u", "First")
            with scope(defer=True, context={"ip": "inner"}) as inner:
                client.track("u", "Inner")
                assert inner.pending is outer.pending
            assert fake_segment.requests == []
            client.track("u", "Last")
        (request,) = fake_segment.requests
    assert [m["event"] for m in request.batch] == ["First", "Inner", "Last"]
    assert [m["context"].get("ip") for m in request.batch] == [None, "inner", None]


def test_inner_non_deferring_scope_does_not_send_early(fake_segment: FakeSegment) -> None:
    """A defer=False scope inside a deferring one still holds its messages for the outer scope's end."""
    with quick_client(fake_segment) as client:
        with scope(defer=True):
            with scope(context={"ip": "inner"}) as inner:
                ok, _ = client.track("u", "Inner")
                assert inner.defer is False
            assert ok is True
            assert fake_segment.requests == []
        assert [m["event"] for m in fake_segment.messages] == ["Inner"]


def test_deferring_scope_inside_a_plain_one_delivers_at_its_own_end(fake_segment: FakeSegment) -> None:
    """Only deferring scopes hold: the inner deferring scope is the outermost deferring one and sends at its end."""
    with quick_client(fake_segment) as client, scope(context={"ip": "o"}):
        client.track("u", "Inline")
        assert len(fake_segment.requests) == 1
        with scope(defer=True):
            client.track("u", "Held")
            assert len(fake_segment.requests) == 1
        assert len(fake_segment.requests) == 2
    assert [m["event"] for m in fake_segment.messages] == ["Inline", "Held"]


def test_a_batch_inside_hands_its_messages_to_the_scope(fake_segment: FakeSegment) -> None:
    """A batch() block in a deferring scope posts nothing at its end; the scope's end sends its messages too."""
    with quick_client(fake_segment) as client:
        with scope(defer=True) as active:
            client.track("u", "Before")
            with client.batch(context={"locale": "fr"}) as batch:
                for i in range(3):
                    batch.track("u", "Batched", {"i": i})
                batch.flush()  # hands them over now; still nothing on the wire
            assert fake_segment.requests == []
            assert (batch.messages_sent, batch.requests_sent) == (0, 0)
            client.track("u", "After")
            assert active.pending is not None
            assert len(active.pending) == 5
        (request,) = fake_segment.requests
    assert [m["event"] for m in request.batch] == ["Before", "Batched", "Batched", "Batched", "After"]
    assert all(m["context"]["locale"] == "fr" for m in request.batch[1:4])


def test_a_batch_block_that_raises_inside_drops_only_its_own(fake_segment: FakeSegment) -> None:
    """The batch rule holds inside a scope: a batch whose block raises sends none of its own; the scope's go."""
    with quick_client(fake_segment) as client:
        with scope(defer=True):
            client.track("u", "Kept")
            with pytest.raises(KeyError), client.batch() as batch:
                batch.track("u", "Dropped")
                raise KeyError
        assert [m["event"] for m in fake_segment.messages] == ["Kept"]


def test_split_at_2500_messages_as_batch_does(fake_segment: FakeSegment) -> None:
    """6,000 small deferred messages go as requests of 2,500, 2,500 and 1,000, in order."""
    with quick_client(fake_segment) as client:
        with scope(defer=True):
            for i in range(6000):
                client.identify("u", message_id=str(i))
            assert fake_segment.requests == []
        assert [len(r.batch) for r in fake_segment.requests] == [2500, 2500, 1000]
    assert ids(fake_segment.messages) == [str(i) for i in range(6000)]


def test_split_at_500_kb_as_batch_does(fake_segment: FakeSegment) -> None:
    """Large deferred messages are split so no body exceeds 500,000 bytes, the first filled close to it."""
    blob = "x" * 30_000
    with quick_client(fake_segment) as client:
        with scope(defer=True):
            for i in range(40):
                client.track("u", "E", {"i": i, "blob": blob})
        sizes = [len(r.body) for r in fake_segment.requests]
    assert all(size <= 500_000 for size in sizes)
    assert len(sizes) == 3
    assert sizes[0] > 450_000
    assert [m["properties"]["i"] for m in fake_segment.messages] == list(range(40))


def test_failure_at_exit_raises_with_every_unsent_message_in_order(fake_segment: FakeSegment) -> None:
    """A failed request at the end raises BatchDeliveryError: .unsent is that request and all after it, in order."""
    with quick_client(fake_segment) as client:
        with pytest.raises(BatchDeliveryError) as info, scope(defer=True):
            for i in range(3000):
                client.identify("u", message_id=str(i))
            fake_segment.respond_with(400, times=1)
    error = info.value
    assert not isinstance(error, RetryableBatchDeliveryError)
    assert ids(error.unsent) == [str(i) for i in range(3000)]
    assert error.sent == 0
    assert isinstance(error.__cause__, simple_segment.APIError)
    assert len(fake_segment.requests) == 1  # nothing more is sent after a failed request, as in a batch
    assert "3000 messages not delivered" in str(error)


def test_a_retryable_failure_raises_the_retryable_error(fake_segment: FakeSegment) -> None:
    """After the client's retries, a 503 at the end raises RetryableBatchDeliveryError; earlier requests count as sent."""
    with quick_client(fake_segment, max_retries=1) as client:
        with pytest.raises(RetryableBatchDeliveryError) as info, scope(defer=True):
            for i in range(2600):
                client.identify("u", message_id=str(i))
            fake_segment.respond_with(200, times=1)
            fake_segment.respond_with(503, times=2)
    assert ids(info.value.unsent) == [str(i) for i in range(2500, 2600)]
    assert info.value.sent == 2500
    assert info.value.retryable is True


def test_on_error_takes_each_failed_request_and_the_rest_goes(fake_segment: FakeSegment) -> None:
    """With on_error, each failed request calls it once with its messages; the other requests are delivered."""
    failures: list[list[str]] = []
    with quick_client(fake_segment, on_error=lambda exc, msgs: failures.append(ids(msgs))) as client:
        with scope(defer=True):
            for i in range(6000):
                client.identify("u", message_id=str(i))
            fake_segment.respond_with(200, times=1)
            fake_segment.respond_with(400, times=1)
    assert failures == [[str(i) for i in range(2500, 5000)]]
    assert ids(fake_segment.messages) == [str(i) for i in range(2500)] + [str(i) for i in range(5000, 6000)]


def test_a_block_that_raises_still_delivers(fake_segment: FakeSegment) -> None:
    """Messages accepted with (True, msg) are delivered even when the block raises; its exception propagates."""
    with quick_client(fake_segment) as client:
        with pytest.raises(ZeroDivisionError), scope(defer=True):
            client.track("u", "Made Before")
            _ = 1 / 0
        assert [m["event"] for m in fake_segment.messages] == ["Made Before"]


def test_a_block_that_raises_and_fails_to_deliver_logs_at_error(
    fake_segment: FakeSegment, caplog: pytest.LogCaptureFixture
) -> None:
    """A failure while delivering after the block raised is logged at ERROR with count and messageIds."""
    with quick_client(fake_segment) as client:
        with pytest.raises(ZeroDivisionError), scope(defer=True):
            _, first = client.track("u", "A")
            _, second = client.track("u", "B")
            fake_segment.respond_with(400, times=1)
            _ = 1 / 0
    (record,) = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert "2 messages not delivered" in record.getMessage()
    assert first["messageId"] in record.getMessage()
    assert second["messageId"] in record.getMessage()


def test_one_batch_per_client(fake_segment: FakeSegment) -> None:
    """Messages of several clients go as one request per client, each with its own write key."""
    with quick_client(fake_segment, "key-a") as a, quick_client(fake_segment, "key-b") as b:
        with scope(defer=True):
            a.track("u", "A1")
            b.track("u", "B1")
            a.track("u", "A2")
            with b.batch() as batch:
                batch.track("u", "B2")
        requests = fake_segment.requests
    assert [(r.write_key, [m["event"] for m in r.batch]) for r in requests] == [
        ("key-a", ["A1", "A2"]),
        ("key-b", ["B1", "B2"]),
    ]


def test_a_failing_client_does_not_stop_the_others(fake_segment: FakeSegment) -> None:
    """Every client is tried; the error lists only what was not delivered, and counts what was."""
    with quick_client(fake_segment, "key-a") as a, quick_client(fake_segment, "key-b") as b:
        with pytest.raises(BatchDeliveryError) as info, scope(defer=True):
            _, a1 = a.track("u", "A1")
            b.track("u", "B1")
            fake_segment.respond_with(400, times=1)
    assert info.value.unsent == [a1]
    assert info.value.sent == 1
    assert [m["event"] for m in fake_segment.messages] == ["B1"]


def test_module_level_functions_defer(fake_segment: FakeSegment) -> None:
    """simple_segment.track() and friends defer like a client's calls."""
    simple_segment.write_key, simple_segment.host = "module-key", fake_segment.url
    with scope(context={"ip": "9.9.9.9"}, defer=True):
        simple_segment.track("u", "E")
        simple_segment.page("u", "Docs", "Home")
        assert fake_segment.requests == []
    (request,) = fake_segment.requests
    assert request.write_key == "module-key"
    assert [m["type"] for m in request.batch] == ["track", "page"]


def test_capture_and_send_false_work_as_for_batches(fake_segment: FakeSegment) -> None:
    """capture() records deferred messages when the scope ends; send=False sends nothing and returns (True, msg)."""
    with Client(WRITE_KEY, send=False) as stub, capture() as sent:
        with scope(defer=True):
            ok, msg = stub.track("u", "E")
            assert list(sent) == []
        assert list(sent) == [msg]
    assert ok is True
    with Client(WRITE_KEY, host=fake_segment.url, send=False) as quiet, scope(defer=True):
        assert quiet.track("u", "E")[0] is True
    assert fake_segment.requests == []


# -- detach() and Pending: for middlewares ------------------------------------------------------


def test_detach_then_deliver_from_another_thread(fake_segment: FakeSegment) -> None:
    """detach() ends the scope without sending; Pending.deliver() sends from any thread, once."""
    with quick_client(fake_segment) as client:
        request_scope = scope(context={"ip": "1.1.1.1"}, defer=True)
        request_scope.__enter__()
        _, first = client.track("u", "A")
        _, second = client.track("u", "B")
        pending = request_scope.detach()
        assert isinstance(pending, Pending)
        assert simple_segment._scope.current() is None
        assert (len(pending), pending.message_ids()) == (2, [first["messageId"], second["messageId"]])
        client.track("u", "After Detach")  # outside the scope now: delivered at once
        assert [m["event"] for m in fake_segment.messages] == ["After Detach"]

        errors: list[BaseException] = []

        def deliver() -> None:
            try:
                pending.deliver()
                pending.deliver()  # a second call sends nothing more
            except BaseException as exc:
                errors.append(exc)

        worker = threading.Thread(target=deliver)
        worker.start()
        worker.join(timeout=10)
        assert not worker.is_alive()
    assert errors == []
    assert [m["event"] for m in fake_segment.messages] == ["After Detach", "A", "B"]
    assert all(m["context"]["ip"] == "1.1.1.1" for m in fake_segment.messages[1:])
    assert len(pending) == 0


def test_detach_of_an_inner_scope_returns_nothing_to_deliver(fake_segment: FakeSegment) -> None:
    """Only the outermost deferring scope's Pending holds messages; an inner one's is empty."""
    with quick_client(fake_segment) as client, scope(defer=True):
        inner = scope(defer=True).__enter__()
        client.track("u", "E")
        assert len(inner.detach()) == 0
    assert len(fake_segment.messages) == 1


def test_a_call_after_delivery_began_is_sent_at_once(fake_segment: FakeSegment) -> None:
    """A task that outlives the scope (it still sees it in its context) is not lost: its call sends inline."""
    with quick_client(fake_segment) as client:
        request_scope = scope(context={"ip": "2.2.2.2"}, defer=True)
        request_scope.__enter__()
        leftover = contextvars.copy_context()  # what a task created in the request would carry
        pending = request_scope.detach()
        pending.deliver()
        ok, _ = leftover.run(client.track, "u", "Late")
    assert ok is True
    (late,) = fake_segment.messages
    assert late["context"]["ip"] == "2.2.2.2"


def test_detach_in_another_context_raises(fake_segment: FakeSegment) -> None:
    """A scope ends in the thread or task that entered it; elsewhere detach() raises SegmentError."""
    request_scope = scope(defer=True)
    request_scope.__enter__()
    try:
        with pytest.raises(SegmentError, match="entered it"):
            contextvars.Context().run(request_scope.detach)
    finally:
        assert len(request_scope.detach()) == 0
    assert fake_segment.requests == []


# -- threads, tasks, stable ids ---------------------------------------------------------


def test_threads_do_not_inherit_a_scope(fake_segment: FakeSegment) -> None:
    """A thread started inside a scope sends at once and without its context; copy_context().run shares it."""
    with quick_client(fake_segment) as client:
        with scope(context={"ip": "3.3.3.3"}, defer=True):
            plain = threading.Thread(target=client.track, args=("u", "Thread"))
            plain.start()
            plain.join(timeout=10)
            assert [m["event"] for m in fake_segment.messages] == ["Thread"]
            shared = threading.Thread(target=contextvars.copy_context().run, args=(client.track, "u", "Copied"))
            shared.start()
            shared.join(timeout=10)
            assert len(fake_segment.messages) == 1  # held by the scope, as in the block itself
        thread, copied = fake_segment.messages
    assert "ip" not in thread["context"]
    assert copied["context"]["ip"] == "3.3.3.3"


def test_asyncio_tasks_inherit_a_scope(fake_segment: FakeSegment) -> None:
    """Tasks created inside a scope see it: their messages get its context and are held until it ends."""
    with quick_client(fake_segment) as client:

        async def handler(n: int) -> None:
            await asyncio.sleep(0)
            client.track("u", "Task", {"n": n})

        async def request() -> None:
            with scope(context={"ip": "4.4.4.4"}, defer=True):
                await asyncio.gather(*(asyncio.create_task(handler(n)) for n in range(3)))
                assert fake_segment.requests == []

        asyncio.run(request())
        (sent,) = fake_segment.requests
    assert sorted(m["properties"]["n"] for m in sent.batch) == [0, 1, 2]
    assert all(m["context"]["ip"] == "4.4.4.4" for m in sent.batch)


def stable(seed: str, n: int) -> str:
    return str(uuid.uuid5(STABLE_IDS_NAMESPACE, f"{seed}:{n}"))


def test_stable_ids_compose_with_a_deferred_scope(fake_segment: FakeSegment) -> None:
    """Ids are made at the call: a deferred scope inside stable_ids, or stable_ids inside one, keeps stable ids."""
    with quick_client(fake_segment) as client:
        with stable_ids("seed-a"), scope(defer=True):
            client.track("u", "A0")
            client.track("u", "A1")
        with scope(defer=True), stable_ids("seed-b"):
            client.track("u", "B0")
            with client.batch() as batch:
                batch.track("u", "B1")
    assert ids(fake_segment.messages) == [stable("seed-a", 0), stable("seed-a", 1), stable("seed-b", 0), stable("seed-b", 1)]


def test_a_retried_celery_like_task_sends_the_same_ids(fake_segment: FakeSegment) -> None:
    """The same task run twice (stable_ids(task_id) + a deferred scope, as a task wrapper would) sends the same ids."""
    task_id = str(uuid.uuid4())

    def task(client: Client) -> None:
        client.identify("u", {"plan": "pro"})
        for i in range(3):
            client.track("u", "Step", {"i": i})

    with quick_client(fake_segment) as client:
        for _attempt in range(2):
            with stable_ids(task_id), scope(context={"task": task_id}, defer=True):
                task(client)
    first, second = fake_segment.requests
    assert ids(first.batch) == ids(second.batch) == [stable(task_id, n) for n in range(4)]
    assert all(m["context"]["task"] == task_id for m in first.batch + second.batch)


def test_an_on_error_that_raises_does_not_cost_the_other_clients(fake_segment: FakeSegment) -> None:
    """An exception from a client's on_error propagates from the scope's end, after the other clients were sent."""

    def broken(exc: Exception, messages: list[dict[str, Any]]) -> None:
        raise RuntimeError("on_error is broken")

    with quick_client(fake_segment, "key-a", on_error=broken) as a, quick_client(fake_segment, "key-b") as b:
        with pytest.raises(RuntimeError, match="on_error is broken"), scope(defer=True):
            a.track("u", "A")
            b.track("u", "B")
            fake_segment.respond_with(400, times=1)
    assert [m["event"] for m in fake_segment.messages] == ["B"]


def test_mixed_failures_raise_the_non_retryable_error(fake_segment: FakeSegment) -> None:
    """The error at the end is retryable only when every client's failure was; .unsent keeps client order."""
    with quick_client(fake_segment, "key-a") as a, quick_client(fake_segment, "key-b", max_retries=0) as b:
        with pytest.raises(BatchDeliveryError) as info, scope(defer=True):
            _, a1 = a.track("u", "A1")
            _, b1 = b.track("u", "B1")
            fake_segment.respond_with(400, times=1)
            fake_segment.respond_with(503, times=1)
    assert not isinstance(info.value, RetryableBatchDeliveryError)
    assert info.value.unsent == [a1, b1]
    assert info.value.sent == 0


def test_a_batch_opened_outside_a_deferring_scope_sends_itself(fake_segment: FakeSegment) -> None:
    """Where a batch's messages go is settled when its block begins; the scope's context still applies at the call."""
    with quick_client(fake_segment) as client:
        with client.batch() as batch, scope(context={"ip": "5.5.5.5"}, defer=True):
            batch.track("u", "Batched")
            client.track("u", "Held")
        assert [m["event"] for m in fake_segment.messages] == ["Held", "Batched"]
    assert all(m["context"]["ip"] == "5.5.5.5" for m in fake_segment.messages)


def test_an_on_error_that_raises_does_not_replace_the_blocks_exception(
    fake_segment: FakeSegment, caplog: pytest.LogCaptureFixture
) -> None:
    """The block raised and delivering its held messages failed in the caller's on_error: the block's error wins."""

    def on_error(_exc: Exception, _messages: list[Any]) -> None:
        raise RuntimeError("on_error itself failed")

    fake_segment.respond_with(400, times=1)
    client = Client(WRITE_KEY, host=fake_segment.url, max_retries=0, on_error=on_error)
    with caplog.at_level(logging.ERROR, logger="simple_segment"):
        with pytest.raises(LookupError, match="the block's own"):
            with simple_segment.scope(defer=True):
                _, msg = client.track("u", "E")
                raise LookupError("the block's own")
    assert msg["messageId"] in caplog.text
    assert "after the block raised" in caplog.text


def test_a_deferred_failure_keeps_every_clients_unsent_messages_as_bytes(fake_segment: FakeSegment) -> None:
    """Two clients fail at the scope's end: .unsent lists both, in call order, still held as encoded bytes."""
    from simple_segment.errors import EncodedMessages

    fake_segment.respond_with(400, times=2)
    first = Client(WRITE_KEY, host=fake_segment.url, max_retries=0)
    second = Client("other-key", host=fake_segment.url, max_retries=0)
    with pytest.raises(BatchDeliveryError) as info:
        with simple_segment.scope(defer=True):
            first.track("u", "One")
            second.track("u", "Two")
    assert isinstance(info.value.unsent, EncodedMessages)
    assert [m["event"] for m in info.value.unsent] == ["One", "Two"]
