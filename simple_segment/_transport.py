"""HTTP delivery: a urllib3 connection pool per client, retries, a whole-call deadline, errors.

The only module that imports urllib3 and requests.  It POSTs bodies that a caller
renders afresh for every attempt and never looks inside them.

- Requests go straight through a urllib3 connection pool (a ``ProxyManager``'s pool
  when a proxy applies).  requests does one job here, the one its users expect it to
  do: reading the proxy (``HTTPS_PROXY``, ``NO_PROXY`` ...) and CA-bundle
  (``REQUESTS_CA_BUNDLE``) environment and requests-style ``proxies`` dicts, once,
  when the transport is made; the CA store is requests' (certifi's).
- The retry policy is ``urllib3.util.Retry`` (status sets, exponential backoff with
  jitter, Retry-After parsing), driven by the short loop in :meth:`Transport.post`,
  because each attempt carries a new body (a fresh ``sentAt``) and an
  ``X-Retry-Count`` header.  Waits go through a :class:`Clock`, the seam tests replace.
- ``total_timeout`` is a deadline for the whole call, passed down to the sockets:
  every blocking operation (connect, TLS handshake, each send, each receive) gets a
  timeout no longer than what is left, so a server that drips its answer one byte at
  a time cannot stretch a call.  No thread is involved.  The slack is name
  resolution (``getaddrinfo`` cannot be interrupted) and a few milliseconds.
- Failures become :mod:`.errors` exceptions, retryable or not by one table
  (:func:`_failure`); the urllib3 exception is chained as ``__cause__``, without its
  traceback, whose frames hold the request's headers and body.
"""

from __future__ import annotations

import base64
import functools
import gzip as _gzip
import json
import logging
import math
import os
import socket
import ssl
import threading
import time
import weakref
import zlib
from collections.abc import Callable
from http.client import HTTPException
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol
from urllib.parse import urlsplit

import requests
import requests.utils
import urllib3
from urllib3.connection import HTTPConnection
from urllib3.exceptions import (
    HTTPError,
    LocationValueError,
    MaxRetryError,
    ProxyError,
    ProxySchemeUnsupported,
    SSLError,
)
from urllib3.util import Retry, Timeout
from urllib3.util.ssl_ import create_urllib3_context

from .errors import APIError, DeliveryError, NetworkError, RateLimitError, ServerError, TransportError

if TYPE_CHECKING:
    from urllib3.connectionpool import HTTPConnectionPool
    from urllib3.response import BaseHTTPResponse

    from ._options import Options

log = logging.getLogger("simple_segment")

RETRY_STATUSES = frozenset({408, 429, *range(500, 600)} - {501, 505})
"""Answers worth another attempt (SPEC.md section 3)."""
MAX_ERROR_BODY = 65_536
"""Most bytes read from an answer's body."""
MAX_RETRY_AFTER = 365 * 86_400.0
"""A Retry-After beyond a year is not a sane answer: it is treated as absent."""
GZIP_LEVEL = 6


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


class Delivered(NamedTuple):
    """What a successful :meth:`Transport.post` did."""

    status: int
    attempts: int
    bytes_sent: int
    """Body bytes of the attempt that got through (compressed size with gzip)."""


# -- the deadline, passed down to the sockets ---------------------------------------------


class _Budget(threading.local):
    """The deadline (on :func:`time.monotonic`) of the attempt running on this thread, if any."""

    at: float | None = None


_SLACK = 0.01
"""A failure this close to the deadline is reported as the budget running out."""


_budget = _Budget()


