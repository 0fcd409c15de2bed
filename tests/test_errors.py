"""Errors: what a failed call gives the caller.

The tree of exception types; an APIError's status, code and message (cut short however
large the body); ``on_error`` instead of raising; that whatever a server sends ends in
``(True, msg)`` or a DeliveryError holding the message; and errors that survive pickle
and rebuild from their args.
"""

from __future__ import annotations

import gc
import json
import pickle
import time
import tracemalloc
from typing import Any

import pytest
from conftest import QuickClient
from faults import (
    BAD_RETRY_AFTER,
    MALFORMED,
    Behaviour,
    FaultServer,
    close_without_answer,
    closed_port,
    drip,
    garbage,
    gzip_bomb,
    huge_body,
    malformed,
    ok,
    raw,
    redirect,
    reset,
    respond,
    retry_after,
    silent,
)
from outcomes import catch_batch, catch_single, describe, outcome, send_one

from simple_segment import (
    APIError,
    BatchDeliveryError,
    Client,
    ConfigurationError,
    DeliveryError,
    MessageTooLargeError,
    NetworkError,
    RateLimitError,
    RetryableBatchDeliveryError,
    RetryableError,
    SegmentError,
    ServerError,
    TransportError,
    ValidationError,
)
from simple_segment.testing import FakeSegment

# -- the exception types -------------------------------------------------------------------


def test_exception_tree() -> None:
    """The tree of errors keeps the official catchable types and marks the retryable ones."""
    assert issubclass(ValidationError, (SegmentError, ValueError, AssertionError))
    assert issubclass(MessageTooLargeError, (ValidationError, RuntimeError))
    assert issubclass(ConfigurationError, ValidationError)
    assert issubclass(APIError, DeliveryError)
    assert issubclass(ServerError, (APIError, RetryableError))
    assert issubclass(RateLimitError, (APIError, RetryableError))
    assert issubclass(TransportError, DeliveryError)
    assert not issubclass(TransportError, RetryableError)
    assert issubclass(NetworkError, (TransportError, RetryableError))
    assert issubclass(BatchDeliveryError, DeliveryError)
    assert not issubclass(BatchDeliveryError, RetryableError)
    assert issubclass(RetryableBatchDeliveryError, (BatchDeliveryError, RetryableError))
    assert not issubclass(APIError, RetryableError)
    assert not issubclass(ValidationError, DeliveryError)


def test_official_apierror_signature() -> None:
    """APIError(status, code, message) as the official library builds it."""
    error = APIError(400, "invalid", "Bad request")
    assert (error.status, error.code, error.message, error.response) == (400, "invalid", "Bad request", None)
    assert str(error) == "[Segment] invalid: Bad request (400)"


# -- an APIError's status, code and message ------------------------------------------------


def test_400_body_message_without_code(fake_segment: FakeSegment, quick_client: QuickClient) -> None:
    """Segment's 400 often has a message and no code: the error says 'unknown' and keeps the message."""
    fake_segment.respond_with(400, body={"success": False, "message": "Invalid JSON"})
    with quick_client(fake_segment) as client, pytest.raises(APIError) as info:
        client.track("u", "E")
    assert str(info.value) == "[Segment] unknown: Invalid JSON (400)"
    assert info.value.messages[0]["event"] == "E"


def test_non_json_error_body(fake_segment: FakeSegment, quick_client: QuickClient) -> None:
    """A text error body becomes the message."""
    fake_segment.respond_with(403, body="Forbidden by proxy")
    with quick_client(fake_segment) as client, pytest.raises(APIError, match="Forbidden by proxy"):
        client.track("u", "E")


def test_error_body_read_is_bounded(fake_segment: FakeSegment, quick_client: QuickClient) -> None:
    """A huge error body is read only in part, and its first 500 characters become the message."""
    fake_segment.respond_with(400, body="x" * 300_000)
    with quick_client(fake_segment) as client, pytest.raises(APIError) as info:
        client.track("u", "E")
    assert info.value.message == "x" * 500 + "..."
    assert len(str(info.value)) < 600


