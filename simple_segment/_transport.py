"""HTTP delivery: one keep-alive ``requests.Session``, retries, time budget, errors.

The only module that imports requests and urllib3.  It POSTs bodies that a caller
renders afresh for every attempt and never looks inside them.  The retry policy is
``urllib3.util.Retry`` (status sets, exponential backoff with jitter, Retry-After
parsing), driven by the short loop in :meth:`Transport.post`, because each attempt
carries a new body (a fresh ``sentAt``) and an ``X-Retry-Count`` header; the
adapter itself is mounted with retries off.  Failures become :mod:`.errors`
exceptions, with the ``requests`` exception chained as ``__cause__``.
"""

from __future__ import annotations

import base64
import gzip as _gzip
import json
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, cast

import requests
from requests.adapters import HTTPAdapter
from requests.structures import CaseInsensitiveDict
from urllib3.exceptions import InvalidHeader, MaxRetryError
from urllib3.util import Retry

from .errors import APIError, DeliveryError, NetworkError, RateLimitError, ServerError, TransportError

if TYPE_CHECKING:
    from ._options import Options

log = logging.getLogger("simple_segment")

RETRY_STATUSES = frozenset({408, 429, *range(500, 600)} - {501, 505})
"""Answers worth another attempt (SPEC.md section 3)."""
MAX_ERROR_BODY = 65_536
"""Most bytes read from an error answer."""
GZIP_LEVEL = 6


class _Policy(Retry):
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


class Clock(Protocol):
    """Where the transport reads the time and waits: the seam tests replace."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back."""
        ...

    def sleep(self, seconds: float) -> None:
        """Wait ``seconds``."""
        ...


class SystemClock:
    """The real clock: :func:`time.monotonic` and :func:`time.sleep`."""

    monotonic = staticmethod(time.monotonic)
    sleep = staticmethod(time.sleep)


@dataclass(frozen=True)
class Delivered:
    """What a successful :meth:`Transport.post` did."""

    status: int
    attempts: int
    bytes_sent: int
    """Body bytes of the attempt that got through (compressed size with gzip)."""


_live: weakref.WeakSet[Transport] = weakref.WeakSet()


def _forget_sessions_after_fork() -> None:
    # A forked child must not write to the parent's sockets: each transport opens
    # its own connections on first use in the child.
    for transport in list(_live):
        transport._after_fork()  # noqa: SLF001 - module-private hook


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_sessions_after_fork)


