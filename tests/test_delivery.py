"""Delivery: retries inside the call, errors at the call site, forks, threads, gzip, proxies."""

from __future__ import annotations

import gzip
import json
import logging
import os
import pickle
import threading
from typing import Any

import pytest
from conftest import WRITE_KEY

from simple_segment import (
    APIError,
    Client,
    DeliveryError,
    RateLimitError,
)
from simple_segment.testing import FakeSegment


def quick_client(server: FakeSegment, **options: Any) -> Client:
    settings: dict[str, Any] = {"timeout": 2, "total_timeout": 8, "backoff_factor": 0.01, **options}
    return Client(WRITE_KEY, host=server.url, **settings)


def test_400_body_message_without_code(fake_segment: FakeSegment) -> None:
    """Segment's 400 often has a message and no code: the error says 'unknown' and keeps the message."""
    fake_segment.respond_with(400, body={"success": False, "message": "Invalid JSON"})
    with quick_client(fake_segment) as client, pytest.raises(APIError) as info:
        client.track("u", "E")
    assert str(info.value) == "[Segment] unknown: Invalid JSON (400)"
    assert info.value.messages[0]["event"] == "E"


def test_non_json_error_body(fake_segment: FakeSegment) -> None:
    """A text error body becomes the message."""
    fake_segment.respond_with(403, body="Forbidden by proxy")
    with quick_client(fake_segment) as client, pytest.raises(APIError, match="Forbidden by proxy"):
        client.track("u", "E")


def test_error_body_read_is_bounded(fake_segment: FakeSegment) -> None:
    """A huge error body is read only in part, and its first 500 characters become the message."""
    fake_segment.respond_with(400, body="x" * 300_000)
    with quick_client(fake_segment) as client, pytest.raises(APIError) as info:
        client.track("u", "E")
    assert info.value.message == "x" * 500 + "..."
    assert len(str(info.value)) < 600


def test_on_error_is_called_instead_of_raising(fake_segment: FakeSegment) -> None:
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


def test_exception_from_on_error_propagates(fake_segment: FakeSegment) -> None:
    """An exception raised by on_error itself reaches the caller."""

    def on_error(exc: Exception, messages: list) -> None:
        raise KeyError("from on_error")

    fake_segment.respond_with(400)
    with quick_client(fake_segment, on_error=on_error) as client, pytest.raises(KeyError, match="from on_error"):
        client.track("u", "E")


def test_gzip_body(fake_segment: FakeSegment) -> None:
    """gzip=True sends Content-Encoding: gzip and bytes that decode to the same JSON."""
    with quick_client(fake_segment, gzip=True) as client:
        _, msg = client.track("u", "E", {"text": "hello " * 200})
    request = fake_segment.requests[0]
    assert request.headers["content-encoding"] == "gzip"
    decoded = json.loads(gzip.decompress(request.body))
    assert decoded["batch"] == [msg]
    assert len(request.body) < len(json.dumps(decoded))


def test_explicit_proxy_reaches_the_wire(fake_segment: FakeSegment) -> None:
    """proxies={'http': ...} sends the request to the proxy with the absolute URL as target."""
    with Client(WRITE_KEY, host="http://segment.invalid", proxies={"http": fake_segment.url}, timeout=2) as client:
        client.track("u", "E")
    (request,) = fake_segment.requests
    assert request.path == "http://segment.invalid/v1/batch"


def test_environment_proxy_is_read_at_construction(fake_segment: FakeSegment, monkeypatch: pytest.MonkeyPatch) -> None:
    """HTTP_PROXY set when the client is made is used; NO_PROXY is respected."""
    monkeypatch.setenv("HTTP_PROXY", fake_segment.url)
    with Client(WRITE_KEY, host="http://segment.invalid", timeout=2) as client:
        monkeypatch.delenv("HTTP_PROXY")
        client.track("u", "E")
    assert fake_segment.requests[0].path == "http://segment.invalid/v1/batch"
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    with quick_client(fake_segment) as client:
        client.track("u", "E")
    assert fake_segment.requests[1].path == "/v1/batch"


def test_threads_share_one_client(fake_segment: FakeSegment) -> None:
    """One client used by 8 threads delivers every message exactly once."""
    client = quick_client(fake_segment)
    sent: list[str] = []
    lock = threading.Lock()

    def work(n: int) -> None:
        for i in range(25):
            _, msg = client.track(f"user-{n}", "E", {"i": i})
            with lock:
                sent.append(msg["messageId"])

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    client.close()
    received = [m["messageId"] for m in fake_segment.messages]
    assert len(sent) == 200
    assert sorted(received) == sorted(sent)
    assert len(set(received)) == 200


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_client_survives_fork(fake_segment: FakeSegment) -> None:
    """A client made before fork() sends from parent and child over separate connections."""
    client = quick_client(fake_segment)
    client.track("parent", "Before Fork")
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 1
        try:
            client.track("child", "In Child")
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    client.track("parent", "After Fork")
    client.close()
    events = [(m["userId"], m["event"]) for m in fake_segment.messages]
    assert sorted(events) == sorted([("parent", "Before Fork"), ("child", "In Child"), ("parent", "After Fork")])


def test_errors_pickle_round_trip(fake_segment: FakeSegment) -> None:
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


def test_write_key_never_logged(fake_segment: FakeSegment, caplog: pytest.LogCaptureFixture) -> None:
    """At DEBUG, log records show payloads but never the write key."""
    secret = "sk_live_very_secret"
    fake_segment.respond_with(500)
    with caplog.at_level(logging.DEBUG):
        with Client(secret, host=fake_segment.url, backoff_factor=0.01) as client:
            client.track("u", "E", {"p": 1})
        fake_segment.respond_with(400, body={"message": "bad"})
        with Client(secret, host=fake_segment.url) as client, pytest.raises(DeliveryError) as info:
            client.track("u", "E")
    text = "\n".join(record.getMessage() for record in caplog.records)
    assert '"p"' in text or "'p'" in text
    assert secret not in text
    assert secret not in str(info.value)
    assert secret not in repr(info.value)
    simple_records = [r for r in caplog.records if r.name == "simple_segment" and r.levelno < logging.WARNING]
    assert simple_records, "payloads are logged at DEBUG"
    assert all("sending" not in r.getMessage() for r in caplog.records if r.levelno >= logging.INFO)


def test_debug_and_log_handler(fake_segment: FakeSegment) -> None:
    """debug=True sets the 'simple_segment' logger to DEBUG; log_handler receives its records."""
    records: list[logging.LogRecord] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Collect()
    logger = logging.getLogger("simple_segment")
    level = logger.level
    try:
        with quick_client(fake_segment, debug=True, log_handler=handler) as client:
            client.track("u", "E")
        assert logger.level == logging.DEBUG
        assert any("sending" in r.getMessage() for r in records)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