HUGE = 50 * 1024 * 1024


@pytest.mark.parametrize(
    ("behaviour", "status", "attempts"),
    [
        (huge_body(400, HUGE), 400, 1),
        (huge_body(400, HUGE, chunked=True), 400, 1),
        (huge_body(503, HUGE), 503, 1),
        (huge_body(500, HUGE), 500, 2),
        (gzip_bomb(400), 400, 1),
        (gzip_bomb(503), 503, 1),
        (gzip_bomb(500), 500, 2),
    ],
    ids=str,
)
def test_huge_error_body_is_cut_short(
    fault_server: FaultServer, behaviour: Behaviour, status: int, attempts: int, quick_client: QuickClient
) -> None:
    """A 50 MB error body or a gzip bomb fails fast with an APIError keeping the
    status, reading at most ~64 KB of the body, without a memory spike (5xx are
    retried: max_retries is attempts - 1)."""
    fault_server.default = behaviour
    client = quick_client(fault_server.url, max_retries=attempts - 1)
    gc.collect()
    tracemalloc.start()
    try:
        started = time.monotonic()
        with pytest.raises(APIError) as info:
            send_one(client)
        elapsed = time.monotonic() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    error = info.value
    assert error.status == status
    assert len(error.message) <= 65_536
    assert len(str(error)) <= 65_536 + 200
    assert elapsed < 3.0 * attempts
    assert peak < 16 * 1024 * 1024, f"peak Python allocation {peak / 1e6:.1f} MB while failing"
    assert len(fault_server.requests) == attempts
    assert error.attempts == attempts
    # The client stopped reading: the server could not hand the kernel even one whole body.
    assert fault_server.bytes_written < HUGE * attempts


def test_gzip_bomb_on_success_is_not_inflated(fault_server: FaultServer, quick_client: QuickClient) -> None:
    """A 200 whose gzip body inflates to gigabytes is a success, quickly, without a memory spike."""
    fault_server.default = gzip_bomb(200)
    client = quick_client(fault_server.url, max_retries=2)
    tracemalloc.start()
    try:
        started = time.monotonic()
        ok_, _ = send_one(client)
        elapsed = time.monotonic() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert ok_ is True
    assert elapsed < 3.0
    assert peak < 16 * 1024 * 1024


# -- on_error instead of raising -----------------------------------------------------------


def test_on_error_is_called_instead_of_raising(fake_segment: FakeSegment, quick_client: QuickClient) -> None:
    """With on_error, a failure calls on_error(exception, messages) and the call returns (False, msg)."""
    calls: list[tuple[Exception, list[dict]]] = []
    fake_segment.respond_with(400)
    with quick_client(fake_segment, on_error=lambda exc, msgs: calls.append((exc, msgs))) as client:
        ok, msg = client.track("u", "E")
    assert ok is False
    assert len(calls) == 1
    error, messages = calls[0]
    assert isinstance(error, APIError)
    assert messages == [msg]


def test_exception_from_on_error_propagates(fake_segment: FakeSegment, quick_client: QuickClient) -> None:
    """An exception raised by on_error itself reaches the caller."""

    def on_error(exc: Exception, messages: list) -> None:
        raise KeyError("from on_error")

    fake_segment.respond_with(400)
    with quick_client(fake_segment, on_error=on_error) as client, pytest.raises(KeyError, match="from on_error"):
        client.track("u", "E")


# -- whatever a server sends: (True, msg) or a DeliveryError holding the message -----------


SHORT = {"timeout": 0.2, "total_timeout": 0.3, "max_retries": 1, "backoff_factor": 0.01}
"""Client options for the any-answer tests: slow behaviours end quickly."""