class Transport:
    """POSTs request bodies to one URL with retries inside a time budget."""

    def __init__(
        self,
        options: Options,
        *,
        user_agent: str,
        clock: Clock | None = None,
        backoff_max: float = 10.0,
        pool_size: int = 16,
    ) -> None:
        self.url = options.url
        timeout = options.timeout
        self._connect_timeout, self._read_timeout = timeout if isinstance(timeout, tuple) else (timeout, timeout)
        self._total_timeout = options.total_timeout
        self._max_total_backoff = options.max_total_backoff_duration
        self._max_rate_limit_wait = options.max_rate_limit_duration
        self._gzip = options.gzip
        self._pool_size = pool_size
        self._clock: Clock = clock or SystemClock()
        self._policy = _Policy(
            total=options.max_retries,
            connect=None,
            read=None,
            status=None,
            other=None,
            redirect=0,
            status_forcelist=RETRY_STATUSES,
            allowed_methods=None,
            backoff_factor=options.backoff_factor / 2,  # see _Policy.get_backoff_time
            backoff_max=backoff_max,
            backoff_jitter=options.backoff_factor,
            respect_retry_after_header=True,
            raise_on_status=False,
            raise_on_redirect=False,
        )
        token = base64.b64encode(f"{options.write_key}:".encode()).decode("ascii")
        self._headers = {
            "Content-Type": "application/json",
            "User-Agent": user_agent,
            "Authorization": f"Basic {token}",
            "Accept-Encoding": "gzip, deflate",
        }
        if options.gzip:
            self._headers["Content-Encoding"] = "gzip"
        self._lock = threading.Lock()
        self._session: requests.Session | None = None
        self._adapter: HTTPAdapter | None = None
        # Proxy and CA-bundle environment variables are read here, once, not per request.
        settings = requests.Session().merge_environment_settings(
            self.url, dict(options.proxies or {}), None, options.verify, None
        )
        self._proxies: dict[str, str] = dict(settings["proxies"])
        self._verify: bool | str = settings["verify"] if settings["verify"] is not None else True
        _live.add(self)

    def __repr__(self) -> str:
        return f"<Transport {self.url}>"

    # -- sessions -------------------------------------------------------------------

    def _get_adapter(self) -> HTTPAdapter:
        adapter = self._adapter
        if adapter is None:
            with self._lock:
                adapter = self._adapter
                if adapter is None:
                    session = requests.Session()
                    adapter = HTTPAdapter(
                        pool_connections=1, pool_maxsize=self._pool_size, max_retries=Retry(0, read=False)
                    )
                    session.mount("https://", adapter)
                    session.mount("http://", adapter)
                    self._session, self._adapter = session, adapter
        return adapter

    def _after_fork(self) -> None:
        self._lock = threading.Lock()
        self._session = self._adapter = None  # the parent's sockets are left alone, not closed

    def close(self) -> None:
        """Close pooled connections; a later post() opens new ones."""
        with self._lock:
            session, self._session, self._adapter = self._session, None, None
        if session is not None:
            session.close()

    # -- delivery -------------------------------------------------------------------

    def encode(self, body: bytes) -> bytes:
        """Return ``body`` as it goes on the wire (gzip-compressed when gzip is on)."""
        return _gzip.compress(body, GZIP_LEVEL, mtime=0) if self._gzip else body

    def headers(self, attempt: int = 0, *, redact: bool = False) -> dict[str, str]:
        """Return the headers of attempt number ``attempt`` (0 is the first), credentials redacted if asked."""
        headers = dict(self._headers)
        if attempt:
            headers["X-Retry-Count"] = str(attempt)
        if redact:
            headers["Authorization"] = headers["Authorization"].split(" ")[0] + " ***"
        return headers

    def post(self, render: Callable[[], bytes]) -> Delivered:
        """POST ``render()`` until it is accepted, retries run out or the budget ends.

        ``render`` is called once per attempt.  Raises :class:`TransportError` when
        no answer came, :class:`RateLimitError` for 429, :class:`ServerError` for a
        retryable status and :class:`APIError` for any other non-2xx answer.

        The body and the headers (they hold the write key) live only in the frame of
        one attempt, never in this one, which a raised error's traceback shows.
        """
        clock = self._clock
        deadline = clock.monotonic() + self._total_timeout
        retry = self._policy
        waited = 0.0
        attempt = 0
        while True:
            result = self._attempt(render(), attempt, deadline)
            attempt += 1
            if isinstance(result, Delivered):
                return result
            failure, raw, error = result
            if raw is None and error is None:
                raise failure from failure.__cause__
            try:
                retry = retry.increment("POST", self.url, response=raw, error=error)
            except MaxRetryError:
                raise failure from failure.__cause__
            wait = _retry_after(retry, raw) or retry.get_backoff_time()
            if (
                clock.monotonic() + wait >= deadline
                or waited + wait > self._max_total_backoff
                or (isinstance(failure, RateLimitError) and wait > self._max_rate_limit_wait)
            ):
                log.warning("giving up on %s after %d attempts: %s", self.url, attempt, failure)
                raise failure from failure.__cause__
            log.warning("attempt %d to %s failed (%s); retrying in %.2fs", attempt, self.url, failure, wait)
            clock.sleep(wait)
            waited += wait

    def _attempt(
        self, body: bytes, attempt: int, deadline: float
    ) -> Delivered | tuple[DeliveryError, Any, Exception | None]:
        """Make one attempt; return what was delivered, or the failure and what Retry needs to judge it.

        A failure that is not worth retrying comes back with neither a response nor an error.
        """
        body = self.encode(body)
        number = attempt + 1
        try:
            response = self._send(body, self.headers(attempt), deadline)
        except requests.RequestException as exc:
            retryable = _is_retryable_exception(exc)
            kind = NetworkError if retryable else TransportError
            failure: DeliveryError = kind(f"POST {self.url} failed: {exc}", attempts=number)
            failure.__cause__ = _without_traceback(exc)
            return failure, None, (exc if retryable else None)
        status = response.status_code
        text = _read_bounded(response)
        if 200 <= status < 300:  # noqa: PLR2004 - the success range
            log.debug("POST %s: %d on attempt %d", self.url, status, number)
            return Delivered(status, number, len(body))
        failure = _api_error(response, text, number)
        if not self._policy.is_retry("POST", status, has_retry_after="Retry-After" in response.headers):
            return failure, None, None
        return failure, response.raw, None

    def _send(self, body: bytes, headers: dict[str, str], deadline: float) -> requests.Response:
        remaining = deadline - self._clock.monotonic()
        if remaining <= 0:
            raise requests.Timeout("the time budget ran out before the request")
        request = requests.PreparedRequest()
        request.prepare_method("POST")
        request.url = self.url
        # A plain dict with canonical names: the adapter and urllib3 take it as is, and
        # it saves building a CaseInsensitiveDict on every attempt.
        request.headers = cast("CaseInsensitiveDict[str]", {**headers, "Content-Length": str(len(body))})
        request.body = body
        # The session's adapter sends directly: no cookies, no redirects, no per-request
        # environment look-ups (proxies and CA bundle were resolved in __init__).
        return self._get_adapter().send(
            request,
            stream=True,
            timeout=(min(self._connect_timeout, remaining), min(self._read_timeout, remaining)),
            verify=self._verify,
            cert=None,
            proxies=self._proxies,
        )


