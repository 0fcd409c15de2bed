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
  (:func:`failure_of`); the urllib3 exception is chained as ``__cause__``, without its
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
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.client import HTTPException
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, TypeVar
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

from ._options import redact_url
from ._wire import describe
from .errors import (
    APIError,
    ConfigurationError,
    DeliveryError,
    NetworkError,
    RateLimitError,
    ServerError,
    TransportError,
)

if TYPE_CHECKING:
    from urllib3.connectionpool import HTTPConnectionPool
    from urllib3.response import BaseHTTPResponse

    from ._options import Options

log = logging.getLogger("simple_segment")

T = TypeVar("T")
S = TypeVar("S", bound=socket.socket)

RETRY_STATUSES = frozenset({408, 429, *range(500, 600)} - {501, 505})
"""Answers worth another attempt (SPEC.md section 3)."""
MAX_ERROR_BODY = 65_536
"""Most bytes read from an answer's body."""
MAX_ERROR_TEXT = 500
"""Most characters of an error answer kept as an error's ``message``."""
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


_NO_RETRIES = Retry(total=False, redirect=False)
"""urllib3 itself never retries: every attempt is ours.  (Made once: ``retries=False`` builds one per request.)"""

_SLACK = 0.01
"""A failure this close to the deadline is reported as the budget running out."""


_budget = _Budget()


def _within_budget(sock: socket.socket) -> None:
    """Lower ``sock``'s timeout to what is left of this thread's attempt, if that is less.

    Called before every blocking send and receive, so a stream of single bytes cannot
    keep a receive (or a send to a server that reads slowly) going after the deadline:
    each one waits no longer than what is left.  urllib3 sets its own (connect or
    read) timeout at each phase; a lower budget wins.  Outside an attempt, nothing.
    """
    at = _budget.at
    if at is not None:
        left = at - time.monotonic()
        if left <= 0:
            msg = "total_timeout ran out"
            raise TimeoutError(msg)
        timeout = sock.gettimeout()
        if timeout is None or left < timeout:
            sock.settimeout(left)


def _deadline_class(base: type[S], doc: str) -> type[S]:
    """Return a subclass of the socket class ``base`` whose blocking operations keep the deadline.

    (For TLS sockets, ``sendall`` is a loop of ``send`` in Python: each one is checked.)
    The reader http.client makes on the socket is kept, so a response that urllib3
    refuses can be closed at once (:meth:`close_reader`).
    """
    recv_into, recv, send, sendall, makefile = base.recv_into, base.recv, base.send, base.sendall, base.makefile

    class DeadlineSocket(base):  # type: ignore[valid-type, misc]
        _reader: Any = None

        def recv_into(self, *args: Any) -> int:  # noqa: ANN401 - socket's own signature
            _within_budget(self)
            return recv_into(self, *args)

        def recv(self, *args: Any) -> bytes:  # noqa: ANN401
            _within_budget(self)
            return recv(self, *args)

        def send(self, *args: Any) -> int:  # noqa: ANN401
            _within_budget(self)
            return send(self, *args)

        def sendall(self, *args: Any) -> None:  # noqa: ANN401
            _within_budget(self)
            sendall(self, *args)

        def makefile(self, *args: Any, **kwargs: Any) -> Any:  # noqa: ANN401
            self._reader = makefile(self, *args, **kwargs)
            return self._reader

    DeadlineSocket.__name__ = DeadlineSocket.__qualname__ = f"Deadline{base.__name__}"
    DeadlineSocket.__doc__ = doc
    return DeadlineSocket


def _close_reader(sock: socket.socket) -> None:
    """Close the reader http.client made on ``sock`` (urllib3 may drop that one unclosed)."""
    reader = getattr(sock, "_reader", None)
    if reader is not None:
        sock._reader = None  # type: ignore[attr-defined]  # noqa: SLF001 - our socket class's own slot
        reader.close()


_DeadlineSocket = _deadline_class(socket.socket, "A TCP socket that keeps the attempt's deadline.")
_DeadlineSSLSocket = _deadline_class(
    ssl.SSLSocket, "A TLS socket that keeps the attempt's deadline (``SSLContext.sslsocket_class``)."
)


