"""The retry policy, driven through the public transport seam: no test here sleeps for real.

Each test hands the client's requests to a MockTransport scripted per attempt; the
waiting between attempts goes to its FakeClock, which records each wait and moves
time forward.  (The same policy over real sockets: test_delivery.py, test_faults.py.)
"""

from __future__ import annotations

import time
from email.utils import formatdate
from typing import Any

import pytest
from conftest import WRITE_KEY

from simple_segment import APIError, Client, NetworkError, RateLimitError, ServerError
from simple_segment.testing import FakeClock, MockRequest, MockResponse, MockTransport


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
def fake_segment() -> Script:
    return Script()


def post(server: Script, clock: FakeClock, **options: Any) -> Any:
    server.transport.clock = clock
    settings = {"host": "https://api.example.test", "timeout": 2.0, "total_timeout": 60.0, **options}
    return Client(WRITE_KEY, transport=server.transport, **settings).track("u", "E")


def test_retry_after_seconds_is_waited(fake_segment: Script) -> None:
    """429 with Retry-After: 7 waits exactly 7 s before the second attempt."""
    fake_segment.respond_with(429, headers={"Retry-After": "7"})
    clock = FakeClock()
    assert post(fake_segment, clock)[0] is True
    assert len(fake_segment.requests) == 2
    assert clock.waits == [7.0]


def test_retry_after_http_date_is_waited(fake_segment: Script) -> None:
    """Retry-After as an HTTP-date in 20 s waits about 20 s."""
    fake_segment.respond_with(503, headers={"Retry-After": formatdate(time.time() + 20, usegmt=True)})
    clock = FakeClock()
    post(fake_segment, clock)
    (wait,) = clock.waits
    assert 17 <= wait <= 21


def test_backoff_grows_exponentially_with_jitter(fake_segment: Script) -> None:
    """503 three times: waits grow about twofold each time, each within factor * 2**n and that plus jitter."""
    fake_segment.respond_with(503, times=3)
    clock = FakeClock()
    post(fake_segment, clock, backoff_factor=1.0, max_retries=3)
    assert len(clock.waits) == 3
    for n, wait in enumerate(clock.waits):
        assert 2**n <= wait <= 2**n + 1.0, clock.waits


def test_first_retry_waits_too(fake_segment: Script) -> None:
    """The first retry is not immediate: it waits its backoff (urllib3 alone would give 0)."""
    fake_segment.respond_with(503)
    clock = FakeClock()
    post(fake_segment, clock, backoff_factor=0.5)
    (wait,) = clock.waits
    assert wait >= 0.5


def test_retry_after_beyond_budget_gives_up_without_waiting(fake_segment: Script) -> None:
    """A Retry-After longer than what is left of total_timeout raises at once."""
    fake_segment.respond_with(429, headers={"Retry-After": "30"}, times=2)
    clock = FakeClock()
    with pytest.raises(RateLimitError) as info:
        post(fake_segment, clock, total_timeout=10.0)
    assert clock.waits == []
    assert info.value.retry_after == 30
    assert len(fake_segment.requests) == 1


def test_max_rate_limit_duration_caps_a_retry_after(fake_segment: Script) -> None:
    """A Retry-After above max_rate_limit_duration is not waited for."""
    fake_segment.respond_with(429, headers={"Retry-After": "20"}, times=2)
    clock = FakeClock()
    with pytest.raises(RateLimitError):
        post(fake_segment, clock, max_rate_limit_duration=10.0)
    assert clock.waits == []
    fake_segment.clear()
    fake_segment.respond_with(429, headers={"Retry-After": "20"})
    post(fake_segment, clock, max_rate_limit_duration=25.0)
    assert clock.waits == [20.0]


def test_max_total_backoff_duration_caps_the_waits(fake_segment: Script) -> None:
    """Waiting stops once the next wait would take the total past max_total_backoff_duration."""
    fake_segment.respond_with(503, times=10)
    clock = FakeClock()
    with pytest.raises(ServerError) as info:
        post(fake_segment, clock, backoff_factor=1.0, max_retries=10, max_total_backoff_duration=5.0)
    assert sum(clock.waits) <= 5.0
    assert len(clock.waits) == 2  # about 1 and 2 s; the third (about 4 s) would pass 5
    assert info.value.attempts == 3


def test_budget_counts_the_waits(fake_segment: Script) -> None:
    """total_timeout includes the waits: the attempt that would start after it is not made."""
    fake_segment.respond_with(503, times=10)
    clock = FakeClock()
    with pytest.raises(ServerError):
        post(fake_segment, clock, backoff_factor=2.0, max_retries=10, total_timeout=13.0)
    assert sum(clock.waits) < 13.0
    assert len(fake_segment.requests) == len(clock.waits) + 1


def test_413_is_not_retried_even_with_retry_after(fake_segment: Script) -> None:
    """A body too large never shrinks: 413 with Retry-After is not retried."""
    fake_segment.respond_with(413, headers={"Retry-After": "1"})
    clock = FakeClock()
    with pytest.raises(APIError) as info:
        post(fake_segment, clock)
    assert getattr(info.value, "status", None) == 413
    assert not getattr(info.value, "retryable", True)
    assert clock.waits == []
    assert len(fake_segment.requests) == 1


def test_connection_refused_is_retried_with_backoff(fake_segment: Script) -> None:
    """Every attempt is refused, each retry waits, and a retryable NetworkError ends it."""

    def refuse(_request: MockRequest) -> int:
        raise ConnectionRefusedError(111, "Connection refused")

    fake_segment.transport.handler = refuse
    clock = FakeClock()
    with pytest.raises(NetworkError) as info:
        post(fake_segment, clock, max_retries=2, backoff_factor=0.5)
    assert info.value.attempts == 3
    assert len(clock.waits) == 2
    assert info.value.retryable