def _without_traceback(exc: BaseException) -> BaseException:
    """Drop the tracebacks of ``exc`` and its chain: their frames hold the request's headers and body."""
    seen: set[int] = set()
    current: BaseException | None = exc
    stack = [exc]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        current.__traceback__ = None
        stack.extend(e for e in (current.__cause__, current.__context__) if e is not None)
    return exc


def _retry_after(policy: Retry, raw: Any) -> float | None:  # noqa: ANN401 - a urllib3 response
    """Seconds the server asked us to wait (Retry-After, seconds or HTTP-date), if any."""
    if raw is None:
        return None
    try:
        return policy.get_retry_after(raw)
    except InvalidHeader:
        return None  # a malformed header is ignored, as if absent


def _is_retryable_exception(exc: requests.RequestException) -> bool:
    if isinstance(exc, requests.exceptions.SSLError):
        return False  # a certificate does not fix itself between attempts
    return isinstance(exc, (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError))


def _read_bounded(response: requests.Response) -> bytes:
    """Read at most MAX_ERROR_BODY bytes of the answer and free its connection."""
    try:
        data: bytes = response.raw.read(MAX_ERROR_BODY + 1, decode_content=True) or b""
    except Exception:  # noqa: BLE001 - a broken error body must not hide the status
        response.close()
        return b""
    if len(data) > MAX_ERROR_BODY:
        response.close()  # the rest is not read: the connection cannot be reused
        return data[:MAX_ERROR_BODY]
    response.raw.release_conn()
    return data


def _api_error(response: requests.Response, text: bytes, attempts: int) -> APIError:
    status = response.status_code
    code, message = "unknown", text.decode("utf-8", "replace") or (response.reason or "")
    try:
        payload = json.loads(text)
    except ValueError:
        payload = None
    if isinstance(payload, dict):
        code = str(payload.get("code") or code)
        message = str(payload.get("message") or message)
    if 300 <= status < 400:  # noqa: PLR2004 - redirects are not followed for a POST
        code = "redirect"
        location = response.headers.get("Location", "?")
        message = f"{response.reason or 'redirect'} to {location} (redirects are not followed)"
    headers = dict(response.headers)
    if status == 429:  # noqa: PLR2004 - rate limited
        retry_after = _retry_after(_Policy(), response.raw)
        return RateLimitError(
            status, code, message, response, retry_after=retry_after, headers=headers, attempts=attempts
        )
    if status in RETRY_STATUSES:
        return ServerError(status, code, message, response, headers=headers, attempts=attempts)
    return APIError(status, code, message, response, headers=headers, attempts=attempts)