class _DeadlineIO:
    """Socket methods that never block past the current attempt's deadline.

    Every blocking operation first sets the socket's timeout to the smaller of the
    timeout urllib3 asked for (connect or read) and what is left of the budget, so a
    stream of single bytes cannot keep a receive (or a send to a server that reads
    slowly) going after the deadline.  Outside an attempt they behave as usual.
    """

    _wanted: float | None = None

    def settimeout(self, value: float | None) -> None:
        self._wanted = value
        super().settimeout(value)  # type: ignore[misc]

    def _within_budget(self) -> None:
        at = _budget.at
        if at is None:
            return
        left = at - time.monotonic()
        if left <= 0:
            msg = "total_timeout ran out"
            raise TimeoutError(msg)
        wanted = self._wanted
        if wanted is None or left < wanted:
            super().settimeout(left)  # type: ignore[misc]

    def recv(self, *args: Any) -> bytes:  # noqa: ANN401 - socket's own signature
        self._within_budget()
        return super().recv(*args)  # type: ignore[misc, no-any-return]

    def recv_into(self, *args: Any) -> int:  # noqa: ANN401
        self._within_budget()
        return super().recv_into(*args)  # type: ignore[misc, no-any-return]

    def send(self, *args: Any) -> int:  # noqa: ANN401
        self._within_budget()
        return super().send(*args)  # type: ignore[misc, no-any-return]

    def sendall(self, *args: Any) -> None:  # noqa: ANN401
        self._within_budget()
        super().sendall(*args)  # type: ignore[misc]


class _DeadlineSocket(_DeadlineIO, socket.socket):
    """A TCP socket that respects the attempt's deadline."""


class _DeadlineSSLSocket(_DeadlineIO, ssl.SSLSocket):
    """A TLS socket that respects the attempt's deadline (``SSLContext.sslsocket_class``)."""


def _adopt(sock: socket.socket) -> socket.socket:
    """Return ``sock``'s connection as a :class:`_DeadlineSocket` (same descriptor and options)."""
    if isinstance(sock, _DeadlineIO) or type(sock) is not socket.socket:
        return sock  # already ours, or a proxy library's own socket type
    timeout = sock.gettimeout()
    adopted = _DeadlineSocket(sock.family, sock.type, sock.proto, fileno=sock.detach())
    adopted.settimeout(timeout)
    return adopted


@functools.cache
def _with_deadline(base: type[HTTPConnection]) -> type[HTTPConnection]:
    """Return a subclass of urllib3's connection class ``base`` whose sockets respect the deadline."""

    class DeadlineConnection(base):  # type: ignore[valid-type, misc]
        def _new_conn(self) -> socket.socket:
            return _adopt(super()._new_conn())

    DeadlineConnection.__name__ = DeadlineConnection.__qualname__ = f"Deadline{base.__name__}"
    return DeadlineConnection


# -- fork safety ----------------------------------------------------------------------------

_live: weakref.WeakSet[Transport] = weakref.WeakSet()


def _forget_pools_after_fork() -> None:
    # A forked child must not write to the parent's sockets: each transport opens
    # its own connections on first use in the child.
    for transport in list(_live):
        transport._after_fork()  # noqa: SLF001 - module-private hook


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pools_after_fork)


