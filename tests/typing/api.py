"""Usage code that must type-check under ``mypy --strict`` (run by tox's ``types`` environment).

It is never executed.  A line marked ``# type: ignore[...]`` must be rejected by mypy:
``warn_unused_ignores`` (part of ``--strict``) fails the check if it is ever accepted.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

import simple_segment
import simple_segment as analytics
from simple_segment import Batch, Client, DeliveryError, Message, Options, Pending, Result, RetryableError, Scope
from simple_segment.testing import (
    Captured,
    FakeClock,
    FakeSegment,
    MockRequest,
    MockResponse,
    MockTransport,
    capture,
)


def module_api() -> None:
    analytics.write_key = "key"
    analytics.host = "https://events.eu1.segmentapis.com"
    analytics.timeout = (3.0, 10.0)
    analytics.max_retries = 5
    analytics.on_error = lambda exc, messages: None
    analytics.before_send = lambda msg: msg
    ok, msg = analytics.track("user-1", "Signed Up", {"plan": "pro"})
    flag: bool = ok
    message_id: str = msg["messageId"]
    analytics.identify("user-1", {"email": "a@example.com"}, timestamp=dt.datetime.now(dt.timezone.utc))
    analytics.page("user-1", "Docs", "Install")
    analytics.screen(anonymous_id=42, name="Home")
    analytics.group("user-1", "acme", {"seats": 3})
    analytics.alias("anon-1", "user-1")
    analytics.flush()
    analytics.join()
    analytics.shutdown()
    analytics.track("user-1", "E", bogus=1)  # type: ignore[call-arg]
    analytics.track("user-1", 5)  # type: ignore[arg-type]
    analytics.identify("user-1", ["not", "a", "dict"])  # type: ignore[arg-type]
    analytics.track("user-1", "E", timestamp="2024-01-01")  # type: ignore[arg-type]
    del flag, message_id


def client_api() -> Result:
    def on_error(exc: Exception, messages: list[dict[str, Any]]) -> None:
        logging.getLogger(__name__).error("lost %d: %s", len(messages), exc)

    def scrub(msg: Message) -> Message | None:
        msg.get("context", {}).pop("ip", None)
        return msg

    with Client(
        "key",
        host="http://127.0.0.1:8787",
        gzip=True,
        timeout=2,
        on_error=on_error,
        total_timeout=10,
        backoff_factor=0.1,
        verify=False,
        before_send=scrub,
    ) as client:
        host: str = client.host
        retries: int = client.max_retries
        default_timeout = Client.DefaultConfig.timeout
        options: Options = client.options
        with client.batch(context={"app": {"name": "x"}}) as batch:
            checked: Batch = batch
            batch.track("user-1", "Imported", {"n": 1}, timestamp=dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc))
            sent: int = batch.messages_sent
        del host, retries, default_timeout, options, checked, sent
        Client("key", bogus=True)  # type: ignore[call-arg]
        return client.track(user_id=1, event="E", message_id="m-1")


def scopes() -> None:
    def add_app(msg: Message) -> Message | None:
        return msg

    analytics.before_send = [add_app, lambda msg: None]
    analytics.before_send = (add_app,)
    analytics.before_send = [analytics.before_send, add_app]  # how an integration adds its hook to the user's
    Client("key", before_send=[add_app, add_app])
    with simple_segment.scope(context={"ip": "10.0.0.1", "page": {"path": "/"}}, integrations={"All": True}) as outer:
        entered: Scope = outer
        with simple_segment.scope(defer=True), analytics.batch() as batch:
            batch.track("u", "E")
            ok, msg = analytics.track("u", "E")
    request = simple_segment.scope(context={"ip": "10.0.0.1"}, defer=True)
    request.__enter__()
    pending: Pending = request.detach()
    count: int = len(pending)
    ids: list[str] = pending.message_ids()
    pending.deliver()
    simple_segment.scope({"ip": "x"})  # type: ignore[call-arg]
    simple_segment.scope(defer="yes")  # type: ignore[arg-type]
    Client("key", before_send=[1])  # type: ignore[list-item]
    del entered, ok, msg, count, ids


def errors() -> None:
    try:
        analytics.track("u", "E")
    except RetryableError:
        pass
    except DeliveryError as exc:
        lost: list[dict[str, Any]] = exc.messages
        attempts: int = exc.attempts
        retryable: bool = exc.retryable
        del lost, attempts, retryable


def testing_kit() -> None:
    with capture() as sent, simple_segment.stable_ids("task-1"):
        analytics.track("u", "E")
    recorded: Captured = sent
    first: Message = recorded[0]
    with FakeSegment() as server:
        url: str = server.url
        server.respond_with(503, times=2)
        messages: list[dict[str, Any]] = server.by_event("E")
    del first, url, messages



def mock_transport() -> None:
    def handler(request: MockRequest) -> MockResponse | int:
        payload: Any = request.json()
        method: str = request.method
        url: str = request.url
        sent: bytes = request.body
        plain: bytes = request.content
        retry: str | None = request.headers.get("X-Retry-Count")
        del payload, method, url, sent, plain, retry
        return MockResponse(429, {"Retry-After": "1"}) if len(transport.requests) == 1 else 200

    clock = FakeClock(start=0.0)
    transport = MockTransport(handler, clock=clock)
    Client("key", transport=transport).track("u", "E")
    MockTransport(lambda request: (200, {"X-A": "1"}, b"{}"))
    MockTransport(lambda request: MockResponse(json={"success": True}))
    clock.advance(30)
    waits: list[float] = transport.clock.waits
    requests: list[MockRequest] = transport.requests
    Client("key", transport="https://example.com")  # type: ignore[arg-type]
    MockTransport(lambda request: "OK")  # type: ignore[arg-type, return-value]
    del waits, requests

def integrations() -> None:
    from redis import Redis
    from rq import Worker

    from simple_segment.integrations import celery as segment_celery
    from simple_segment.integrations.rq import StableIdsJob, stable_ids_job

    segment_celery.install()
    segment_celery.uninstall()
    segment_celery.install(True)  # type: ignore[call-arg]

    @stable_ids_job
    def job(user_id: str, plan: str = "pro") -> int:
        analytics.track(user_id, "Signed Up", {"plan": plan})
        return 1

    count: int = job("user-1", plan="trial")
    job(1)  # type: ignore[arg-type]
    worker = Worker(["default"], connection=Redis(), job_class=StableIdsJob)
    del count, worker