def every_behaviour() -> list[Behaviour]:
    """One of each server behaviour of faults.py (endless ones capped at 2 s)."""
    behaviours = [
        ok(),
        *(respond(status) for status in (201, 204, 400, 401, 403, 404, 408, 413, 429, 500, 501, 502, 503, 504, 505)),
        respond(413, {"Retry-After": "1"}),
        *(redirect(status) for status in (301, 302, 303, 307, 308)),
        *(drip(part, 0.05) for part in ("status", "headers", "body")),
        drip("body", 0.05, status=503),
        *(drip(part, 0.05, endless=True, limit=2.0) for part in ("status", "headers", "body")),
        silent(limit=2.0),
        close_without_answer(),
        *(reset(where) for where in ("before-answer", "mid-status", "mid-headers", "mid-body", "mid-error-body")),
        *(garbage(kind) for kind in ("binary", "text", "json", "http0.9")),
        *(malformed(kind) for kind in MALFORMED),
        huge_body(500),
        huge_body(400, chunked=True),
        gzip_bomb(500),
        gzip_bomb(200),
    ]
    for status in (429, 503):
        behaviours += [retry_after(status, value) for value in BAD_RETRY_AFTER.values()]
    return behaviours


EVERY = every_behaviour()


@pytest.mark.parametrize("behaviour", EVERY, ids=str)
def test_any_answer_returns_or_raises_delivery_error(behaviour: Behaviour, quick_client: QuickClient) -> None:
    """Whatever the server sends, a call returns (True, msg) or raises a DeliveryError
    whose .messages is exactly the message; never another exception type."""
    with FaultServer(default=behaviour) as server:
        client = quick_client(server.url, **SHORT)
        result, error = outcome(lambda: send_one(client))
        client.close()
    if error is None:
        assert result[0] is True
        assert result[1]["messageId"] == "mid-1"
        return
    assert isinstance(error, DeliveryError), f"{behaviour}: raised {describe(error)} instead of a DeliveryError"
    assert [m.get("messageId") for m in error.messages] == ["mid-1"], describe(error)
    assert error.messages[0]["event"] == "E"
    assert error.attempts >= 1


@pytest.mark.parametrize("behaviour", EVERY, ids=str)
def test_any_answer_with_on_error(behaviour: Behaviour, quick_client: QuickClient) -> None:
    """With on_error, a call never raises: it returns (True, msg), or calls
    on_error(DeliveryError, [msg]) once and returns (False, msg)."""
    calls: list[tuple[BaseException, list[dict[str, Any]]]] = []
    with FaultServer(default=behaviour) as server:
        client = quick_client(server.url, on_error=lambda exc, messages: calls.append((exc, messages)), **SHORT)
        result, error = outcome(lambda: send_one(client))
        client.close()
    assert error is None, f"{behaviour}: raised {describe(error)} although on_error was given"
    ok_, msg = result
    assert msg["messageId"] == "mid-1"
    if ok_:
        assert calls == []
    else:
        assert len(calls) == 1
        reported, messages = calls[0]
        assert isinstance(reported, DeliveryError), describe(reported)
        assert messages == [msg]


@pytest.mark.parametrize("behaviour", EVERY, ids=str)
def test_any_answer_in_a_batch(behaviour: Behaviour, quick_client: QuickClient) -> None:
    """Inside client.batch(), the block either ends quietly or raises a
    BatchDeliveryError whose .unsent holds every message of the failed request."""
    sent: list[dict[str, Any]] = []

    def block(client: Client) -> None:
        with client.batch() as batch:
            sent.extend(batch.track("u", "E", message_id=f"mid-{index}")[1] for index in range(3))

    with FaultServer(default=behaviour) as server:
        client = quick_client(server.url, **SHORT)
        _, error = outcome(lambda: block(client))
        client.close()
    assert [m["messageId"] for m in sent] == ["mid-0", "mid-1", "mid-2"]
    if error is None:
        return
    assert isinstance(error, BatchDeliveryError), (
        f"{behaviour}: raised {describe(error)} instead of a BatchDeliveryError"
    )
    assert [m["messageId"] for m in error.unsent] == ["mid-0", "mid-1", "mid-2"], describe(error)
    assert error.sent == 0


# -- errors pickle and rebuild from their args ---------------------------------------------