# -- the transport ----------------------------------------------------------------------------


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
        connect, read = options.timeout if isinstance(options.timeout, tuple) else (options.timeout,) * 2
        self._connect_timeout, self._read_timeout = connect, read
        self._timeout = Timeout(connect=connect, read=read)
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
        }
        if options.gzip:
            self._headers["Content-Encoding"] = "gzip"
        # Proxy and CA-bundle environment variables are read here, once, the way requests reads them.
        settings = requests.Session().merge_environment_settings(
            self.url, dict(options.proxies or {}), None, options.verify, None
        )
        self._verify: bool | str = settings["verify"] if settings["verify"] is not None else True
        self._proxies: dict[str, str] = dict(settings["proxies"])
        self._proxy: str | None = requests.utils.select_proxy(self.url, self._proxies) or None
        parts = urlsplit(self.url)
        forwarded = self._proxy is not None and parts.scheme == "http" and not self._proxy.startswith("socks")
        # Through a forwarding proxy the request line carries the absolute URL; else the path.
        self._target = self.url if forwarded else parts.path
        self._lock = threading.Lock()
        self._manager: urllib3.PoolManager | None = None
        self._pool: HTTPConnectionPool | None = None
        _live.add(self)

    def __repr__(self) -> str:
        return f"<Transport {self.url}>"

    # -- connections ------------------------------------------------------------------

    def _get_pool(self) -> HTTPConnectionPool:
        pool = self._pool
        if pool is None:
            with self._lock:
                pool = self._pool
                if pool is None:
                    self._manager = manager = self._make_manager()
                    pool = manager.connection_from_url(self.url)
                    pool.ConnectionCls = _with_deadline(pool.ConnectionCls)
                    self._pool = pool
        return pool

    def _make_manager(self) -> urllib3.PoolManager:
        options: dict[str, Any] = {"num_pools": 2, "maxsize": self._pool_size, "block": False, "retries": False}
        if self.url.startswith("https:") or (self._proxy or "").startswith("https:"):
            options.update(_tls_options(self._verify))
        proxy = self._proxy
        if proxy is None:
            return urllib3.PoolManager(**options)
        if "://" not in proxy:
            proxy = f"http://{proxy}"  # requests' reading of a bare "host:port"
        if proxy.lower().startswith("socks"):
            try:
                from urllib3.contrib.socks import SOCKSProxyManager  # noqa: PLC0415 - needs PySocks, rarely used
            except ImportError as exc:  # pragma: no cover - depends on PySocks being absent
                msg = f"the proxy {_redacted(proxy)} needs PySocks: pip install 'requests[socks]'"
                raise ProxySchemeUnsupported(msg) from exc
            return SOCKSProxyManager(proxy, **options)
        user, password = requests.utils.get_auth_from_url(proxy)
        headers = urllib3.make_headers(proxy_basic_auth=f"{user}:{password}") if user else None
        return urllib3.ProxyManager(proxy, proxy_headers=headers, **options)

    def _after_fork(self) -> None:
        self._lock = threading.Lock()
        self._manager = self._pool = None  # the parent's sockets are left alone, not closed

    def close(self) -> None:
        """Close pooled connections; a later post() opens new ones."""
        with self._lock:
            manager, self._manager, self._pool = self._manager, None, None
        if manager is not None:
            manager.clear()

    # -- requests ------------------------------------------------------------------------

    def encode(self, body: bytes) -> bytes:
        """Return ``body`` as it goes on the wire (gzip-compressed when gzip is on)."""
        return _gzip.compress(body, GZIP_LEVEL, mtime=0) if self._gzip else body

    def headers(self, attempt: int = 0, *, redact: bool = False) -> dict[str, str]:
        """Return the headers of attempt number ``attempt`` (0 is the first), credentials redacted if asked."""
        if not (attempt or redact):
            return self._headers  # urllib3 copies before adding to it
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
        host = urlsplit(self.url).netloc
        return {
            "Host": host,
            "Accept-Encoding": "identity",
            **self.headers(redact=True),
            "Content-Length": str(len(wire_body)),
        }

    def post(self, render: Callable[[], bytes]) -> Delivered:
        """POST ``render()`` until it is accepted, retries run out or the budget ends.

        ``render`` is called once per attempt.  Raises :class:`NetworkError` when no
        answer came (retryable) and :class:`TransportError` when none will come (TLS,
        URL); :class:`RateLimitError` for 429, :class:`ServerError` for a retryable
        status and :class:`APIError` for any other non-2xx answer.

        The body and the headers (they hold the write key) live only in the frame of
        one attempt, never in this one, which a raised error's traceback shows.
        """
        clock = self._clock
        deadline = clock.monotonic() + self._total_timeout
        retry = self._policy
        waited = 0.0
        attempt = 0
        while True:
            result = self._attempt(render(), attempt, deadline - clock.monotonic())
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
        self, body: bytes, attempt: int, remaining: float
    ) -> Delivered | tuple[DeliveryError, BaseHTTPResponse | None, Exception | None]:
        """Make one attempt within ``remaining`` seconds.

        Returns what was delivered, or the failure with what Retry needs to judge it (the
        response for a status, the error for no answer); a failure not worth retrying
        comes back with neither.
        """
        number = attempt + 1
        failure: DeliveryError
        if remaining <= 0:
            failure = NetworkError(f"POST {self.url}: total_timeout ran out before attempt {number}", attempts=number)
            return failure, None, None
        body = self.encode(body)
        _budget.at = ends = time.monotonic() + remaining
        try:
            response = self._send(body, self.headers(attempt), remaining)
            status = response.status
            text = _read_bounded(response)
        except (HTTPError, HTTPException, OSError, ValueError) as exc:
            return _failure(exc, self.url, number, ran_out=time.monotonic() >= ends - _SLACK)
        finally:
            _budget.at = None
        if 200 <= status < 300:  # noqa: PLR2004 - the success range
            log.debug("POST %s: %d on attempt %d", self.url, status, number)
            return Delivered(status, number, len(body))
        failure = _api_error(response, text, number)
        if not self._policy.is_retry("POST", status, has_retry_after="Retry-After" in response.headers):
            return failure, None, None
        return failure, response, None

    def _send(self, body: bytes, headers: dict[str, str], remaining: float) -> BaseHTTPResponse:
        timeout = self._timeout
        if remaining < max(self._connect_timeout, self._read_timeout):
            timeout = Timeout(connect=min(self._connect_timeout, remaining), read=min(self._read_timeout, remaining))
        return self._get_pool().urlopen(
            "POST",
            self._target,
            body=body,
            headers=headers,
            retries=False,
            redirect=False,
            assert_same_host=False,
            timeout=timeout,
            preload_content=False,
            decode_content=False,
        )