def _adopt(sock: socket.socket) -> socket.socket:
    """Return ``sock``'s connection as a :class:`_DeadlineSocket` (same descriptor and options)."""
    if type(sock) is not socket.socket:
        return sock  # already ours, or a proxy library's own socket type
    timeout = sock.gettimeout()
    adopted = _DeadlineSocket(sock.family, sock.type, sock.proto, fileno=sock.detach())
    adopted.settimeout(timeout)
    return adopted


class _OurConnection:
    """What our urllib3 connections add: deadline sockets, one write per request, no stray reader.

    Mixed into urllib3's connection class by :func:`_with_deadline`.  Its sockets keep
    the attempt's deadline (:func:`_adopt`; TLS sockets through :func:`_tls_options`).
    A request goes out in one write: http.client writes the headers, then urllib3 the
    body, which costs a second TCP segment and a second read on the server (about a
    tenth of a call on loopback); the headers are held and sent with the body.
    """

    _hold_next = False
    _held: bytes | None = None
    sock: socket.socket | None

    def _new_conn(self) -> socket.socket:
        return _adopt(super()._new_conn())  # type: ignore[misc]

    def endheaders(self, *args: Any, **kwargs: Any) -> None:  # noqa: ANN401 - http.client's own
        self._hold_next, self._held = True, None  # the write it makes now is the headers
        super().endheaders(*args, **kwargs)  # type: ignore[misc]

    def send(self, data: Any) -> None:  # noqa: ANN401 - http.client's own
        if self._hold_next and isinstance(data, bytes):
            self._hold_next, self._held = False, data
            return
        self._hold_next = False
        held, self._held = self._held, None
        if held is not None:
            if isinstance(data, bytes):
                data = held + data
            else:
                super().send(held)  # type: ignore[misc]
        super().send(data)  # type: ignore[misc]

    def getresponse(self) -> Any:  # noqa: ANN401 - urllib3's own
        held, self._hold_next, self._held = self._held, False, None
        if held is not None:  # a request without a body: its headers go now
            super().send(held)  # type: ignore[misc]
        sock = self.sock
        try:
            return super().getresponse()  # type: ignore[misc]
        except BaseException:
            # urllib3 can refuse an answer (a malformed header) after http.client read it.
            # When the answer ends its connection, http.client no longer holds it and
            # nobody would close its reader until GC: close it now.  (When it does hold
            # it, closing the connection closes the reader too.)
            if sock is not None and getattr(self, "_HTTPConnection__response", None) is None:
                _close_reader(sock)
            raise

    def close(self) -> None:
        self._hold_next, self._held = False, None
        super().close()  # type: ignore[misc]


@functools.cache
def _with_deadline(base: type[HTTPConnection]) -> type[HTTPConnection]:
    """Return urllib3's connection class ``base`` with :class:`_OurConnection` mixed in."""
    return type(f"Deadline{base.__name__}", (_OurConnection, base), {})


# -- one URL's connections ----------------------------------------------------------------------

_live: weakref.WeakSet[Endpoint] = weakref.WeakSet()


def _forget_pools_after_fork() -> None:
    # A forked child must not write to the parent's sockets: each endpoint opens
    # its own connections on first use in the child.
    for endpoint in list(_live):
        endpoint._after_fork()  # noqa: SLF001 - module-private hook


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pools_after_fork)


class Answer(NamedTuple):
    """An HTTP answer, its body read (at most :data:`MAX_ERROR_BODY` bytes)."""

    status: int
    response: BaseHTTPResponse
    """The urllib3 response (headers, reason); its connection is already released."""
    body: bytes
    """The body as it came (we ask for no compression, but a server may send it anyway)."""

    @property
    def text(self) -> bytes:
        """The body, inflated (to at most :data:`MAX_ERROR_BODY` bytes) when it came compressed."""
        encoding = self.response.headers.get("Content-Encoding", "").strip().lower()
        if encoding not in ("gzip", "x-gzip", "deflate") or not self.body:
            return self.body
        try:
            return zlib.decompressobj(zlib.MAX_WBITS | 32).decompress(self.body, MAX_ERROR_BODY)
        except zlib.error:
            return b""