@pytest.mark.parametrize(
    "error",
    [
        ValidationError("properties.a", "bad"),
        MessageTooLargeError(40_000, 32_768),
        ConfigurationError("host", "bad"),
        APIError(400, "bad", "nope", None, messages=[{"a": 1}], attempts=1),
        ServerError(503, "unknown", "down", attempts=4),
        RateLimitError(429, "rate", "slow", retry_after=2.5, headers={"Retry-After": "2.5"}),
        TransportError("certificate", messages=[{"a": 1}], attempts=1),
        NetworkError("refused", messages=[{"a": 1}], attempts=3),
        BatchDeliveryError("failed", sent=10, unsent=[{"a": 1}], attempts=2),
        RetryableBatchDeliveryError("failed", sent=10, unsent=[{"a": 1}], attempts=2),
    ],
)
def test_errors_pickle_and_rebuild_from_args(error: SegmentError) -> None:
    """Every error survives pickle, and a JSON round trip of its args, with its type, attributes and text."""
    attributes = ("field", "reason", "size", "limit", "status", "code", "message", "headers", "retry_after",
                  "messages", "attempts", "sent", "unsent", "retryable")

    def state(exc: SegmentError) -> dict:
        return {name: getattr(exc, name) for name in attributes if hasattr(exc, name)}

    for copy in (pickle.loads(pickle.dumps(error)), type(error)(*json.loads(json.dumps(error.args)))):
        assert type(copy) is type(error)
        assert str(copy) == str(error)
        assert state(copy) == state(error)
    if isinstance(error, DeliveryError):
        assert error.retryable is isinstance(error, RetryableError)


def test_errors_pickle_round_trip(fake_segment: FakeSegment, quick_client: QuickClient) -> None:
    """Delivery errors raised for real survive pickle with their attributes (Celery stores them)."""
    fake_segment.respond_with(429, headers={"Retry-After": "60"}, body={"message": "slow", "code": "rate"})
    with quick_client(fake_segment, total_timeout=1) as client, pytest.raises(RateLimitError) as info:
        client.track("u", "E")
    copy = pickle.loads(pickle.dumps(info.value))
    assert type(copy) is RateLimitError
    assert (copy.status, copy.code, copy.message, copy.retry_after) == (429, "rate", "slow", 60)
    assert copy.messages == info.value.messages
    assert copy.response is None
    assert str(copy) == str(info.value)


def provoke(quick_client: QuickClient, kind: str) -> DeliveryError:
    """One of each DeliveryError the client raises, from a real (failed) delivery."""
    if kind == "transport":
        return catch_single(quick_client(f"http://127.0.0.1:{closed_port()}", max_retries=0))
    behaviour = {
        "api-400": respond(400, body=b'{"success":false,"message":"Invalid JSON","code":"invalid_request"}'),
        "server-503": respond(503),
        "rate-limit-429": retry_after(429, "0"),
        "batch-503": respond(503),
    }[kind]
    with FaultServer(default=behaviour) as server:
        client = quick_client(server.url, max_retries=1)
        error = catch_batch(client) if kind.startswith("batch") else catch_single(client)
        client.close()
    return error


ERROR_KINDS = ["api-400", "server-503", "rate-limit-429", "transport", "batch-503"]


EXPECTED_TYPES: dict[str, type[DeliveryError]] = {
    "api-400": APIError,
    "server-503": ServerError,
    "rate-limit-429": RateLimitError,
    "transport": NetworkError,
    "batch-503": RetryableBatchDeliveryError,
}


def _json_equal(a: object, b: object) -> bool:
    return json.dumps(a, sort_keys=True, default=repr) == json.dumps(b, sort_keys=True, default=repr)


def _attributes(error: DeliveryError, names: tuple[str, ...]) -> dict[str, Any]:
    return {name: getattr(error, name) for name in names if hasattr(error, name)}


REBUILT = ("status", "code", "message", "attempts", "messages")