def _tls_options(verify: bool | str) -> dict[str, Any]:  # noqa: FBT001 - requests' verify
    """Return the pool options for TLS: requests' CA store (or ``verify``'s), sockets that keep the deadline."""
    context = create_urllib3_context()
    if verify is False:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    else:
        location = requests.utils.DEFAULT_CA_BUNDLE_PATH if verify is True else verify
        if Path(location).is_dir():
            context.load_verify_locations(capath=location)
        else:
            context.load_verify_locations(cafile=location)
    context.sslsocket_class = _DeadlineSSLSocket
    return {"ssl_context": context, "cert_reqs": "CERT_NONE" if verify is False else "CERT_REQUIRED"}


def _redacted(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    return f"{scheme}{sep}***@{rest.rpartition('@')[2]}" if "@" in rest else url


# -- answers and failures -------------------------------------------------------------------


def _failure(
    exc: BaseException, url: str, attempts: int, *, ran_out: bool
) -> tuple[DeliveryError, None, Exception | None]:
    """Map an exception of one attempt to our error: retryable or not, by one table.

    ========================================  ==========================
    what happened                              raised as
    ========================================  ==========================
    the time budget ran out                    NetworkError (retryable)
    refused, reset, dropped, timed out, DNS,   NetworkError (retryable)
    a garbled or truncated answer
    a proxy that could not be reached          NetworkError (retryable)
    TLS: certificate rejected, TLS not spoken  TransportError (permanent)
    an unusable URL or proxy setting           TransportError (permanent)
    ========================================  ==========================

    A TLS handshake cut short by the peer (EOF, reset) is a network failure.  The
    exception's traceback is dropped: its frames hold the request's headers and body.
    """
    reason = _describe(exc)
    if ran_out:
        reason = f"total_timeout ran out before the answer was complete ({reason})"
    retryable = _is_retryable(exc)
    kind = NetworkError if retryable else TransportError
    failure = kind(f"POST {url} failed: {reason}", attempts=attempts)
    failure.__cause__ = _without_traceback(exc)
    return failure, None, (exc if retryable and isinstance(exc, Exception) else None)


def _is_retryable(exc: BaseException) -> bool:
    if isinstance(exc, ProxyError):
        inner = exc.original_error if isinstance(exc.original_error, BaseException) else None
        return inner is None or _is_retryable(inner)
    if isinstance(exc, (LocationValueError, ProxySchemeUnsupported)):
        return False
    if isinstance(exc, (SSLError, ssl.SSLError, ssl.CertificateError)):
        cause = _innermost(exc)
        return isinstance(cause, (ssl.SSLEOFError, ssl.SSLZeroReturnError, ConnectionError, TimeoutError))
    return isinstance(exc, (HTTPError, HTTPException, OSError))


def _innermost(exc: BaseException) -> BaseException:
    seen = {id(exc)}
    while True:
        inner = exc.args[0] if exc.args and isinstance(exc.args[0], BaseException) else exc.__cause__
        if inner is None or id(inner) in seen:
            return exc
        seen.add(id(inner))
        exc = inner


def _describe(exc: BaseException) -> str:
    try:
        text = str(exc)
    except Exception:  # noqa: BLE001 - describing an error must not raise another
        text = ""
    return f"{type(exc).__name__}: {text[:300]}" if text else type(exc).__name__


def _without_traceback(exc: BaseException) -> BaseException:
    """Drop the tracebacks of ``exc`` and its chain: their frames hold the request's headers and body."""
    seen: set[int] = set()
    stack = [exc]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        current.__traceback__ = None
        stack.extend(e for e in (current.__cause__, current.__context__) if e is not None)
        stack.extend(arg for arg in current.args if isinstance(arg, BaseException))
    return exc


def _retry_after(policy: Retry, response: BaseHTTPResponse | None) -> float | None:
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


def _read_bounded(response: BaseHTTPResponse) -> bytes:
    """Read at most MAX_ERROR_BODY bytes of the answer and free its connection.

    A longer answer is not read further and its connection is closed (it cannot be
    reused); a compressed one is inflated to at most MAX_ERROR_BODY bytes.
    """
    try:
        data = response.read(MAX_ERROR_BODY + 1, decode_content=False)
    except Exception:
        response.close()
        response.release_conn()
        raise
    if len(data) > MAX_ERROR_BODY:
        response.close()
        data = data[:MAX_ERROR_BODY]
    response.release_conn()
    encoding = response.headers.get("Content-Encoding", "").strip().lower()
    if encoding in ("gzip", "x-gzip", "deflate") and data:
        try:
            data = zlib.decompressobj(zlib.MAX_WBITS | 32).decompress(data, MAX_ERROR_BODY)
        except zlib.error:
            return b""
    return data


def _api_error(response: BaseHTTPResponse, text: bytes, attempts: int) -> APIError:
    status = response.status
    reason = response.reason or ""
    code, message = "unknown", text.decode("utf-8", "replace") or reason
    try:
        payload = json.loads(text)
    except (ValueError, RecursionError):
        payload = None
    if isinstance(payload, dict):
        code = str(payload.get("code") or code)
        message = str(payload.get("message") or message)
    if 300 <= status < 400:  # noqa: PLR2004 - redirects are not followed for a POST
        code = "redirect"
        location = response.headers.get("Location", "?")
        message = f"{reason or 'redirect'} to {location} (redirects are not followed)"
    headers = dict(response.headers)
    if status == 429:  # noqa: PLR2004 - rate limited
        retry_after = _retry_after(_Policy(), response)
        return RateLimitError(
            status, code, message, response, headers=headers, attempts=attempts, retry_after=retry_after
        )
    if status in RETRY_STATUSES:
        return ServerError(status, code, message, response, headers=headers, attempts=attempts)
    return APIError(status, code, message, response, headers=headers, attempts=attempts)
