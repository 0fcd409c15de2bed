"""Delivery under hostile servers: every guarantee of the hardening issue, one test each.

The servers are :mod:`faults` (raw sockets on 127.0.0.1), so a test can send what no
HTTP library would: dripped status lines, resets, garbage, 50 MB error bodies, gzip
bombs, malformed Retry-After.  Only the public API is used: ``Client``, the six
calls, ``client.batch()`` and the exception classes.

Timing assertions are upper bounds with generous slack; nothing here asserts that
something took *at least* some time.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from faults import (
    FaultServer,
    respond,
)

from simple_segment import (
    Client,
    DeliveryError,
    RetryableError,
)

SECRET = "wk_SECRET_123"
"""A write key distinctive enough to search for in tracebacks and logs."""


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


# -- 3. a malformed Retry-After is treated as absent ----------------------------------


# -- 4. huge error bodies and gzip bombs are cut short ---------------------------------


# -- 5. retryability ------------------------------------------------------------------


def failing_call(client: Client) -> DeliveryError:
    with pytest.raises(DeliveryError) as info:
        send_one(client)
    return info.value


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


# -- 8. errors rebuild from their args and pickle ---------------------------------------


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
