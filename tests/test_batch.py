"""``with client.batch():`` splits on the limits, keeps order, and accounts for every message."""

from __future__ import annotations

import datetime as dt
import gc
import gzip
import json
import threading
import tracemalloc

import pytest
from conftest import WRITE_KEY, QuickClient, body_of

import simple_segment
from simple_segment import BatchDeliveryError, Client, SegmentError, ValidationError
from simple_segment._wire import encode_message
from simple_segment.testing import FakeSegment, MockResponse, MockTransport


def test_block_posts_once_at_exit(fake_segment: FakeSegment, quick_client: QuickClient) -> None:
    """Calls inside the block return (True, msg) at once; one request goes out when the block ends."""
    with quick_client(fake_segment) as client, client.batch() as batch:
        results = [batch.track(f"u{i}", "E", {"i": i}) for i in range(10)]
        results.append(batch.identify("u1", {"plan": "pro"}))
        assert fake_segment.requests == []
    assert all(ok for ok, _ in results)
    (request,) = fake_segment.requests
    body = body_of(request)
    assert body["batch"] == [msg for _, msg in results]
    assert body["writeKey"] == WRITE_KEY
    assert (batch.messages_sent, batch.requests_sent) == (11, 1)
    assert batch.bytes_sent == len(request.body)


def test_empty_batch_sends_nothing(fake_segment: FakeSegment, quick_client: QuickClient) -> None:
    """A block with no calls makes no request."""
    with quick_client(fake_segment) as client, client.batch() as batch:
        pass
    assert fake_segment.requests == []
    assert (batch.messages_sent, batch.requests_sent, batch.bytes_sent) == (0, 0, 0)


def test_split_on_message_count(fake_segment: FakeSegment, quick_client: QuickClient) -> None:
    """6,000 small messages go in requests of at most 2,500, each delivered once, in order."""
    with quick_client(fake_segment) as client, client.batch() as batch:
        for i in range(6000):
            batch.identify("u", message_id=str(i))
    counts = [len(r.batch) for r in fake_segment.requests]
    assert counts == [2500, 2500, 1000]
    assert all(len(r.body) <= 500_000 for r in fake_segment.requests)
    assert [m["messageId"] for m in fake_segment.messages] == [str(i) for i in range(6000)]
    assert batch.requests_sent == 3


def test_split_on_request_bytes(fake_segment: FakeSegment, quick_client: QuickClient) -> None:
    """Large messages are split so no body exceeds 500,000 bytes; order and count are kept."""
    blob = "x" * 30_000
    with quick_client(fake_segment) as client, client.batch() as batch:
        for i in range(40):
            batch.track("u", "E", {"i": i, "blob": blob})
    sizes = [len(r.body) for r in fake_segment.requests]
    assert all(size <= 500_000 for size in sizes)
    assert len(sizes) == 3
    assert sizes[0] > 450_000
    assert [m["properties"]["i"] for m in fake_segment.messages] == list(range(40))
    assert batch.bytes_sent == sum(sizes)


def test_validation_error_raises_at_the_call(fake_segment: FakeSegment, quick_client: QuickClient) -> None:
    """A bad call raises at its line; the batch still delivers the valid calls if the caller goes on."""
    with quick_client(fake_segment) as client, client.batch() as batch:
        batch.track("u", "Good")
        with pytest.raises(ValidationError):
            batch.track("u", None)
        batch.track("u", "Also Good")
    assert [m["event"] for m in fake_segment.messages] == ["Good", "Also Good"]


def test_exception_in_block_sends_nothing_pending(fake_segment: FakeSegment, quick_client: QuickClient) -> None:
    """If the block raises, pending messages are dropped and the exception propagates unchanged."""
    error = RuntimeError("boom")
    with quick_client(fake_segment) as client:
        with pytest.raises(RuntimeError) as info, client.batch() as batch:
            batch.track("u", "E")
            raise error
        assert info.value is error
    assert fake_segment.requests == []