class Endpoint:
    """The connections to one URL: a urllib3 pool, proxy and TLS settings read once, fork-safe.

    Proxy and CA-bundle environment variables are read when the endpoint is made, the
    way requests reads them (``HTTPS_PROXY``, ``NO_PROXY``, ``REQUESTS_CA_BUNDLE``
    ...).  Connections are made on first use, and anew in a forked child.
    """

    def __init__(
        self,
        url: str,
        *,
        proxies: Mapping[str, str | None] | None,
        verify: bool | str,
        timeout: float | tuple[float, float],
        pool_size: int = 16,
    ) -> None:
        self.url = url
        connect, read = timeout if isinstance(timeout, tuple) else (timeout, timeout)
        self._connect_timeout, self._read_timeout = connect, read
        self._longest_timeout = max(connect, read)
        self._timeout = Timeout(connect=connect, read=read)
        self._pool_size = pool_size
        given: dict[str, Any] = dict(proxies or {})  # a None value: no proxy for that scheme (requests drops it)
        settings = requests.Session().merge_environment_settings(url, given, None, verify, None)
        self._verify: bool | str = settings["verify"] if settings["verify"] is not None else True
        if isinstance(self._verify, str) and not Path(self._verify).exists():
            # Not a failure to retry later: the file is not there (REQUESTS_CA_BUNDLE or CURL_CA_BUNDLE).
            reason = f"the CA bundle {self._verify!r} (from REQUESTS_CA_BUNDLE or CURL_CA_BUNDLE) does not exist"
            raise ConfigurationError("verify", reason)
        self.proxies: dict[str, str] = dict(settings["proxies"])
        """The proxies that apply, from the option and the environment."""
        self._proxy: str | None = requests.utils.select_proxy(url, self.proxies) or None
        parts = urlsplit(url)
        forwarded = self._proxy is not None and parts.scheme == "http" and not self._proxy.startswith("socks")
        # Through a forwarding proxy the request line carries the absolute URL; else the path.
        self._target = url if forwarded else parts.path
        self._lock = threading.Lock()
        self._manager: urllib3.PoolManager | None = None
        self._pool: HTTPConnectionPool | None = None
        _live.add(self)

    def __repr__(self) -> str:
        return f"<Endpoint {self.url}>"

    def exchange(self, body: bytes, headers: Mapping[str, str], remaining: float) -> Answer:
        """POST ``body`` and read the answer, all within ``remaining`` seconds.

        Raises what urllib3, http.client or the socket raise (see :func:`failure_of`).
        """
        timeout = self._timeout
        if remaining < self._longest_timeout:
            timeout = Timeout(connect=min(self._connect_timeout, remaining), read=min(self._read_timeout, remaining))
        _budget.at = time.monotonic() + remaining
        try:
            response = (self._pool or self._get_pool()).urlopen(
                "POST",
                self._target,
                body=body,
                headers=headers,
                retries=_NO_RETRIES,
                redirect=False,
                assert_same_host=False,
                timeout=timeout,
                preload_content=False,
                decode_content=False,
            )
            return Answer(response.status, response, _read_bounded(response))
        finally:
            _budget.at = None

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
                msg = f"the proxy {redact_url(proxy)} needs PySocks: pip install 'requests[socks]'"
                raise ProxySchemeUnsupported(msg) from exc
            return SOCKSProxyManager(proxy, **options)
        user, password = requests.utils.get_auth_from_url(proxy)
        headers = urllib3.make_headers(proxy_basic_auth=f"{user}:{password}") if user else None
        return urllib3.ProxyManager(proxy, proxy_headers=headers, **options)

    def _after_fork(self) -> None:
        self._lock = threading.Lock()
        self._manager = self._pool = None  # the parent's sockets are left alone, not closed

    def close(self) -> None:
        """Close pooled connections; a later exchange opens new ones."""
        with self._lock:
            manager, self._manager, self._pool = self._manager, None, None
        if manager is not None:
            manager.clear()


