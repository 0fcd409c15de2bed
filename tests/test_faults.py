"""Delivery under hostile servers: every guarantee of the hardening issue, one test each.

The servers are :mod:`faults` (raw sockets on 127.0.0.1), so a test can send what no
HTTP library would: dripped status lines, resets, garbage, 50 MB error bodies, gzip
bombs, malformed Retry-After.  Only the public API is used: ``Client``, the six
calls, ``client.batch()`` and the exception classes.

Timing assertions are upper bounds with generous slack; nothing here asserts that
something took *at least* some time.
"""

from __future__ import annotations

import base64
import gc
import json
import logging
import pickle
import threading
import time
import traceback
import tracemalloc
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from faults import (
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
    redirect,
    reset,
    respond,
    retry_after,
    self_signed_context,
    silent,
)

from simple_segment import (
    APIError,
    BatchDeliveryError,
    Client,
    DeliveryError,
    NetworkError,
    RateLimitError,
    RetryableBatchDeliveryError,
    RetryableError,
    ServerError,
)
from simple_segment.testing import FakeSegment

SECRET = "wk_SECRET_123"
"""A write key distinctive enough to search for in tracebacks and logs."""
SECRET_TOKEN = base64.b64encode(f"{SECRET}:".encode()).decode()
"""Its HTTP Basic token."""


# -- fixtures and helpers -------------------------------------------------------------


@pytest.fixture
def server() -> Iterator[FaultServer]:
    """A fault server answering 200 unless scripted; its threads are joined afterwards."""
    with FaultServer() as fault_server:
        yield fault_server
    assert fault_server.alive_threads() == []
    assert fault_server.errors == []


def make_client(host: str, **options: Any) -> Client:
    """A client of ``host`` with quick retries; ``options`` override."""
    settings: dict[str, Any] = {
        "timeout": 2,
        "total_timeout": 8,
        "max_retries": 2,
        "backoff_factor": 0.01,
        **options,
    }
    return Client(SECRET, host=host, **settings)


def send_one(client: Client, message_id: str = "mid-1") -> tuple[bool, dict[str, Any]]:
    """One track call with a known messageId."""
    return client.track("u", "E", {"n": 1}, message_id=message_id)


def assert_retryability(exc: DeliveryError, *, retryable: bool) -> None:
    """``.retryable`` agrees with the RetryableError marker, and both say ``retryable``."""
    assert exc.retryable is isinstance(exc, RetryableError), (type(exc).__mro__, exc.retryable)
    assert isinstance(exc, RetryableError) is retryable, f"{type(exc).__name__}: {exc}"


def outcome(call: Callable[[], Any]) -> tuple[Any, Exception | None]:
    """``(result, None)`` when ``call()`` returns, ``(None, exc)`` when it raises."""
    try:
        return call(), None
    except Exception as exc:
        return None, exc


def describe(exc: BaseException) -> str:
    return f"{type(exc).__module__}.{type(exc).__qualname__}: {str(exc)[:300]}"


# -- 1. total_timeout bounds the whole call -------------------------------------------


# -- 2. whatever a server sends: (True, msg) or a DeliveryError holding the message ---

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


BAD_RETRY_AFTER = {
    "5000-digits": "9" * 5000,
    "year-99999": "Fri, 31 Dec 99999 23:59:59 GMT",
    "year-10000": "Sat, 01 Jan 10000 00:00:00 GMT",
    "garbage": "soon, maybe",
    "negative": "-5",
    "empty": "",
    "float-inf": "inf",
    "nan": "nan",
    "hex": "0x10",
    "bad-date": "Mon, 99 Foo 2024 25:61:61 GMT",
}
"""Retry-After values that are neither delay-seconds in a sane range nor a valid HTTP-date."""

EVERY = every_behaviour()