def test_flush_sends_pending_now(fake_segment: FakeSegment, quick_client: QuickClient) -> None:
    """batch.flush() posts what is pending; an empty flush sends nothing."""
    with quick_client(fake_segment) as client, client.batch() as batch:
        batch.track("u", "A")
        batch.flush()
        assert len(fake_segment.requests) == 1
        batch.flush()
        assert len(fake_segment.requests) == 1
        batch.track("u", "B")
    assert [len(r.batch) for r in fake_segment.requests] == [1, 1]


def test_failure_on_third_request_of_five(fake_segment: FakeSegment, quick_client: QuickClient) -> None:
    """A request failing after retries: the error carries the delivered count and every undelivered message."""
    fake_segment.respond_with(200, times=2)
    fake_segment.respond_with(500, times=10)
    sent_ids = [str(i) for i in range(5 * 2500)]
    with quick_client(fake_segment, max_retries=1) as client:
        with pytest.raises(BatchDeliveryError) as info, client.batch() as batch:
            for message_id in sent_ids:
                batch.identify("u", message_id=message_id)
    error = info.value
    delivered = [m["messageId"] for m in fake_segment.messages]
    assert delivered == sent_ids[:5000]
    assert error.sent == 5000
    assert [m["messageId"] for m in error.unsent] == sent_ids[5000:]
    assert error.messages is error.unsent
    assert error.retryable is True
    assert isinstance(error.__cause__, simple_segment.ServerError)
    assert len(fake_segment.requests) == 4  # two delivered, then one request tried twice
    assert batch.messages_sent == 5000


def test_resending_unsent_completes_the_block(fake_segment: FakeSegment, quick_client: QuickClient) -> None:
    """The unsent messages can be resent with the same messageIds and nothing is lost or doubled."""
    fake_segment.respond_with(400)
    with quick_client(fake_segment) as client:
        with pytest.raises(BatchDeliveryError) as info, client.batch() as batch:
            for i in range(10):
                batch.track("u", "E", {"i": i})
        assert info.value.retryable is False
        with client.batch() as retry:
            for msg in info.value.unsent:
                retry.track(
                    msg["userId"], msg["event"], msg["properties"], message_id=msg["messageId"],
                )
    assert [m["properties"]["i"] for m in fake_segment.messages] == list(range(10))


def test_on_error_is_called_per_failed_request_and_block_goes_on(
    fake_segment: FakeSegment, quick_client: QuickClient
) -> None:
    """With on_error, each failed request calls it once with its messages and later requests still go."""
    failures: list[list[dict]] = []
    fake_segment.respond_with(200)
    fake_segment.respond_with(400)
    with quick_client(fake_segment, on_error=lambda exc, msgs: failures.append(msgs)) as client:
        with client.batch() as batch:
            for i in range(7500):
                batch.identify("u", message_id=str(i))
    assert len(failures) == 1
    assert [m["messageId"] for m in failures[0]] == [str(i) for i in range(2500, 5000)]
    assert len(fake_segment.messages) == 5000
    assert batch.messages_sent == 5000


def test_batch_context_and_integrations(fake_segment: FakeSegment, quick_client: QuickClient) -> None:
    """Batch-level context/integrations apply to every message; the message's own keys win."""
    with quick_client(fake_segment) as client:
        with client.batch(context={"ip": "1.1.1.1", "app": {"v": 1}}, integrations={"All": False}) as batch:
            batch.track("u", "A")
            batch.track("u", "B", context={"app": {"v": 2}}, integrations={"All": True, "Mixpanel": True})
    first, second = fake_segment.messages
    assert first["context"]["ip"] == "1.1.1.1"
    assert first["context"]["app"] == {"v": 1}
    assert first["integrations"] == {"All": False}
    assert second["context"]["ip"] == "1.1.1.1"
    assert second["context"]["app"] == {"v": 2}
    assert second["integrations"] == {"All": True, "Mixpanel": True}
    assert first["context"]["library"]["name"] == "simple_segment"


