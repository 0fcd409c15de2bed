"""One URL's connections: a urllib3 pool, proxy and TLS settings read once, fork-safe.

Requests go straight through a urllib3 connection pool (a ``ProxyManager``'s pool
when a proxy applies).  requests does one job here, the one its users expect it to
do: reading the proxy (``HTTPS_PROXY``, ``NO_PROXY`` ...) and CA-bundle
(``REQUESTS_CA_BUNDLE``) environment and requests-style ``proxies`` dicts, once, when
the endpoint is made; the CA store is requests' (certifi's).  The pool's connections
keep the attempt's deadline (:mod:`._httpclient`).
"""

from __future__ import annotations

import os
import ssl
import threading
import time
import weakref
import zlib
from collections.abc import Mapping
from http.client import HTTPException
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple
from urllib.parse import urlsplit

import requests
import requests.utils
import urllib3
from urllib3.exceptions import HTTPError, LocationParseError, ProxySchemeUnsupported
from urllib3.util import Retry, Timeout, parse_url
from urllib3.util.ssl_ import create_urllib3_context

from simple_segment._options import redact_url
from simple_segment.errors import ConfigurationError

from ._httpclient import adopt_pool, budget, keep_deadline
from .failures import without_traceback

if TYPE_CHECKING:
    from urllib3.connectionpool import HTTPConnectionPool
    from urllib3.response import BaseHTTPResponse

MAX_ERROR_BODY = 65_536
"""Most bytes read from an answer's body."""

NETWORK_FAILURES = (HTTPError, HTTPException, OSError, ValueError)
"""What sending a request and reading its answer may raise (urllib3, http.client, sockets): see :func:`failure_of`."""

_NO_RETRIES = Retry(total=False, redirect=False)
"""urllib3 itself never retries: every attempt is ours.  (Made once: ``retries=False`` builds one per request.)"""

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

    failures: ClassVar[tuple[type[BaseException], ...]] = NETWORK_FAILURES
    """What :meth:`exchange` raises when no usable answer came (mapped by :func:`failure_of`)."""

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
        if self._proxy is not None:
            if "://" not in self._proxy:
                self._proxy = f"http://{self._proxy}"  # requests' reading of a bare "host:port"
            _check_proxy(self._proxy)
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
        budget.at = time.monotonic() + remaining
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
        except self.failures:
            raise  # mapped by the caller, which drops the traceback
        except BaseException as exc:
            # The caller's own exception (a signal handler, a Celery soft time limit)
            # interrupted the exchange: the frames below hold the headers (the write key
            # or a token) and the body in their locals, so it goes on without them.
            del body, headers
            without_traceback(exc)
            raise exc  # noqa: TRY201 - a bare raise would restore the traceback on Python 3.10
        finally:
            budget.at = None

    def _get_pool(self) -> HTTPConnectionPool:
        pool = self._pool
        if pool is None:
            with self._lock:
                pool = self._pool
                if pool is None:
                    self._manager = manager = self._make_manager()
                    pool = manager.connection_from_url(self.url)
                    adopt_pool(pool)
                    self._pool = pool
        return pool

    def _make_manager(self) -> urllib3.PoolManager:
        options: dict[str, Any] = {"num_pools": 2, "maxsize": self._pool_size, "block": False, "retries": False}
        if self.url.startswith("https:") or (self._proxy or "").startswith("https:"):
            options.update(_tls_options(self._verify))
        if (self._proxy or "").startswith("https:"):
            # The proxy's certificate is checked as requests checks it (verify=,
            # REQUESTS_CA_BUNDLE), and the TLS socket to the proxy, which carries the
            # CONNECT answer and the tunnelled TLS, keeps the deadline.
            options["proxy_ssl_context"] = options["ssl_context"]
        proxy = self._proxy
        if proxy is None:
            return urllib3.PoolManager(**options)
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


_PROXY_SCHEMES = frozenset({"http", "https", "socks4", "socks4a", "socks5", "socks5h"})


def _check_proxy(proxy: str) -> None:
    """Refuse a proxy URL that no attempt could use: :class:`ConfigurationError`, never retried.

    The error shows the URL redacted and not the parser's own message, which would
    repeat the password.
    """
    reason = ""
    try:
        parts = parse_url(proxy)
        port = parts.port
    except (LocationParseError, ValueError):
        reason = "it does not parse"
    else:
        if (parts.scheme or "").lower() not in _PROXY_SCHEMES:
            reason = f"its scheme is not one of {', '.join(sorted(_PROXY_SCHEMES))}"
        elif not parts.host:
            reason = "it has no host"
        elif port is not None and not 0 < port < 65536:  # noqa: PLR2004 - the port range
            reason = "its port is not 1-65535"
        elif any(char.isspace() or ord(char) < 32 for char in proxy):  # noqa: PLR2004 - control characters
            reason = "it holds a space or a control character"
    if reason:
        raise ConfigurationError("proxies", f"the proxy {redact_url(proxy)} is not a usable proxy URL: {reason}")


def _tls_options(verify: bool | str) -> dict[str, Any]:  # noqa: FBT001 - requests' verify
    """Return the pool options for TLS: requests' CA store (or ``verify``'s), sockets that keep the deadline.

    The context is shared by the target's TLS and an ``https://`` proxy's: the same
    trust, as in requests.
    """
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
    keep_deadline(context)
    return {"ssl_context": context, "cert_reqs": "CERT_NONE" if verify is False else "CERT_REQUIRED"}


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
