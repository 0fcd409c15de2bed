"""Retries: which answers are retried, how many times, what each retry carries, and Retry-After.

The fault-server tests (:mod:`faults`) send what no HTTP library would: resets, dropped
connections, malformed Retry-After; most others script a FakeSegment.  The policy's
waits (backoff, Retry-After and their caps, the budget) run through a MockTransport
scripted per attempt on a FakeClock, so no test here sleeps for real to wait them out.
"""

from __future__ import annotations

import socket
import time
from email.utils import formatdate
from typing import Any

import pytest
import urllib3
from conftest import WRITE_KEY, QuickClient, body_of
from faults import (
    BAD_RETRY_AFTER,
    Behaviour,
    FaultServer,
    close_without_answer,
    closed_port,
    ok,
    redirect,
    reset,
    respond,
    retry_after,
    silent,
)
from outcomes import assert_retryability, describe, failing_call, outcome, send_one

from simple_segment import (
    APIError,
    BatchDeliveryError,
    Client,
    DeliveryError,
    NetworkError,
    RateLimitError,
    RetryableError,
    ServerError,
    TransportError,
)
from simple_segment.testing import FakeClock, FakeSegment, MockRequest, MockResponse, MockTransport

# -- which answers are retried -------------------------------------------------------------


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504, 599])
def test_retryable_statuses_are_retried(fake_segment: FakeSegment, status: int, quick_client: QuickClient) -> None:
    """408, 429 and 5xx other than 501/505 are tried again."""
    fake_segment.respond_with(status)
    with quick_client(fake_segment) as client:
        assert client.track("u", "E")[0] is True
    assert [r.status for r in fake_segment.requests] == [status, 200]


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
def test_transient_statuses_are_retryable(fault_server: FaultServer, status: int, quick_client: QuickClient) -> None:
    """408/429/500/502/503/504: retried up to max_retries, then a retryable APIError."""
    fault_server.default = respond(status)
    error = failing_call(quick_client(fault_server.url, max_retries=2))
    assert isinstance(error, APIError)
    assert error.status == status
    assert isinstance(error, RateLimitError if status == 429 else ServerError)
    assert_retryability(error, retryable=True)
    assert len(fault_server.requests) == 3
    assert error.attempts == 3


@pytest.mark.parametrize("status", [400, 401, 403, 404, 413, 422, 501, 505])
def test_permanent_statuses_are_not_retried(fake_segment: FakeSegment, status: int, quick_client: QuickClient) -> None:
    """Other 4xx, 501 and 505 fail after one attempt with an APIError that is not retryable."""
    fake_segment.respond_with(status, body={"success": False, "message": "nope", "code": "bad"}, times=3)
    with quick_client(fake_segment) as client, pytest.raises(APIError) as info:
        client.track("u", "E")
    error = info.value
    assert len(fake_segment.requests) == 1
    assert error.status == status
    assert (error.code, error.message) == ("bad", "nope")
    assert str(error) == f"[Segment] bad: nope ({status})"
    assert error.attempts == 1
    assert not isinstance(error, RetryableError)
    assert error.retryable is False


@pytest.mark.parametrize("status", [400, 401, 403, 404, 413])
def test_client_errors_are_permanent(fault_server: FaultServer, status: int, quick_client: QuickClient) -> None:
    """400/401/403/404/413: an APIError, not retryable, not retried."""
    fault_server.default = respond(status)
    error = failing_call(quick_client(fault_server.url, max_retries=3))
    assert isinstance(error, APIError)
    assert error.status == status
    assert_retryability(error, retryable=False)
    assert len(fault_server.requests) == 1


def test_dropped_connection_is_retried(fake_segment: FakeSegment, quick_client: QuickClient) -> None:
    """A connection closed without an answer is retried, and the message arrives once."""
    fake_segment.respond_with(drop=True)
    with quick_client(fake_segment) as client:
        ok, msg = client.track("u", "E")
    assert ok is True
    assert [r.status for r in fake_segment.requests] == [0, 200]
    assert fake_segment.messages == [msg]


@pytest.mark.parametrize("behaviour", [reset("before-answer"), reset("mid-headers"), close_without_answer()], ids=str)
def test_reset_is_retryable_and_retried(
    fault_server: FaultServer, behaviour: Behaviour, quick_client: QuickClient
) -> None:
    """A reset or closed connection: retried, then a retryable error."""
    fault_server.default = behaviour
    error = failing_call(quick_client(fault_server.url, max_retries=2))
    assert_retryability(error, retryable=True)
    assert len(fault_server.requests) == 3
    assert error.attempts == 3


