"""The Transport: POST a body rendered afresh per attempt, with retries, a whole-call deadline and our errors.

It POSTs bodies that a caller renders afresh for every attempt and never looks inside
them.  ``total_timeout`` is a deadline for the whole call, passed down to the sockets
(:mod:`._httpclient`): every blocking operation gets a timeout no longer than what is
left, so a server that drips its answer one byte at a time cannot stretch a call; the
addresses a name resolves to share the budget, and so do the TLS handshake and an
``https://`` proxy's tunnel.  No thread is involved.  The slack is name resolution
(``getaddrinfo`` cannot be interrupted), a SOCKS proxy's own sockets (they get the
per-attempt timeout) and a few milliseconds.  Failures become :mod:`..errors` exceptions,
retryable or not by one table (:func:`~.failures.failure_of`).
"""

from __future__ import annotations

import base64
import gzip as _gzip
import logging
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, NamedTuple, Protocol
from urllib.parse import urlsplit

from simple_segment.errors import DeliveryError, NetworkError

from .clock import Clock, SystemClock
from .failures import api_error, failure_of
from .retry import Failure, Limits, retrying
from .seam import endpoint_for

if TYPE_CHECKING:
    from simple_segment._options import Options

    from .endpoint import Answer
    from .seam import HTTPTransport

log = logging.getLogger("simple_segment")

GZIP_LEVEL = 6

_SLACK = 0.01
"""A failure this close to the deadline is reported as the budget running out."""


class Delivered(NamedTuple):
    """What a successful :meth:`Transport.post` did."""

    status: int
    attempts: int
    bytes_sent: int
    """Body bytes of the attempt that got through (compressed size with gzip)."""