@pytest.mark.parametrize("behaviour", EVERY, ids=str)
def test_any_answer_returns_or_raises_delivery_error(behaviour: Behaviour) -> None:
    """Whatever the server sends, a call returns (True, msg) or raises a DeliveryError
    whose .messages is exactly the message; never another exception type."""
    with FaultServer(default=behaviour) as server:
        client = make_client(server.url, **SHORT)
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
def test_any_answer_with_on_error(behaviour: Behaviour) -> None:
    """With on_error, a call never raises: it returns (True, msg), or calls
    on_error(DeliveryError, [msg]) once and returns (False, msg)."""
    calls: list[tuple[BaseException, list[dict[str, Any]]]] = []
    with FaultServer(default=behaviour) as server:
        client = make_client(server.url, on_error=lambda exc, messages: calls.append((exc, messages)), **SHORT)
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
def test_any_answer_in_a_batch(behaviour: Behaviour) -> None:
    """Inside client.batch(), the block either ends quietly or raises a
    BatchDeliveryError whose .unsent holds every message of the failed request."""
    sent: list[dict[str, Any]] = []

    def block(client: Client) -> None:
        with client.batch() as batch:
            sent.extend(batch.track("u", "E", message_id=f"mid-{index}")[1] for index in range(3))

    with FaultServer(default=behaviour) as server:
        client = make_client(server.url, **SHORT)
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


# -- 3. a malformed Retry-After is treated as absent ----------------------------------


# -- 4. huge error bodies and gzip bombs are cut short ---------------------------------

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
def test_huge_error_body_is_cut_short(server: FaultServer, behaviour: Behaviour, status: int, attempts: int) -> None:
    """A 50 MB error body or a gzip bomb fails fast with an APIError keeping the
    status, reading at most ~64 KB of the body, without a memory spike (5xx are
    retried: max_retries is attempts - 1)."""
    server.default = behaviour
    client = make_client(server.url, max_retries=attempts - 1)
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
    assert len(server.requests) == attempts
    assert error.attempts == attempts
    # The client stopped reading: the server could not hand the kernel even one whole body.
    assert server.bytes_written < HUGE * attempts


def test_gzip_bomb_on_success_is_not_inflated(server: FaultServer) -> None:
    """A 200 whose gzip body inflates to gigabytes is a success, quickly, without a memory spike."""
    server.default = gzip_bomb(200)
    client = make_client(server.url)
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


# -- 5. retryability ------------------------------------------------------------------


def failing_call(client: Client) -> DeliveryError:
    with pytest.raises(DeliveryError) as info:
        send_one(client)
    return info.value


def test_tls_to_a_plain_http_server_is_permanent() -> None:
    """https:// to a plain-HTTP server (it answers the TLS hello with an HTTP 400): not retryable, one attempt."""
    with FakeSegment() as plain:
        client = make_client(plain.url.replace("http://", "https://"), max_retries=3)
        error = failing_call(client)
        connections = plain.connections_accepted
        client.close()
    assert_retryability(error, retryable=False)
    assert connections == 1
    assert error.attempts == 1


def test_tls_handshake_cut_off_is_retryable(server: FaultServer) -> None:
    """A server that hangs up during the TLS handshake gave no answer: a retryable NetworkError, retried."""
    client = make_client(server.url.replace("http://", "https://"), max_retries=2)
    error = failing_call(client)
    assert_retryability(error, retryable=True)
    assert isinstance(error, NetworkError)
    assert error.attempts == 3


def test_self_signed_certificate_is_permanent() -> None:
    """A server presenting a self-signed certificate: not retryable, one connection attempt."""
    with FaultServer(tls=self_signed_context()) as server:
        client = make_client(server.url, max_retries=3)
        error = failing_call(client)
        connections = server.connections
        client.close()
    assert_retryability(error, retryable=False)
    assert connections == 1
    assert error.attempts == 1


# -- 6. messageId is kept, retries are numbered ----------------------------------------


# -- 7. the write key stays secret ------------------------------------------------------


def _client_for(host: str, **options: Any) -> Client:
    return make_client(host, **options)


def _catch_single(client: Client) -> DeliveryError:
    # Catches in its own frame, whose locals hold no secret.
    try:
        send_one(client)
    except DeliveryError as exc:
        return exc
    pytest.fail("expected a DeliveryError")


def _catch_batch(client: Client) -> DeliveryError:
    try:
        with client.batch() as batch:
            batch.track("u", "E")
    except DeliveryError as exc:
        return exc
    pytest.fail("expected a BatchDeliveryError")


