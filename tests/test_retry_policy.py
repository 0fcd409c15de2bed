"""The retry policy, driven through the transport's clock seam: no test here sleeps for real.

Each test posts real requests to FakeSegment over loopback; only the waiting between
attempts goes through a fake clock, which records each wait and moves time forward.
"""

from __future__ import annotations

import time
from email.utils import formatdate
from typing import Any

import pytest
from conftest import WRITE_KEY

from simple_segment import APIError, NetworkError, Options, RateLimitError, ServerError
from simple_segment._messages import track
from simple_segment._transport import Transport
from simple_segment._wire import Envelope, encode_message
from simple_segment.testing import FakeSegment


class FakeClock:
    """Time that moves only when the transport waits."""

    def __init__(self) -> None:
        self.now = 1_000.0
        self.waits: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds


def post(server: FakeSegment, clock: FakeClock, **options: Any) -> Any:
    settings = {"write_key": WRITE_KEY, "host": server.url, "timeout": 2.0, "total_timeout": 60.0, **options}
    transport = Transport(Options(**settings), user_agent="test", clock=clock)
    encoded = [encode_message(track("u", "E"))]
    try:
        return transport.post(lambda: Envelope(WRITE_KEY).render(encoded))
    finally:
        transport.close()


def test_retry_after_seconds_is_waited(fake_segment: FakeSegment) -> None:
    """429 with Retry-After: 7 waits exactly 7 s before the second attempt."""
    fake_segment.respond_with(429, headers={"Retry-After": "7"})
    clock = FakeClock()
    delivered = post(fake_segment, clock)
    assert delivered.attempts == 2
    assert clock.waits == [7.0]


def test_retry_after_http_date_is_waited(fake_segment: FakeSegment) -> None:
    """Retry-After as an HTTP-date in 20 s waits about 20 s."""
    fake_segment.respond_with(503, headers={"Retry-After": formatdate(time.time() + 20, usegmt=True)})
    clock = FakeClock()
    post(fake_segment, clock)
    (wait,) = clock.waits
    assert 17 <= wait <= 21


def test_backoff_grows_exponentially_with_jitter(fake_segment: FakeSegment) -> None:
    """503 three times: waits grow about twofold each time, each within factor * 2**n and that plus jitter."""
    fake_segment.respond_with(503, times=3)
    clock = FakeClock()
    post(fake_segment, clock, backoff_factor=1.0, max_retries=3)
    assert len(clock.waits) == 3
    for n, wait in enumerate(clock.waits):
        assert 2**n <= wait <= 2**n + 1.0, clock.waits


def test_first_retry_waits_too(fake_segment: FakeSegment) -> None:
    """The first retry is not immediate: it waits its backoff (urllib3 alone would give 0)."""
    fake_segment.respond_with(503)
    clock = FakeClock()
    post(fake_segment, clock, backoff_factor=0.5)
    (wait,) = clock.waits
    assert wait >= 0.5


def test_retry_after_beyond_budget_gives_up_without_waiting(fake_segment: FakeSegment) -> None:
    """A Retry-After longer than what is left of total_timeout raises at once."""
    fake_segment.respond_with(429, headers={"Retry-After": "30"}, times=2)
    clock = FakeClock()
    with pytest.raises(RateLimitError) as info:
        post(fake_segment, clock, total_timeout=10.0)
    assert clock.waits == []
    assert info.value.retry_after == 30
    assert len(fake_segment.requests) == 1


def test_max_rate_limit_duration_caps_a_retry_after(fake_segment: FakeSegment) -> None:
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


def test_max_total_backoff_duration_caps_the_waits(fake_segment: FakeSegment) -> None:
    """Waiting stops once the next wait would take the total past max_total_backoff_duration."""
    fake_segment.respond_with(503, times=10)
    clock = FakeClock()
    with pytest.raises(ServerError) as info:
        post(fake_segment, clock, backoff_factor=1.0, max_retries=10, max_total_backoff_duration=5.0)
    assert sum(clock.waits) <= 5.0
    assert len(clock.waits) == 2  # about 1 and 2 s; the third (about 4 s) would pass 5
    assert info.value.attempts == 3


def test_budget_counts_the_waits(fake_segment: FakeSegment) -> None:
    """total_timeout includes the waits: the attempt that would start after it is not made."""
    fake_segment.respond_with(503, times=10)
    clock = FakeClock()
    with pytest.raises(ServerError):
        post(fake_segment, clock, backoff_factor=2.0, max_retries=10, total_timeout=13.0)
    assert sum(clock.waits) < 13.0
    assert len(fake_segment.requests) == len(clock.waits) + 1


def test_413_is_not_retried_even_with_retry_after(fake_segment: FakeSegment) -> None:
    """A body too large never shrinks: 413 with Retry-After is not retried."""
    fake_segment.respond_with(413, headers={"Retry-After": "1"})
    clock = FakeClock()
    with pytest.raises(APIError) as info:
        post(fake_segment, clock)
    assert getattr(info.value, "status", None) == 413
    assert not getattr(info.value, "retryable", True)
    assert clock.waits == []
    assert len(fake_segment.requests) == 1


def test_connection_refused_is_retried_with_backoff() -> None:
    """No server: every attempt is refused, each retry waits, and a retryable NetworkError ends it."""
    with FakeSegment() as server:
        url = server.url
    clock = FakeClock()
    settings = {"write_key": WRITE_KEY, "host": url, "max_retries": 2, "backoff_factor": 0.5}
    transport = Transport(Options(**settings), user_agent="test", clock=clock)
    with pytest.raises(NetworkError) as info:
        transport.post(lambda: b'{"batch":[]}')
    assert info.value.attempts == 3
    assert len(clock.waits) == 2
    assert info.value.retryable