NETWORK_FAILURES = (HTTPError, HTTPException, OSError, ValueError)
"""What sending a request and reading its answer may raise (urllib3, http.client, sockets): see :func:`failure_of`."""


# -- retries ------------------------------------------------------------------------------------


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
    return _Policy(
        total=max(options.max_retries, at_least),
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
        wait = result.wait if result.wait is not None else _retry_after(retry, result.response)
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


# -- the transport ----------------------------------------------------------------------------


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
    """POSTs request bodies to one URL with retries inside a time budget."""

    def __init__(
        self,
        options: Options,
        *,
        user_agent: str,
        clock: Clock | None = None,
        authorization: Authorization | None = None,
        pool_size: int = 16,
    ) -> None:
        self.url = options.url
        self._endpoint = Endpoint(
            options.url, proxies=options.proxies, verify=options.verify, timeout=options.timeout, pool_size=pool_size
        )
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
        except NETWORK_FAILURES as exc:
            return failure_of(exc, self.url, attempts, ran_out=time.monotonic() >= ends - _SLACK)
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
        error = _api_error(answer.response, answer.text, attempts)
        if self._authorization is not None and answer.status in REJECTED_TOKEN_STATUSES:
            self._authorization.rejected(headers["Authorization"])
            return Failure(error, again_now=True)
        has_retry_after = "Retry-After" in answer.response.headers
        if not self._limits.policy.is_retry("POST", answer.status, has_retry_after=has_retry_after):
            return Failure(error)
        return Failure(error, response=answer.response)


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


# -- answers and failures -------------------------------------------------------------------


def failure_of(exc: BaseException, url: str, attempts: int, *, ran_out: bool) -> Failure:
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
    reason = describe(exc, 300)
    if ran_out:
        reason = f"total_timeout ran out before the answer was complete ({reason})"
    retryable = _is_retryable(exc)
    kind = NetworkError if retryable else TransportError
    error = kind(f"POST {url} failed: {reason}", attempts=attempts)
    error.__cause__ = without_traceback(exc)
    return Failure(error, cause=exc if retryable and isinstance(exc, Exception) else None)


def _is_retryable(exc: BaseException) -> bool:
    if isinstance(exc, ProxyError):
        inner = exc.original_error if isinstance(exc.original_error, BaseException) else None
        return inner is None or _is_retryable(inner)
    if isinstance(exc, (LocationValueError, ProxySchemeUnsupported)):
        return False
    if isinstance(exc, (SSLError, ssl.SSLError, ssl.CertificateError)):
        cause = _innermost(exc)
        return isinstance(cause, (ssl.SSLEOFError, ssl.SSLZeroReturnError, ConnectionError, TimeoutError))
    return isinstance(exc, (HTTPError, HTTPException, OSError, ValueError))  # ValueError: a garbled answer


def _innermost(exc: BaseException) -> BaseException:
    seen = {id(exc)}
    while True:
        inner = exc.args[0] if exc.args and isinstance(exc.args[0], BaseException) else exc.__cause__
        if inner is None or id(inner) in seen:
            return exc
        seen.add(id(inner))
        exc = inner


def without_traceback(exc: BaseException | None) -> BaseException | None:
    """Drop the tracebacks of ``exc`` and its chain: their frames hold the request's headers and body."""
    if exc is None:
        return None
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
    reused).  The response is closed either way, so an answer that ends its
    connection (no Content-Length) leaves no reader open.  The bytes are as sent:
    :attr:`Answer.text` inflates a compressed one.
    """
    try:
        data = response.read(MAX_ERROR_BODY + 1, decode_content=False)
    except Exception:
        response.close()
        response.release_conn()
        raise
    if len(data) > MAX_ERROR_BODY:
        response.close()  # the rest is not read: the connection cannot be reused
        data = data[:MAX_ERROR_BODY]
    response.release_conn()
    response.close()  # frees http.client's reader; a reusable connection stays in the pool
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
    if len(message) > MAX_ERROR_TEXT:  # it is in str(error) and in every warning line
        message = message[:MAX_ERROR_TEXT] + "..."
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