@pytest.mark.parametrize("kind", ERROR_KINDS)
def test_errors_rebuild_from_json_args(kind: str, quick_client: QuickClient) -> None:
    """type(exc)(*json.loads(json.dumps(exc.args))) gives an equal error: same status,
    code, message, attempts and messages (so a task queue storing args as JSON loses nothing)."""
    error = provoke(quick_client, kind)
    assert type(error) is EXPECTED_TYPES[kind]
    assert error.messages, "the provoked error holds the message"
    assert error.attempts >= 1
    rebuilt = type(error)(*json.loads(json.dumps(error.args)))
    original = _attributes(error, REBUILT)
    assert _json_equal(_attributes(rebuilt, REBUILT), original), (_attributes(rebuilt, REBUILT), original)
    assert str(rebuilt) == str(error)


@pytest.mark.parametrize("kind", ERROR_KINDS)
def test_errors_survive_pickle(kind: str, quick_client: QuickClient) -> None:
    """pickle round-trip keeps the type, str, status, code, message, attempts, messages,
    retryability (and sent/unsent/retry_after where they exist)."""
    error = provoke(quick_client, kind)
    names = (*REBUILT, "retryable", "sent", "unsent", "retry_after")
    restored = pickle.loads(pickle.dumps(error))
    assert type(restored) is type(error)
    assert str(restored) == str(error)
    assert _json_equal(_attributes(restored, names), _attributes(error, names))


# -- 1xx interim answers, and proxy URLs that cannot work -------------------------------------------

EARLY_HINTS = b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"


def _answer(status: int, body: bytes) -> bytes:
    head = f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    return head.encode() + body


@pytest.mark.parametrize("interim", [1, 3])
def test_early_hints_are_not_the_answer(interim: int, quick_client: QuickClient) -> None:
    """``103 Early Hints`` (once or several times) before a 200: the 200 is the answer, delivered."""
    with FaultServer(default=raw(EARLY_HINTS * interim + _answer(200, b'{"success":true}'), name="103+200")) as server:
        client = quick_client(server.url, max_retries=0)
        result, error = outcome(lambda: send_one(client))
        client.close()
        assert len(server.requests) == 1
    assert error is None, describe(error)
    assert result[0] is True


def test_early_hints_before_an_error_give_the_error(quick_client: QuickClient) -> None:
    """``103 Early Hints`` before a 500: the error is the 500's (a retryable ServerError), not a 103."""
    body = b'{"success":false,"message":"boom","code":"internal"}'
    with FaultServer(default=raw(EARLY_HINTS + _answer(500, body), name="103+500")) as server:
        client = quick_client(server.url, max_retries=0)
        _, error = outcome(lambda: send_one(client))
        client.close()
    assert isinstance(error, ServerError), describe(error)
    assert (error.status, error.code, error.message) == (500, "internal", "boom")
    assert error.retryable


@pytest.mark.parametrize(
    "proxy",
    [
        "http://user:s3cretpw@proxy.example:99999",
        "http://user:s3cretpw@proxy.example:notaport",
        "http://user:s3cretpw@[::1",
        "ftp://user:s3cretpw@proxy.example:3128",
        "http://user:s3cretpw@",
        "http://user:s3cret pw@proxy.example:3128",
    ],
)
@pytest.mark.parametrize("source", ["option", "environment"])
def test_a_malformed_proxy_url_is_a_configuration_error(
    proxy: str, source: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A proxy URL no attempt could use (a bad port, scheme or host) is refused at construction, from
    proxies= or HTTPS_PROXY, with a ConfigurationError that never shows its password."""
    options: dict[str, Any] = {"proxies": {"https": proxy}} if source == "option" else {}
    if source == "environment":
        monkeypatch.setenv("HTTPS_PROXY", proxy)
    with pytest.raises(ConfigurationError) as info:
        Client("wk", host="https://api.segment.example", **options)
    error = info.value
    shown = [str(error), repr(error), *(repr(e) for e in (error.__cause__, error.__context__))]
    for text in shown:
        assert "s3cret" not in text
    assert "***" in str(error)