def test_gzip_batches(fake_segment: FakeSegment, quick_client: QuickClient) -> None:
    """With gzip the batch body is compressed; bytes_sent counts compressed bytes."""
    with quick_client(fake_segment, gzip=True) as client, client.batch() as batch:
        for i in range(100):
            batch.track("u", "E", {"i": i})
    (request,) = fake_segment.requests
    assert request.headers["content-encoding"] == "gzip"
    assert len(json.loads(gzip.decompress(request.body))["batch"]) == 100
    assert batch.bytes_sent == len(request.body)


def test_module_level_batch(fake_segment: FakeSegment) -> None:
    """simple_segment.batch() batches through the default client."""
    simple_segment.write_key = WRITE_KEY
    simple_segment.host = fake_segment.url
    with simple_segment.batch() as batch:
        batch.page("u", name="Home")
        batch.screen("u", name="Main")
    assert [m["type"] for m in fake_segment.messages] == ["page", "screen"]


def test_calls_outside_the_block_fail_clearly(fake_segment: FakeSegment, quick_client: QuickClient) -> None:
    """A batch takes calls only inside its with block; reopening it fails clearly."""
    with quick_client(fake_segment) as client:
        batch = client.batch()
        with pytest.raises(SegmentError, match="inside its block"):
            batch.track("u", "E")
        with batch:
            with pytest.raises(SegmentError, match="already open"), batch:
                pass
        with pytest.raises(SegmentError):
            batch.track("u", "E")


def test_nested_batches_are_independent(fake_segment: FakeSegment, quick_client: QuickClient) -> None:
    """A batch inside a batch is a separate batch: the inner one posts when its own block ends."""
    with quick_client(fake_segment) as client, client.batch() as outer:
        outer.track("u", "Outer")
        with client.batch() as inner:
            inner.track("u", "Inner")
        assert [m["event"] for m in fake_segment.messages] == ["Inner"]
    assert [m["event"] for m in fake_segment.messages] == ["Inner", "Outer"]


def test_batch_shared_by_threads(fake_segment: FakeSegment, quick_client: QuickClient) -> None:
    """Calls from several threads into one batch are all delivered once."""
    with quick_client(fake_segment) as client, client.batch() as batch:

        def work(n: int) -> None:
            for i in range(1000):
                batch.track(f"u{n}", "E", {"i": i})

        threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    assert len({m["messageId"] for m in fake_segment.messages}) == 4000
    assert batch.messages_sent == 4000


def test_send_false_batch_sends_nothing(fake_segment: FakeSegment) -> None:
    """A send=False client's batch validates and sends nothing."""
    with Client(WRITE_KEY, host=fake_segment.url, send=False) as client, client.batch() as batch:
        assert batch.track("u", "E")[0] is True
    assert fake_segment.requests == []
    assert batch.messages_sent == 0


def test_memory_stays_flat(quick_client: QuickClient) -> None:
    """10,000 events of ~1.2 KB through one block (25 requests): traced memory does not grow with them.

    Keeping the 8,000 events sent after the first measurement would hold about 10 MB.
    """
    server = FakeSegment(max_messages=0, max_requests=0).start()
    try:
        with quick_client(server) as client, client.batch() as batch:
            properties = {"plan": "pro", "n": 1, "nested": {"a": [1, 2, 3]}, "text": "y" * 1000}
            gc.collect()
            tracemalloc.start()
            try:
                for _ in range(2_000):
                    batch.track("user", "Event", properties)
                at_2k = tracemalloc.get_traced_memory()[0]
                for _ in range(8_000):
                    batch.track("user", "Event", properties)
                at_10k, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
        assert batch.messages_sent == 10_000
        assert batch.requests_sent >= 20
        assert at_10k < at_2k + 2_000_000
        assert peak < 6_000_000
    finally:
        server.stop()


def test_block_error_after_failed_request_is_logged(
    fake_segment: FakeSegment, caplog: pytest.LogCaptureFixture, quick_client: QuickClient
) -> None:
    """If the block raises after a request failed, the block's exception propagates and the loss is logged."""
    fake_segment.respond_with(400)
    with quick_client(fake_segment) as client:
        with pytest.raises(KeyError), client.batch() as batch:
            batch.track("u", "A")
            batch.flush()
            batch.track("u", "B")
            raise KeyError("in block")
    assert "2 messages not delivered" in caplog.text


