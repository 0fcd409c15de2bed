"""The Client: the official library's API, delivering each call before it returns."""

from __future__ import annotations

import functools
import ipaddress
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ._calls import Calls, Result
from ._messages import Message
from ._transport import Delivered, Transport
from ._version import VERSION
from ._wire import Envelope, decode_messages, encode_message
from .errors import ConfigurationError, DeliveryError

if TYPE_CHECKING:
    from ._batch import Batch

__all__ = ["DEFAULT_HOST", "Client", "OnError"]

log = logging.getLogger("simple_segment")

DEFAULT_HOST = "https://api.segment.io"
DEFAULT_TIMEOUT = 15.0
DEFAULT_MAX_RETRIES = 3
DEFAULT_TOTAL_TIMEOUT = 30.0
DEFAULT_BACKOFF_FACTOR = 0.5

OnError = Callable[[Exception, list[Message]], Any]
"""``on_error(exception, messages)``: called instead of raising when delivery fails."""

Sink = Callable[[list[Message]], None]
_sinks: list[Sink] = []
"""Recorders installed by :func:`simple_segment.testing.capture`: while any is present,
clients hand their messages to them instead of the network."""


def normalize_host(host: str | None) -> str:
    """Return the base URL for ``host``.

    ``None`` is Segment's default; a bare host name (``events.eu1.segmentapis.com``)
    means https; a trailing slash is dropped; ``http://`` is accepted when written
    out (local endpoints) and any other scheme is a :class:`ConfigurationError`.
    """
    if host is None:
        return DEFAULT_HOST
    if not isinstance(host, str) or not host.strip():
        raise ConfigurationError("host", "must be a non-empty str such as 'https://api.segment.io'")
    text = host.strip()
    if "://" not in text:
        text = f"https://{text}"
    text = text.rstrip("/")
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https"):
        raise ConfigurationError("host", f"scheme {parts.scheme!r} is not supported; use https:// (or http:// locally)")
    if not parts.hostname or parts.query or parts.fragment:
        raise ConfigurationError("host", f"{host!r} is not a base URL such as 'https://api.segment.io'")
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        log.warning("host %s is plain http: the write key crosses the network unencrypted", text)
    return text


def _is_loopback(hostname: str) -> bool:
    if hostname == "localhost":
        return True
    try:
        return ipaddress.ip_address(hostname).is_loopback
    except ValueError:
        return False


def _number(name: str, value: object, *, minimum: float = 0.0, integer: bool = False) -> float:
    valid = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, valid) or value < minimum:
        kind = "an int" if integer else "a number"
        raise ConfigurationError(name, f"must be {kind} >= {minimum:g}, got {value!r}")
    return value


Timeout = float | tuple[float, float]


def _timeout(value: object) -> Timeout:
    if isinstance(value, (tuple, list)) and len(value) == 2:  # noqa: PLR2004 - (connect, read)
        return (_number("timeout", value[0], minimum=0.001), _number("timeout", value[1], minimum=0.001))
    return _number("timeout", value, minimum=0.001)


