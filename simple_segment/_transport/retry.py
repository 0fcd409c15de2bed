"""The retry loop, for tracking and token requests alike, over urllib3's ``Retry``.

The policy is ``urllib3.util.Retry`` (status sets, exponential backoff with jitter,
Retry-After parsing), driven by the short loop :func:`retrying`, because each attempt
carries a new body (a fresh ``sentAt``) and an ``X-Retry-Count`` header.  Waits go
through a :class:`~.clock.Clock`, the seam tests replace.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple, TypeVar

from urllib3.exceptions import MaxRetryError
from urllib3.util import Retry

from simple_segment.errors import DeliveryError, RateLimitError

if TYPE_CHECKING:
    from urllib3.response import BaseHTTPResponse

    from simple_segment._options import Options

    from .clock import Clock

log = logging.getLogger("simple_segment")

T = TypeVar("T")

RETRY_STATUSES = frozenset({408, 429, *range(500, 600)} - {501, 505})
"""Answers worth another attempt (SPEC.md section 3)."""
MAX_RETRY_AFTER = 365 * 86_400.0
"""A Retry-After beyond a year is not a sane answer: treated as absent (where urllib3 has not capped it first;
recent 2.x releases cap every value at 6 hours, which is then what is waited and reported)."""


class Policy(Retry):
    """urllib3's Retry, with two changes.

    urllib3 also retries a 413 that carries Retry-After; a body too large never
    shrinks, so only 429 and 503 honour the header for retrying.

    urllib3 waits nothing before the first retry (``factor * 2 ** (errors - 1)``
    starts at the second).  Ours waits before every retry: the policy is made with
    half the factor and counts one error more, so urllib3's own formula, jitter and
    cap give ``backoff_factor``, then twice that, and so on.
    """

    RETRY_AFTER_STATUS_CODES = frozenset({429, 503})

    def get_backoff_time(self) -> float:
        shifted = self.new(history=(*self.history, *self.history[-1:]))
        return Retry.get_backoff_time(shifted)


class Failure(NamedTuple):
    """An attempt that did not get through, and what the retry loop needs to judge it."""

    error: DeliveryError
    response: BaseHTTPResponse | None = None
    """The answer, when its status is worth retrying (Retry reads its Retry-After)."""
    cause: Exception | None = None
    """The exception, when no answer came and that is worth retrying."""
    wait: float | None = None
    """A wait the server asked for some other way (``X-RateLimit-Reset``), instead of backoff."""
    again_now: bool = False
    """Try again at once, not counted as a retry: a token was refreshed, a clock corrected."""

    @property
    def permanent(self) -> bool:
        """Nothing says trying again may help."""
        return self.response is None and self.cause is None and self.wait is None


def policy_of(options: Options, backoff_max: float = 10.0, *, at_least: int = 0) -> Retry:
    """Return the urllib3 Retry policy for ``options`` (statuses, backoff with jitter, Retry-After).

    ``at_least`` raises the number of retries (token requests make three attempts at least).
    """
    return Policy(
        total=max(options.max_retries, at_least),
        connect=None,
        read=None,
        status=None,
        other=None,
        redirect=0,
        status_forcelist=RETRY_STATUSES,
        allowed_methods=None,
        backoff_factor=options.backoff_factor / 2,  # see Policy.get_backoff_time
        backoff_max=backoff_max,
        backoff_jitter=options.backoff_factor,
        respect_retry_after_header=True,
        raise_on_status=False,
        raise_on_redirect=False,
    )


@dataclass(frozen=True)
class Limits:
    """What bounds a retry loop: the policy, the clock and the caps on waiting."""

    policy: Retry
    clock: Clock
    max_total_backoff: float
    max_rate_limit_wait: float

    @classmethod
    def of(cls, options: Options, clock: Clock, *, at_least: int = 0) -> Limits:
        """Return the limits ``options`` set (with at least ``at_least`` retries)."""
        policy = policy_of(options, at_least=at_least)
        return cls(policy, clock, options.max_total_backoff_duration, options.max_rate_limit_duration)


def retrying(
    attempt: Callable[[int, float], T | Failure], url: str, deadline: float, limits: Limits, *, at_once: int = 1
) -> T:
    """Call ``attempt(number, seconds left)`` until it succeeds, retries run out or ``deadline`` passes.

    The one retry loop, for tracking requests and token requests alike: urllib3's Retry
    counts and computes the backoff (or honours Retry-After); a wait is made only when
    it ends before the deadline and within the caps; ``at_once`` failures marked
    ``again_now`` are tried again at once.  Raises the last failure's error.
    """
    clock = limits.clock
    retry = limits.policy
    waited = 0.0
    number = 0
    while True:
        result = attempt(number, deadline - clock.monotonic())
        number += 1
        if not isinstance(result, Failure):
            return result
        failure = result.error
        if result.again_now and at_once > 0:
            at_once -= 1
            continue
        if result.permanent:
            raise failure from failure.__cause__
        try:
            retry = retry.increment("POST", url, response=result.response, error=result.cause)
        except MaxRetryError:
            raise failure from failure.__cause__
        wait = result.wait if result.wait is not None else retry_after_seconds(retry, result.response)
        if wait is None or (wait == 0 and result.wait is None):
            wait = retry.get_backoff_time()
        if (
            clock.monotonic() + wait >= deadline
            or waited + wait > limits.max_total_backoff
            or (isinstance(failure, RateLimitError) and wait > limits.max_rate_limit_wait)
        ):
            log.warning("giving up on %s after %d attempts: %s", url, number, failure)
            raise failure from failure.__cause__
        log.warning("attempt %d to %s failed (%s); retrying in %.2fs", number, url, failure, wait)
        clock.sleep(wait)
        waited += wait


def retry_after_seconds(policy: Retry, response: BaseHTTPResponse | None) -> float | None:
    """Seconds the server asked us to wait (Retry-After, seconds or HTTP-date), if it sanely did.

    A header that does not parse, or asks for a negative or more-than-a-year wait
    (a 5,000-digit number, a date in year 99999), is treated as absent.
    """
    if response is None:
        return None
    try:
        seconds = policy.get_retry_after(response)
    except Exception:  # noqa: BLE001 - whatever a server sends, a bad header means "absent"
        return None
    if seconds is None or not math.isfinite(seconds) or not 0 <= seconds <= MAX_RETRY_AFTER:
        return None
    return float(seconds)