def test_batch_defaults_are_validated_and_copied_per_message() -> None:
    """batch(context=...) must be a dict (ValidationError at once); each message gets its own copy of it."""
    from simple_segment import ValidationError
    from simple_segment.testing import capture

    client = Client("k", send=False)
    for bad in ([1], "x", 5):
        with pytest.raises(ValidationError) as info:
            client.batch(context=bad)  # type: ignore[arg-type]
        assert info.value.field == "context"

    def hook(msg):
        msg["context"]["app"].setdefault("seen", []).append(msg["properties"]["n"])
        return msg

    with Client("k", before_send=hook) as hooked, capture() as sent, hooked.batch(context={"app": {"name": "x"}}) as b:
        for n in range(3):
            b.track("u", "E", {"n": n})
    assert [m["context"]["app"]["seen"] for m in sent] == [[0], [1], [2]]


def test_failing_block_keeps_unsent_messages_as_bytes() -> None:
    """After the first request fails, 30,000 unsent events hold about their wire size, not 4.5 times it.

    The unsent messages stay encoded and ``unsent`` decodes on access: traced memory held
    by the raised error is under 1.5 times their bytes (as dicts it was about 4.5 times).
    """
    transport = MockTransport(lambda _request: MockResponse(400, body=b'{"message":"no"}'))
    client = Client(WRITE_KEY, host="https://api.example.test", transport=transport, max_retries=0)
    properties = {"plan": "pro", "step": 3, "tags": ["a", "b"], "text": "x" * 120}
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        with pytest.raises(BatchDeliveryError) as info, client.batch() as batch:
            for i in range(30_000):
                batch.track(f"user{i}", "Event", properties, message_id=f"id-{i}")
        error = info.value
        del info, batch
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert len(error.unsent) == 30_000
    assert len(transport.requests) == 1  # nothing more is posted after the failure
    wire = sum(len(encode_message(message)) for message in error.unsent)
    assert held < 1.5 * wire, (held, wire)
    assert error.unsent[29_999]["messageId"] == "id-29999"
    assert [m["messageId"] for m in error.unsent[:2]] == ["id-0", "id-1"]
    assert error.__cause__ is not None
    assert error.__cause__.messages == error.unsent[: len(error.__cause__.messages)]


def test_a_request_of_exactly_500000_bytes_is_one_request() -> None:
    """Messages filling a body of exactly 500,000 bytes go in one request; one byte more makes two."""
    transport = MockTransport(lambda _request: 200)
    client = Client(WRITE_KEY, host="https://api.example.test", transport=transport, max_retries=0)
    when = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)

    def send(pads: list[int], *, after_a_flush: bool = False) -> list[int]:
        transport.requests.clear()
        with client.batch() as batch:
            if after_a_flush:  # the buffer's second request counts from zero too
                batch.track("u", "E", {"pad": ""}, message_id="id-xx", timestamp=when)
                batch.flush()
                transport.requests.clear()
            for i, pad in enumerate(pads):
                batch.track("u", "E", {"pad": "x" * pad}, message_id=f"id-{i:02}", timestamp=when)
        return [len(request.content) for request in transport.requests]

    (alone,) = send([0])
    (pair,) = send([0, 0])
    base = pair - alone - 1  # one message with an empty pad (pair = overhead + 2 * base + a comma)
    overhead = alone - base
    count = 16
    room = 500_000 - overhead - (count - 1) - count * base  # pad bytes that make the body 500,000 exactly
    pads = [room // count] * (count - 1) + [room - (room // count) * (count - 1)]
    assert max(pads) + base <= 32_768
    assert send(pads) == [500_000]
    assert send(pads, after_a_flush=True) == [500_000]
    pads[-1] += 1
    sizes = send(pads)
    assert len(sizes) == 2
    assert all(size <= 500_000 for size in sizes)