class Client(Calls):
    """A Segment client that delivers every call before returning.

    Accepts every keyword of ``segment.analytics.Client`` in the same order.  The
    queue options ``max_queue_size``, ``sync_mode``, ``thread``, ``upload_size`` and
    ``upload_interval`` are accepted and have no effect: there is no queue and no
    thread.  The OAuth options are accepted but not supported (a warning is logged and
    the write key's Basic auth is used).

    Delivery: each attempt times out after ``timeout`` seconds (one number or a
    ``(connect, read)`` pair); failed attempts are retried up to ``max_retries`` times
    with exponential backoff and jitter (``backoff_factor``), honouring Retry-After, and
    the whole call, waits included, ends within ``total_timeout`` seconds.
    ``max_total_backoff_duration`` caps the time spent waiting between attempts and
    ``max_rate_limit_duration`` the longest Retry-After wait accepted.

    A failed delivery raises a :class:`~simple_segment.DeliveryError`, or, when
    ``on_error`` is given, calls ``on_error(exception, messages)`` and returns
    ``(False, msg)``.  With ``send=False`` (or ``stub=True``) messages are validated and
    built but nothing is sent.

    ``verify`` is True (check TLS certificates), False, or the path of a CA bundle.
    Proxy variables (``HTTPS_PROXY``, ``NO_PROXY``...) and ``REQUESTS_CA_BUNDLE`` are
    read once, when the client is made.

    A client may be shared by threads and survives ``os.fork()``: the child opens its
    own connections.
    """

    def __init__(  # noqa: PLR0913 - the official signature, plus keyword-only extras
        self,
        write_key: str | None = None,
        host: str | None = None,
        debug: bool = False,  # noqa: FBT001, FBT002 - official positional signature
        max_queue_size: int = 10000,
        send: bool = True,  # noqa: FBT001, FBT002
        on_error: OnError | None = None,
        gzip: bool = False,  # noqa: FBT001, FBT002
        max_retries: int = DEFAULT_MAX_RETRIES,
        sync_mode: bool = False,  # noqa: FBT001, FBT002, ARG002 - accepted, no effect
        timeout: Timeout = DEFAULT_TIMEOUT,
        proxies: dict[str, str] | None = None,
        thread: int = 1,  # noqa: ARG002 - accepted, no effect
        upload_size: int = 100,  # noqa: ARG002 - accepted, no effect
        upload_interval: float = 0.5,  # noqa: ARG002 - accepted, no effect
        log_handler: logging.Handler | None = None,
        oauth_client_id: str | None = None,
        oauth_client_key: str | None = None,
        oauth_key_id: str | None = None,
        oauth_auth_server: str = "https://oauth2.segment.io",  # noqa: ARG002 - accepted, unsupported
        oauth_scope: str = "tracking_api:write",  # noqa: ARG002 - accepted, unsupported
        max_total_backoff_duration: float = 43200,
        max_rate_limit_duration: float = 1800,
        *,
        total_timeout: float = DEFAULT_TOTAL_TIMEOUT,
        backoff_factor: float = DEFAULT_BACKOFF_FACTOR,
        verify: bool | str = True,
        stub: bool = False,
    ) -> None:
        if not isinstance(write_key, str) or not write_key:
            raise ConfigurationError("write_key", "is required: a non-empty str (your source's write key)")
        if on_error is not None and not callable(on_error):
            raise ConfigurationError("on_error", "must be callable as on_error(exception, messages)")
        if proxies is not None and not isinstance(proxies, dict):
            raise ConfigurationError("proxies", "must be a dict such as {'https': 'http://proxy:3128'}")
        self.host = normalize_host(host)
        self.url = f"{self.host}/v1/batch"
        self.send = bool(send) and not stub
        self.on_error = on_error
        self.gzip = bool(gzip)
        self.debug = bool(debug)
        self.timeout = _timeout(timeout)
        self.max_retries = int(_number("max_retries", max_retries, integer=True))
        self.total_timeout = _number("total_timeout", total_timeout, minimum=0.001)
        self.backoff_factor = _number("backoff_factor", backoff_factor)
        self.max_queue_size = max_queue_size
        self.proxies = proxies
        self.verify = verify
        self._write_key = write_key
        self._envelope = Envelope(write_key)
        transport_options: dict[str, Any] = {
            "timeout": self.timeout,
            "total_timeout": self.total_timeout,
            "max_retries": self.max_retries,
            "backoff_factor": self.backoff_factor,
            "max_total_backoff": _number("max_total_backoff_duration", max_total_backoff_duration),
            "max_rate_limit_wait": _number("max_rate_limit_duration", max_rate_limit_duration),
            "gzip": self.gzip,
            "proxies": proxies,
            "verify": verify,
        }
        # Made now, so proxy and CA variables are read when the client is (documented).
        self._transport = Transport(self.url, write_key, user_agent=f"simple_segment/{VERSION}", **transport_options)
        if oauth_client_id or oauth_client_key or oauth_key_id:
            log.warning("OAuth is not supported by simple_segment; sending with the write key (Basic auth)")
        if log_handler is not None and log_handler not in log.handlers:
            log.addHandler(log_handler)
        if debug:
            log.setLevel(logging.DEBUG)
            if log_handler is None and not log.handlers:
                log.addHandler(logging.StreamHandler())

    @property
    def write_key(self) -> str:
        """The source's write key (never shown by ``repr``, logs or errors)."""
        return self._write_key

    def __repr__(self) -> str:
        return f"<simple_segment.Client host={self.host!r} send={self.send}>"

    # -- sending --------------------------------------------------------------------

    def _emit(self, msg: Message) -> Result:
        data = encode_message(msg)
        log.debug("sending %s", msg)
        if not self.send and not _sinks:
            return True, msg
        try:
            self._deliver([data], [msg])
        except DeliveryError as exc:
            if self.on_error is None:
                raise
            self.on_error(exc, [msg])
            return False, msg
        return True, msg

    def _deliver(self, encoded: list[bytes], messages: list[Message] | None = None) -> Delivered | None:
        """POST one request holding the serialized messages ``encoded``.

        Returns None when nothing went on the wire (``send=False``, or a
        :func:`~simple_segment.testing.capture` is open).  A :class:`DeliveryError`
        leaves with ``.messages`` set to the messages (``messages``, or ``encoded``
        decoded again when not given: a batch keeps only the bytes).
        """
        if _sinks:
            captured = messages if messages is not None else decode_messages(encoded)
            for sink in tuple(_sinks):
                sink(captured)
            return None
        if not self.send:
            return None
        try:
            return self._transport.post(functools.partial(self._envelope.render, encoded))
        except DeliveryError as exc:
            exc.messages = list(messages) if messages is not None else decode_messages(encoded)
            raise

    def batch(self, context: dict[str, Any] | None = None, integrations: dict[str, Any] | None = None) -> Batch:
        """Return a batch: ``with client.batch() as batch:`` posts its calls together.

        ``context`` and ``integrations`` apply to every message of the batch, under
        the message's own values (a key the message sets wins).  See
        :class:`~simple_segment.Batch`.
        """
        from ._batch import Batch  # noqa: PLC0415 - Batch builds on Client

        return Batch(self, context=context, integrations=integrations)

    # -- the official lifecycle -----------------------------------------------------

    def flush(self) -> None:
        """Do nothing: every call was delivered before it returned.  Never fails."""

    def join(self) -> None:
        """Do nothing: there is no consumer thread to wait for.  Never fails."""

    def shutdown(self) -> None:
        """Release pooled connections (same as :meth:`close`).  Never fails."""
        self.close()

    def close(self) -> None:
        """Close pooled connections.  The client stays usable and reconnects on use."""
        try:
            self._transport.close()
        except Exception:
            log.debug("error while closing connections", exc_info=True)

    def __enter__(self) -> Client:  # noqa: PYI034 - Self needs Python 3.11
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