class Authorization(Protocol):
    """Where the ``Authorization`` header of each attempt comes from (OAuth tokens)."""

    def header(self, deadline: float) -> str:
        """Return the header value to send, getting a token before ``deadline`` (on the transport's clock)."""
        ...

    def rejected(self, header: str) -> None:
        """Forget ``header`` (the tracking API refused it) if it is still the current one."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


REJECTED_TOKEN_STATUSES = frozenset({400, 401, 403, 511})
"""Tracking API answers that make an OAuth token be dropped and fetched again (SPEC.md section 6)."""


class Transport:
    """POSTs request bodies to one URL with retries inside a time budget.

    The requests go to an :class:`~.endpoint.Endpoint` (the network) or, when ``seam``
    is given, to that :class:`~.seam.HTTPTransport` (``Client(transport=...)``); the
    retries, deadline and errors are the same either way.
    """

    def __init__(  # noqa: PLR0913 - keyword-only seams
        self,
        options: Options,
        *,
        user_agent: str,
        clock: Clock | None = None,
        authorization: Authorization | None = None,
        pool_size: int = 16,
        seam: HTTPTransport | None = None,
    ) -> None:
        self.url = options.url
        self._endpoint = endpoint_for(options.url, options, seam, pool_size=pool_size)
        self._total_timeout = options.total_timeout
        self._gzip = options.gzip
        self._clock: Clock = clock or SystemClock()
        self._limits = Limits.of(options, self._clock)
        self._authorization = authorization
        token = base64.b64encode(f"{options.write_key}:".encode()).decode("ascii")
        self._headers = {
            "Content-Type": "application/json",
            "User-Agent": user_agent,
            "Authorization": f"Basic {token}" if authorization is None else "Bearer ***",
        }
        if options.gzip:
            self._headers["Content-Encoding"] = "gzip"

    def __repr__(self) -> str:
        return f"<Transport {self.url}>"

    def close(self) -> None:
        """Close pooled connections; a later post() opens new ones."""
        self._endpoint.close()
        if self._authorization is not None:
            self._authorization.close()

    def encode(self, body: bytes) -> bytes:
        """Return ``body`` as it goes on the wire (gzip-compressed when gzip is on)."""
        return _gzip.compress(body, GZIP_LEVEL, mtime=0) if self._gzip else body

    def headers(self, attempt: int = 0, *, redact: bool = False) -> dict[str, str]:
        """Return the headers of attempt number ``attempt`` (0 is the first), credentials redacted if asked.

        Without OAuth the first attempt's are shared, not copied (urllib3 copies before
        adding to them); with OAuth, ``Authorization`` is filled in per attempt.
        """
        if not (attempt or redact):
            return self._headers
        headers = dict(self._headers)
        if attempt:
            headers["X-Retry-Count"] = str(attempt)
        if redact:
            headers["Authorization"] = headers["Authorization"].split(" ")[0] + " ***"
        return headers

    def wire_headers(self, wire_body: bytes) -> dict[str, str]:
        """Return every header the first attempt with ``wire_body`` sends, in order, credentials redacted.

        Those http.client adds (``Host``, ``Accept-Encoding: identity``) included.
        """
        return {
            "Host": urlsplit(self.url).netloc,
            "Accept-Encoding": "identity",
            **self.headers(redact=True),
            "Content-Length": str(len(wire_body)),
        }

    def post(self, render: Callable[[], bytes]) -> Delivered:
        """POST ``render()`` until it is accepted, retries run out or the budget ends.

        ``render`` is called once per attempt, just before the request goes out (after
        any token request), so ``sentAt`` is fresh.  Raises :class:`NetworkError` when
        no answer came (retryable) and :class:`TransportError` when none will come (TLS,
        URL); :class:`RateLimitError` for 429, :class:`ServerError` for a retryable
        status and :class:`APIError` for any other non-2xx answer.  With OAuth, a
        rejected token is dropped and the request sent once more at once with a new one;
        the token requests count against the same budget.

        The body and the headers (they hold the write key or a token) live only in the
        frame of one attempt, never in the frames a raised error's traceback shows.
        """
        deadline = self._clock.monotonic() + self._total_timeout
        return retrying(
            lambda number, _remaining: self._attempt(render, number, deadline), self.url, deadline, self._limits
        )

    def _attempt(self, render: Callable[[], bytes], number: int, deadline: float) -> Delivered | Failure:
        """Make attempt ``number`` (0 is the first), ending by ``deadline`` (on the transport's clock)."""
        attempts = number + 1
        headers = self._headers_for(number, deadline)
        if isinstance(headers, Failure):
            return headers
        remaining = deadline - self._clock.monotonic()  # what the token request left
        if remaining <= 0:
            error = NetworkError(f"POST {self.url}: total_timeout ran out before attempt {attempts}", attempts=attempts)
            return Failure(error)
        body = self.encode(render())
        ends = time.monotonic() + remaining
        try:
            answer = self._endpoint.exchange(body, headers, remaining)
        except self._endpoint.failures as exc:
            return failure_of(exc, self.url, attempts, ran_out=time.monotonic() >= ends - _SLACK)
        except BaseException:
            del body, headers  # the caller's own exception: its traceback must not show them
            raise
        if 200 <= answer.status < 300:  # noqa: PLR2004 - the success range
            log.debug("POST %s: %d on attempt %d", self.url, answer.status, attempts)
            return Delivered(answer.status, attempts, len(body))
        return self._judge(answer, attempts, headers)

    def _headers_for(self, number: int, deadline: float) -> dict[str, str] | Failure:
        headers = self.headers(number)
        authorization = self._authorization
        if authorization is None:
            return headers
        try:
            return {**headers, "Authorization": authorization.header(deadline)}
        except DeliveryError as exc:  # the token endpoint's own retries are spent
            exc.__traceback__ = None  # its frames held the assertion
            return Failure(exc)

    def _judge(self, answer: Answer, attempts: int, headers: Mapping[str, str]) -> Failure:
        error = api_error(answer.response, answer.text, attempts)
        if self._authorization is not None and answer.status in REJECTED_TOKEN_STATUSES:
            self._authorization.rejected(headers["Authorization"])
            return Failure(error, again_now=True)
        has_retry_after = "Retry-After" in answer.response.headers
        if not self._limits.policy.is_retry("POST", answer.status, has_retry_after=has_retry_after):
            return Failure(error)
        return Failure(error, response=answer.response)