def _assert_no_secret(text: str, where: str) -> None:
    assert SECRET not in text, f"the write key appears in {where}"
    assert SECRET_TOKEN not in text, f"the write key's Basic token appears in {where}"


@pytest.mark.parametrize("kind", ["500", "connection-refused", "batch-503", "tls"])
def test_write_key_not_in_tracebacks_or_logs(kind: str, caplog: pytest.LogCaptureFixture) -> None:
    """The write key (and its Basic token) is in no frame's locals, not in str/repr of
    the error, and in no log record at any level."""
    caplog.set_level(logging.DEBUG)
    with FaultServer(default=respond(500 if kind == "500" else 503)) as server:
        host = {
            "500": server.url,
            "batch-503": server.url,
            "connection-refused": f"http://127.0.0.1:{closed_port()}",
            "tls": server.url.replace("http://", "https://"),
        }[kind]
        client = _client_for(host, max_retries=0 if kind == "500" else 1)
        error = _catch_batch(client) if kind.startswith("batch") else _catch_single(client)
        client.close()
    rendered = "".join(traceback.TracebackException.from_exception(error, capture_locals=True).format())
    _assert_no_secret(rendered, "a traceback with locals")
    _assert_no_secret(str(error), "str(error)")
    _assert_no_secret(repr(error), "repr(error)")
    for record in caplog.records:
        text = record.getMessage()
        if record.exc_info:
            text += "".join(traceback.format_exception(*record.exc_info))
        _assert_no_secret(text, f"a {record.levelname} log record from {record.name}")


# -- 8. errors rebuild from their args and pickle ---------------------------------------


def provoke(kind: str) -> DeliveryError:
    """One of each DeliveryError the client raises, from a real (failed) delivery."""
    if kind == "transport":
        return _catch_single(make_client(f"http://127.0.0.1:{closed_port()}", max_retries=0))
    behaviour = {
        "api-400": respond(400, body=b'{"success":false,"message":"Invalid JSON","code":"invalid_request"}'),
        "server-503": respond(503),
        "rate-limit-429": retry_after(429, "0"),
        "batch-503": respond(503),
    }[kind]
    with FaultServer(default=behaviour) as server:
        client = make_client(server.url, max_retries=1)
        error = _catch_batch(client) if kind.startswith("batch") else _catch_single(client)
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
def test_errors_rebuild_from_json_args(kind: str) -> None:
    """type(exc)(*json.loads(json.dumps(exc.args))) gives an equal error: same status,
    code, message, attempts and messages (so a task queue storing args as JSON loses nothing)."""
    error = provoke(kind)
    assert type(error) is EXPECTED_TYPES[kind]
    assert error.messages, "the provoked error holds the message"
    assert error.attempts >= 1
    rebuilt = type(error)(*json.loads(json.dumps(error.args)))
    original = _attributes(error, REBUILT)
    assert _json_equal(_attributes(rebuilt, REBUILT), original), (_attributes(rebuilt, REBUILT), original)
    assert str(rebuilt) == str(error)


@pytest.mark.parametrize("kind", ERROR_KINDS)
def test_errors_survive_pickle(kind: str) -> None:
    """pickle round-trip keeps the type, str, status, code, message, attempts, messages,
    retryability (and sent/unsent/retry_after where they exist)."""
    error = provoke(kind)
    names = (*REBUILT, "retryable", "sent", "unsent", "retry_after")
    restored = pickle.loads(pickle.dumps(error))
    assert type(restored) is type(error)
    assert str(restored) == str(error)
    assert _json_equal(_attributes(restored, names), _attributes(error, names))


# -- the harness itself ----------------------------------------------------------------


def test_fault_server_records_and_cleans_up() -> None:
    """Self-check of faults.FaultServer: it records requests and joins its threads on exit."""
    before = set(threading.enumerate())
    with FaultServer() as server:
        server.script(respond(503))
        client = make_client(server.url)
        ok_, msg = send_one(client)
        client.close()
        requests = server.requests
    assert ok_ is True
    assert [r.message_ids for r in requests] == [[msg["messageId"]]] * 2
    assert requests[0].headers["content-type"] == "application/json"
    assert server.alive_threads() == []
    assert set(threading.enumerate()) <= before