def test_timeout_is_retryable_and_retried(fault_server: FaultServer, quick_client: QuickClient) -> None:
    """A server that never answers: each attempt times out; retried; retryable."""
    fault_server.default = silent(limit=5)
    error = failing_call(quick_client(fault_server.url, timeout=0.3, total_timeout=5, max_retries=1))
    assert_retryability(error, retryable=True)
    assert len(fault_server.requests) == 2


def test_connection_refused_is_a_transport_error() -> None:
    """Nothing listening: a retryable NetworkError (a TransportError) chaining urllib3's exception, after retries."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = Client(WRITE_KEY, host=f"http://127.0.0.1:{port}", max_retries=2, backoff_factor=0.01, timeout=1)
    with pytest.raises(TransportError) as info:
        client.track("u", "E")
    assert info.value.attempts == 3
    assert isinstance(info.value, NetworkError)
    assert isinstance(info.value.__cause__, urllib3.exceptions.NewConnectionError)
    assert WRITE_KEY not in str(info.value)


def test_connection_refused_is_retryable_and_retried(quick_client: QuickClient) -> None:
    """Connection refused (nothing listening): a retryable error after max_retries + 1 attempts."""
    client = quick_client(f"http://127.0.0.1:{closed_port()}", max_retries=2)
    error = failing_call(client)
    assert_retryability(error, retryable=True)
    assert error.attempts == 3


def test_redirect_is_an_api_error_not_followed(fake_segment: FakeSegment, quick_client: QuickClient) -> None:
    """A 3xx is an APIError, not followed and not retried."""
    fake_segment.respond_with(307, headers={"Location": "http://127.0.0.1:9/v1/batch"})
    with quick_client(fake_segment) as client, pytest.raises(APIError) as info:
        client.track("u", "E")
    assert info.value.status == 307
    assert info.value.code == "redirect"
    assert len(fake_segment.requests) == 1


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_redirect_is_not_followed(fault_server: FaultServer, status: int, quick_client: QuickClient) -> None:
    """A 3xx on POST: not followed (no request to its Location), not retryable, not retried."""
    fault_server.default = redirect(status, "/elsewhere")
    error = failing_call(quick_client(fault_server.url, max_retries=2))
    assert isinstance(error, APIError)
    assert error.status == status
    assert_retryability(error, retryable=False)
    assert [(r.method, r.path) for r in fault_server.requests] == [("POST", "/v1/batch")]


@pytest.mark.parametrize(("status", "retryable"), [(503, True), (429, True), (400, False), (413, False)])
def test_batch_failure_retryability(
    fault_server: FaultServer, status: int, retryable: bool, quick_client: QuickClient
) -> None:
    """A batch that failed on 503/429 raises a BatchDeliveryError that IS a
    RetryableError (and .retryable says so); one that failed on 400/413 is not."""
    fault_server.default = respond(status)
    client = quick_client(fault_server.url, max_retries=1)
    with pytest.raises(BatchDeliveryError) as info, client.batch() as batch:
        batch.track("u", "E")
    assert_retryability(info.value, retryable=retryable)
    assert isinstance(info.value.__cause__, DeliveryError)
    assert info.value.__cause__.retryable is retryable


# -- how many attempts ---------------------------------------------------------------------


def test_gives_up_after_max_retries(fake_segment: FakeSegment, quick_client: QuickClient) -> None:
    """max_retries bounds the attempts; the last status is raised as a retryable ServerError."""
    fake_segment.respond_with(503, times=10)
    with quick_client(fake_segment, max_retries=2) as client, pytest.raises(ServerError) as info:
        client.track("u", "E")
    assert len(fake_segment.requests) == 3
    assert info.value.attempts == 3
    assert info.value.status == 503
    assert isinstance(info.value, RetryableError)
    assert fake_segment.messages == []


def test_max_retries_zero_means_one_attempt(fake_segment: FakeSegment, quick_client: QuickClient) -> None:
    """With max_retries=0 a failure is raised after the first attempt."""
    fake_segment.respond_with(500, times=2)
    with quick_client(fake_segment, max_retries=0) as client, pytest.raises(ServerError):
        client.track("u", "E")
    assert len(fake_segment.requests) == 1


# -- every attempt keeps the messageId; retries are numbered -------------------------------


def test_retries_until_delivered_with_same_message_id(fake_segment: FakeSegment, quick_client: QuickClient) -> None:
    """500, 500, 200: three attempts, one delivery, one messageId, three sentAt, X-Retry-Count 1 and 2."""
    fake_segment.respond_with(500, times=2)
    with quick_client(fake_segment) as client:
        ok, msg = client.track("u", "E")
    assert ok is True
    attempts = fake_segment.requests
    assert [r.status for r in attempts] == [500, 500, 200]
    bodies = [body_of(r) for r in attempts]
    assert {b["batch"][0]["messageId"] for b in bodies} == {msg["messageId"]}
    assert len({b["sentAt"] for b in bodies}) == 3
    assert [r.headers.get("x-retry-count") for r in attempts] == [None, "1", "2"]
    assert fake_segment.messages == [msg]


def test_every_attempt_keeps_message_id_and_counts_retries(
    fault_server: FaultServer, quick_client: QuickClient
) -> None:
    """500, dropped, reset, 429, 200: five attempts of one message, one messageId,
    and X-Retry-Count 1..4 on the retries."""
    fault_server.script(respond(500), close_without_answer(), reset("before-answer"), retry_after(429, "0"), ok())
    client = quick_client(fault_server.url, max_retries=4)
    ok_, msg = send_one(client)
    assert ok_ is True
    requests = fault_server.requests
    assert len(requests) == 5
    assert [r.message_ids for r in requests] == [[msg["messageId"]]] * 5
    assert [r.retry_count for r in requests[1:]] == ["1", "2", "3", "4"]
    assert requests[0].retry_count in (None, "0")


def test_batch_attempts_keep_every_message_id(fault_server: FaultServer, quick_client: QuickClient) -> None:
    """A batch request retried after 503 and a reset carries the same messageIds each time."""
    fault_server.script(respond(503), reset("mid-headers"), ok())
    client = quick_client(fault_server.url, max_retries=3)
    with client.batch() as batch:
        ids = [batch.track("u", "E")[1]["messageId"] for _ in range(4)]
    requests = fault_server.requests
    assert [r.message_ids for r in requests] == [ids] * 3
    assert [r.retry_count for r in requests[1:]] == ["1", "2"]


# -- Retry-After ---------------------------------------------------------------------------


def test_retry_after_beyond_budget_gives_up_at_once(fake_segment: FakeSegment, quick_client: QuickClient) -> None:
    """A Retry-After longer than the time budget raises RateLimitError without waiting."""
    fake_segment.respond_with(429, headers={"Retry-After": "30"}, body={"message": "slow down"}, times=3)
    started = time.monotonic()
    with quick_client(fake_segment, total_timeout=3) as client, pytest.raises(RateLimitError) as info:
        client.track("u", "E")
    assert time.monotonic() - started < 2.5
    assert info.value.retry_after == 30
    assert info.value.status == 429
    assert isinstance(info.value, RetryableError)
    assert len(fake_segment.requests) == 1


def test_413_with_retry_after_is_not_retried(fault_server: FaultServer, quick_client: QuickClient) -> None:
    """413 with Retry-After: a body too large never shrinks: not retried, not retryable."""
    fault_server.default = respond(413, {"Retry-After": "0"})
    error = failing_call(quick_client(fault_server.url, max_retries=3))
    assert isinstance(error, APIError)
    assert error.status == 413
    assert_retryability(error, retryable=False)
    assert len(fault_server.requests) == 1


@pytest.mark.parametrize("status", [429, 503])
@pytest.mark.parametrize("value", list(BAD_RETRY_AFTER.values()), ids=list(BAD_RETRY_AFTER))
def test_malformed_retry_after_is_ignored(
    fault_server: FaultServer, status: int, value: str, quick_client: QuickClient
) -> None:
    """A malformed Retry-After is treated as absent: the call retries with normal
    (short) backoff and succeeds when the next answer is 200."""
    fault_server.script(retry_after(status, value), ok())
    client = quick_client(fault_server.url, max_retries=2)
    started = time.monotonic()
    result, error = outcome(lambda: send_one(client))
    assert error is None, f"Retry-After {value[:40]!r}: raised {describe(error)} instead of retrying"
    assert result[0] is True
    assert result[1]["messageId"] == "mid-1"
    assert len(fault_server.requests) == 2
    assert time.monotonic() - started < 3.0


@pytest.mark.parametrize("value", list(BAD_RETRY_AFTER.values()), ids=list(BAD_RETRY_AFTER))
def test_malformed_retry_after_on_the_last_answer(
    fault_server: FaultServer, value: str, quick_client: QuickClient
) -> None:
    """When a 429 with a malformed Retry-After is the final answer, the call raises a
    RateLimitError whose retry_after is None (no bare ValueError)."""
    fault_server.default = retry_after(429, value)
    client = quick_client(fault_server.url, max_retries=1)
    with pytest.raises(RateLimitError) as info:
        send_one(client)
    assert info.value.status == 429
    assert info.value.retry_after is None
    assert len(fault_server.requests) == 2


# -- the policy's waits, on a fake clock ---------------------------------------------------


class Script:
    """Answers the requests in order: ``respond_with(status, headers, times)`` queues answers, then 200."""

    def __init__(self) -> None:
        self.answers: list[Any] = []
        self.transport = MockTransport(self.answer)

    def answer(self, _request: MockRequest) -> Any:
        return self.answers.pop(0) if self.answers else 200

    def respond_with(self, status: int, *, headers: dict[str, str] | None = None, times: int = 1) -> None:
        self.answers += [MockResponse(status, headers)] * times

    def clear(self) -> None:
        self.answers.clear()
        self.transport.requests.clear()

    @property
    def requests(self) -> list[MockRequest]:
        return self.transport.requests


@pytest.fixture
def script() -> Script:
    return Script()


def post(server: Script, clock: FakeClock, **options: Any) -> Any:
    server.transport.clock = clock
    settings = {"host": "https://api.example.test", "timeout": 2.0, "total_timeout": 60.0, **options}
    return Client(WRITE_KEY, transport=server.transport, **settings).track("u", "E")


def test_retry_after_seconds_is_waited(script: Script) -> None:
    """429 with Retry-After: 7 waits exactly 7 s before the second attempt."""
    script.respond_with(429, headers={"Retry-After": "7"})
    clock = FakeClock()
    assert post(script, clock)[0] is True
    assert len(script.requests) == 2
    assert clock.waits == [7.0]


def test_retry_after_http_date_is_waited(script: Script) -> None:
    """Retry-After as an HTTP-date in 20 s waits about 20 s."""
    script.respond_with(503, headers={"Retry-After": formatdate(time.time() + 20, usegmt=True)})
    clock = FakeClock()
    post(script, clock)
    (wait,) = clock.waits
    assert 17 <= wait <= 21


def test_backoff_grows_exponentially_with_jitter(script: Script) -> None:
    """503 three times: waits grow about twofold each time, each within factor * 2**n and that plus jitter."""
    script.respond_with(503, times=3)
    clock = FakeClock()
    post(script, clock, backoff_factor=1.0, max_retries=3)
    assert len(clock.waits) == 3
    for n, wait in enumerate(clock.waits):
        assert 2**n <= wait <= 2**n + 1.0, clock.waits


def test_first_retry_waits_too(script: Script) -> None:
    """The first retry is not immediate: it waits its backoff (urllib3 alone would give 0)."""
    script.respond_with(503)
    clock = FakeClock()
    post(script, clock, backoff_factor=0.5)
    (wait,) = clock.waits
    assert wait >= 0.5


def test_retry_after_beyond_budget_gives_up_without_waiting(script: Script) -> None:
    """A Retry-After longer than what is left of total_timeout raises at once."""
    script.respond_with(429, headers={"Retry-After": "30"}, times=2)
    clock = FakeClock()
    with pytest.raises(RateLimitError) as info:
        post(script, clock, total_timeout=10.0)
    assert clock.waits == []
    assert info.value.retry_after == 30
    assert len(script.requests) == 1


def test_max_rate_limit_duration_caps_a_retry_after(script: Script) -> None:
    """A Retry-After above max_rate_limit_duration is not waited for."""
    script.respond_with(429, headers={"Retry-After": "20"}, times=2)
    clock = FakeClock()
    with pytest.raises(RateLimitError):
        post(script, clock, max_rate_limit_duration=10.0)
    assert clock.waits == []
    script.clear()
    script.respond_with(429, headers={"Retry-After": "20"})
    post(script, clock, max_rate_limit_duration=25.0)
    assert clock.waits == [20.0]


def test_max_total_backoff_duration_caps_the_waits(script: Script) -> None:
    """Waiting stops once the next wait would take the total past max_total_backoff_duration."""
    script.respond_with(503, times=10)
    clock = FakeClock()
    with pytest.raises(ServerError) as info:
        post(script, clock, backoff_factor=1.0, max_retries=10, max_total_backoff_duration=5.0)
    assert sum(clock.waits) <= 5.0
    assert len(clock.waits) == 2  # about 1 and 2 s; the third (about 4 s) would pass 5
    assert info.value.attempts == 3


def test_budget_counts_the_waits(script: Script) -> None:
    """total_timeout includes the waits: the attempt that would start after it is not made."""
    script.respond_with(503, times=10)
    clock = FakeClock()
    with pytest.raises(ServerError):
        post(script, clock, backoff_factor=2.0, max_retries=10, total_timeout=13.0)
    assert sum(clock.waits) < 13.0
    assert len(script.requests) == len(clock.waits) + 1


def test_413_is_not_retried_even_with_retry_after(script: Script) -> None:
    """A body too large never shrinks: 413 with Retry-After is not retried."""
    script.respond_with(413, headers={"Retry-After": "1"})
    clock = FakeClock()
    with pytest.raises(APIError) as info:
        post(script, clock)
    assert getattr(info.value, "status", None) == 413
    assert not getattr(info.value, "retryable", True)
    assert clock.waits == []
    assert len(script.requests) == 1


def test_connection_refused_is_retried_with_backoff(script: Script) -> None:
    """Every attempt is refused, each retry waits, and a retryable NetworkError ends it."""

    def refuse(_request: MockRequest) -> int:
        raise ConnectionRefusedError(111, "Connection refused")

    script.transport.handler = refuse
    clock = FakeClock()
    with pytest.raises(NetworkError) as info:
        post(script, clock, max_retries=2, backoff_factor=0.5)
    assert info.value.attempts == 3
    assert len(clock.waits) == 2
    assert info.value.retryable


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_zero_is_retried_after_the_backoff(script: Script, status: int) -> None:
    """Retry-After: 0 is retried, after the ordinary backoff: urllib3 reads a zero wait as no header.

    Not at once (a server answering 429 with 0 would get a tight loop) and not given up on.
    """
    script.respond_with(status, headers={"Retry-After": "0"})
    clock = FakeClock()
    assert post(script, clock, backoff_factor=0.5)[0] is True
    assert len(script.requests) == 2
    (wait,) = clock.waits
    assert 0.5 <= wait <= 1.0


def test_a_long_retry_after_is_read_as_urllib3_caps_it(script: Script) -> None:
    """Retry-After: 86400 (a day) with the caps lifted: waited as urllib3 reads it, 6 hours where it caps, else a day."""
    from urllib3.util import Retry

    expected = min(86_400.0, float(getattr(Retry, "DEFAULT_RETRY_AFTER_MAX", 86_400)))
    script.respond_with(429, headers={"Retry-After": "86400"})
    clock = FakeClock()
    caps = {"max_rate_limit_duration": 10**6, "max_total_backoff_duration": 10**6, "total_timeout": 10**6}
    assert post(script, clock, **caps)[0] is True
    assert clock.waits == [expected]
    script.clear()
    script.respond_with(429, headers={"Retry-After": "86400"})
    with pytest.raises(RateLimitError) as info:
        post(script, FakeClock())  # the defaults: a wait that long ends the call at once
    assert info.value.retry_after == expected


def test_the_caps_hold_at_their_exact_values(script: Script) -> None:
    """Each cap at its boundary: a wait equal to max_rate_limit_duration or to max_total_backoff_duration is
    waited; a wait that would end exactly at the deadline is not (no time would be left to send)."""
    script.respond_with(429, headers={"Retry-After": "20"})
    clock = FakeClock()
    assert post(script, clock, max_rate_limit_duration=20.0)[0] is True
    assert clock.waits == [20.0]

    script.clear()
    script.respond_with(503, headers={"Retry-After": "7"})
    clock = FakeClock()
    assert post(script, clock, max_total_backoff_duration=7.0)[0] is True
    assert clock.waits == [7.0]

    script.clear()
    script.respond_with(429, headers={"Retry-After": "10"})
    clock = FakeClock()
    with pytest.raises(RateLimitError):
        post(script, clock, total_timeout=10.0)
    assert clock.waits == []
    assert len(script.requests) == 1
