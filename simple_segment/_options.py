"""Every option of a client, its default and its validation, defined once.

:class:`Options` is read by :class:`~simple_segment.Client` (and is its
``DefaultConfig``), by the module-level settings, by the transport and by the
command line.  Its class attributes are the defaults; an instance is validated
and normalized when it is made, so everything downstream can trust it.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
import math
import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import SplitResult, urlsplit

from .errors import ConfigurationError
from .plan import OnViolation, TrackingPlan

if TYPE_CHECKING:
    from ._messages import Message

__all__ = ["DEFAULT_HOST", "BeforeSend", "BeforeSendHooks", "OnError", "OnViolation", "Options", "Timeout"]

log = logging.getLogger("simple_segment")

DEFAULT_HOST = "https://api.segment.io"
"""Segment's Tracking API (the EU one is ``https://events.eu1.segmentapis.com``)."""

Timeout = float | tuple[float, float]
"""Seconds for one HTTP attempt: one number, or a ``(connect, read)`` pair."""

DEFAULT_TOTAL_TIMEOUT = 30.0
"""Seconds for a whole call when ``total_timeout`` is not given (or one full attempt, if longer)."""

MAX_SECONDS = 2_000_000.0
"""The longest time any option may give (about 23 days): sockets and sleeps take no more."""

OnError = Callable[[Exception, list[dict[str, Any]]], object]
"""``on_error(exception, messages)``: called instead of raising when delivery fails."""

BeforeSend = Callable[["Message"], "Message | None"]
"""``before_send(msg)``: returns the message to send (possibly changed) or None to drop it.

The ``before_send`` option takes one hook or a list (or tuple) of them, run in order."""

BeforeSendHooks = BeforeSend | Sequence["BeforeSendHooks"] | None
"""What the ``before_send`` option takes: a hook, None, or a list of these (flattened, None skipped)."""

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclasses.dataclass(frozen=True)
class Options:
    """The options of a :class:`~simple_segment.Client`; the class attributes are the defaults.

    The first 22 fields are the official ``segment.analytics.Client`` keywords, in
    its order; ``Client.DefaultConfig`` is this class, so code that reads the
    official defaults (``Client.DefaultConfig.timeout``) reads ours.  The queue
    options (``max_queue_size``, ``sync_mode``, ``thread``, ``upload_size``,
    ``upload_interval``) are kept for compatibility and have no effect.

    Making an instance validates every field and normalizes ``host`` (to a base
    URL), ``on_error`` (a falsy value means none, as in the official library) and
    ``proxies``; a bad value raises :class:`~simple_segment.ConfigurationError`
    naming the option.  Instances are immutable.
    """

    write_key: str | None = None
    host: str | None = None
    debug: bool = False
    max_queue_size: int = 10000
    send: bool = True
    on_error: OnError | None = None
    gzip: bool = False
    max_retries: int = 3
    sync_mode: bool = False
    timeout: Timeout = 15.0
    proxies: Mapping[str, str | None] | None = None
    thread: int = 1
    upload_size: int = 100
    upload_interval: float = 0.5
    log_handler: logging.Handler | None = None
    oauth_client_id: str | None = None
    oauth_client_key: str | None = None
    oauth_key_id: str | None = None
    oauth_auth_server: str = "https://oauth2.segment.io"
    oauth_scope: str = "tracking_api:write"
    max_total_backoff_duration: float = 43200.0
    max_rate_limit_duration: float = 1800.0
    # Ours, keyword-only on Client.
    total_timeout: float = DEFAULT_TOTAL_TIMEOUT
    backoff_factor: float = 0.5
    verify: bool | str = True
    before_send: BeforeSendHooks = None
    tracking_plan: TrackingPlan | None = None
    on_violation: OnViolation = "raise"

    def __post_init__(self) -> None:
        checked = {
            "write_key": _write_key(self.write_key),
            "host": normalize_host(self.host),
            "on_error": _callable_or_none("on_error", self.on_error, "on_error(exception, messages)"),
            "before_send": _hooks(self.before_send),
            "timeout": _timeout(self.timeout),
            "total_timeout": _seconds("total_timeout", self.total_timeout, minimum=0.001),
            "backoff_factor": _seconds("backoff_factor", self.backoff_factor),
            "max_total_backoff_duration": _seconds("max_total_backoff_duration", self.max_total_backoff_duration),
            "max_rate_limit_duration": _seconds("max_rate_limit_duration", self.max_rate_limit_duration),
            "max_retries": _count("max_retries", self.max_retries),
            "proxies": _proxies(self.proxies),
            "verify": _verify(self.verify),
            "oauth_auth_server": normalize_host(self.oauth_auth_server, "oauth_auth_server"),
            "tracking_plan": _tracking_plan(self.tracking_plan),
            "on_violation": _on_violation(self.on_violation),
        }
        for name in ("debug", "send", "gzip", "sync_mode"):
            checked[name] = _flag(name, getattr(self, name))
        for name in ("oauth_client_id", "oauth_client_key", "oauth_key_id", "oauth_scope"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise ConfigurationError(name, f"must be a str, not {type(value).__name__}")
        if self.log_handler is not None and not isinstance(self.log_handler, logging.Handler):
            raise ConfigurationError("log_handler", "must be a logging.Handler")
        for name, value in checked.items():
            object.__setattr__(self, name, value)

    @property
    def url(self) -> str:
        """Where batches are posted: ``{host}/v1/batch``."""
        return f"{self.host}/v1/batch"

    @property
    def oauth(self) -> bool:
        """Whether the OAuth options are given (then they must all be)."""
        return bool(self.oauth_client_id or self.oauth_client_key or self.oauth_key_id)

    def __repr__(self) -> str:
        shown = ", ".join(
            f"{field.name}={_shown(field.name, getattr(self, field.name, None))!r}"
            for field in dataclasses.fields(self)
            if field.name not in _SECRET
        )
        return f"Options({shown})"


_SECRET = frozenset({"write_key", "oauth_client_key"})
"""Never shown by ``repr``."""


def _shown(name: str, value: object) -> object:
    # A proxy URL may carry a password (http://user:pass@proxy): shown redacted.
    if name == "proxies" and isinstance(value, Mapping):
        return {key: redact_url(url) if isinstance(url, str) else url for key, url in value.items()}
    return value


def names() -> tuple[str, ...]:
    """Return the names of every option, in order."""
    return tuple(field.name for field in dataclasses.fields(Options))


# -- the checks -------------------------------------------------------------------


def _write_key(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigurationError("write_key", "is required: a non-empty str (your source's write key)")
    # Surrounding whitespace is what a key read from a secret file carries (its newline).
    value = str(value).strip()
    if _CONTROL.search(value):
        raise ConfigurationError("write_key", "must not contain control characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ConfigurationError("write_key", "must be text that encodes as UTF-8 (a lone surrogate?)") from None
    return value


def normalize_host(host: object, field: str = "host") -> str:
    """Return the base URL for ``host``.

    ``None`` is Segment's default; a bare host name (``events.eu1.segmentapis.com``)
    means https; a trailing slash is dropped; ``http://`` is accepted when written
    out (local endpoints; a warning is logged unless it is loopback).  Anything that
    does not parse completely (a scheme other than http/https, user-info, a bad
    port, spaces, a query) is a :class:`ConfigurationError`.
    """
    if host is None and field == "host":
        return DEFAULT_HOST
    if not isinstance(host, str) or not host.strip():
        raise ConfigurationError(field, "must be a non-empty str such as 'https://api.segment.io'")
    text = host.strip()
    if "://" not in text:
        text = f"https://{text}"
    text = text.rstrip("/")
    parts, hostname, port = _parse_url(text, field)
    if parts.scheme not in ("http", "https"):
        raise ConfigurationError(field, f"scheme {parts.scheme!r} is not supported; use https:// (or http:// locally)")
    if parts.username is not None or parts.password is not None:
        raise ConfigurationError(field, "must not contain user-info (user:password@); the write key authenticates")
    if not hostname or parts.query or parts.fragment or "@" in parts.netloc:
        raise ConfigurationError(field, f"{redact_url(text)!r} is not {_EXAMPLE}")
    _check_address(hostname, port, field)
    if parts.scheme == "http" and not _is_loopback(hostname):
        log.warning("%s %s is plain http: credentials cross the network unencrypted", field, text)
    return text


_EXAMPLE = "a base URL such as 'https://api.segment.io'"


def _parse_url(text: str, field: str) -> tuple[SplitResult, str | None, int | None]:
    if any(char.isspace() for char in text) or _CONTROL.search(text):
        raise ConfigurationError(field, f"must not contain spaces or control characters; use {_EXAMPLE}")
    try:
        parts = urlsplit(text)
        hostname, port = parts.hostname, parts.port
    except ValueError as exc:
        raise ConfigurationError(field, f"does not parse as a URL ({exc}); use {_EXAMPLE}") from exc
    return parts, hostname, port


def redact_url(text: str) -> str:
    """Return the URL ``text`` with any user-info replaced by ``***``."""
    # Never echo credentials, even in an error about them.
    scheme, sep, rest = text.partition("://")
    return f"{scheme}{sep}***@{rest.rpartition('@')[2]}" if "@" in rest else text


def _check_address(hostname: str, port: int | None, field: str) -> None:
    if port == 0:
        raise ConfigurationError(field, "port 0 is not a port to connect to")
    if not _is_ip(hostname):
        try:
            hostname.encode("idna")  # empty labels ("exa..mple.com"), labels over 63 characters
        except UnicodeError as exc:
            raise ConfigurationError(field, f"{hostname!r} is not a valid host name") from exc


def _is_ip(hostname: str) -> bool:
    try:
        ipaddress.ip_address(hostname)
    except ValueError:
        return False
    return True


def _is_loopback(hostname: str) -> bool:
    if hostname == "localhost":
        return True
    try:
        return ipaddress.ip_address(hostname).is_loopback
    except ValueError:
        return False


def _callable_or_none(name: str, value: Any, shape: str) -> Any:  # noqa: ANN401 - a caller's callable
    # The official library uses on_error only when it is truthy: False, 0 and "" mean none.
    if not value:
        return None
    if not callable(value):
        raise ConfigurationError(name, f"must be callable as {shape}, or None")
    return value


def _hooks(value: object) -> BeforeSend | tuple[BeforeSend, ...] | None:
    # One hook, or a list/tuple of them run in order (kept as a flat tuple: Options are
    # immutable).  Falsy means none, as for on_error.  In a list, None is skipped and a
    # list is spliced in, so an integration adds its hook to whatever the user set with
    # ``before_send = [before_send, its_hook]``.
    if isinstance(value, (list, tuple)):
        return tuple(_flat_hooks(value, "")) or None
    single: BeforeSend | None = _callable_or_none("before_send", value, "before_send(msg) or a list of such hooks")
    return single


def _flat_hooks(hooks: list[object] | tuple[object, ...], path: str) -> Iterator[BeforeSend]:
    for index, hook in enumerate(hooks):
        if isinstance(hook, (list, tuple)):
            yield from _flat_hooks(hook, f"{path}[{index}]")
        elif callable(hook):
            yield hook
        elif hook is not None:
            reason = f"{path}[{index}] must be callable as before_send(msg), not {type(hook).__name__}"
            raise ConfigurationError("before_send", reason)


def _seconds(name: str, value: object, *, minimum: float = 0.0) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigurationError(name, f"must be a number of seconds, not {type(value).__name__}")
    try:
        number = float(value)
    except (OverflowError, ValueError, TypeError):  # an int too large for a float; a hostile __float__
        number = math.inf
    if not math.isfinite(number) or number < minimum or number > MAX_SECONDS:
        rule = f"must be a finite number from {minimum:g} to {MAX_SECONDS:g}"
        raise ConfigurationError(name, f"{rule}, got {_short(value)}")
    return number


def _short(value: object) -> str:
    try:
        text = repr(value)
    except Exception:  # noqa: BLE001 - a hostile __repr__ must not replace the error
        return f"a {type(value).__name__}"
    return text if len(text) <= 40 else f"{text[:37]}..."  # noqa: PLR2004


def _flag(name: str, value: object) -> bool:
    # send="false" is truthy: a switch given as anything but a bool is refused, not guessed.
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise ConfigurationError(name, f"must be True or False, not {_short(value)}")


def given(*, timeout: object, total_timeout: object, max_retries: object) -> dict[str, Any]:
    """Return ``timeout``, ``total_timeout`` and ``max_retries`` as :class:`Options` takes them.

    Resolves the spellings the official client (that is, requests) accepts: a
    ``timeout`` of None (no limit) or ``(connect, None)`` gives an attempt the whole
    call's budget, ``max_retries=None`` means the default; and ``total_timeout=None``
    (not given) means :data:`DEFAULT_TOTAL_TIMEOUT`, or one full attempt when the
    ``timeout`` given is longer, so a long timeout is never cut short by the default.
    """
    if total_timeout is None:
        attempt = _timeout(_no_none(timeout, 0.001))  # a part with no limit takes what is left
        longest = sum(attempt) if isinstance(attempt, tuple) else attempt
        total_timeout = max(DEFAULT_TOTAL_TIMEOUT, min(longest, MAX_SECONDS))
    budget = total_timeout if isinstance(total_timeout, (int, float)) and not isinstance(total_timeout, bool) else 0
    return {
        "timeout": _no_none(timeout, budget or DEFAULT_TOTAL_TIMEOUT),
        "total_timeout": total_timeout,
        "max_retries": Options.max_retries if max_retries is None else max_retries,
    }


def _no_none(timeout: object, budget: float) -> object:
    if timeout is None:
        return budget
    if isinstance(timeout, (tuple, list)):
        return type(timeout)(budget if part is None else part for part in timeout)
    return timeout


def _count(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigurationError(name, f"must be an int >= 0, got {value!r}")
    return int(value)


def _timeout(value: object) -> Timeout:
    if isinstance(value, (tuple, list)):
        if len(value) != 2:  # noqa: PLR2004 - (connect, read)
            raise ConfigurationError("timeout", "must be a number or a (connect, read) pair of numbers")
        return (_seconds("timeout", value[0], minimum=0.001), _seconds("timeout", value[1], minimum=0.001))
    return _seconds("timeout", value, minimum=0.001)


def _proxies(value: object) -> dict[str, str | None] | None:
    # A None value means "no proxy for this scheme", the environment's included (as in requests).
    if value is None:
        return None
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and (v is None or isinstance(v, str)) for k, v in value.items()
    ):
        raise ConfigurationError("proxies", "must be a dict of str (or None) such as {'https': 'http://proxy:3128'}")
    return dict(value)


def _verify(value: object) -> bool | str:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value:
        if not Path(value).exists():
            raise ConfigurationError("verify", f"the CA bundle {value!r} does not exist")
        return value
    raise ConfigurationError("verify", "must be True, False or the path of a CA bundle (a file or a folder)")


def _tracking_plan(value: object) -> TrackingPlan | None:
    # A path is loaded here, so `simple_segment.tracking_plan = "plan.json"` works as a setting.
    if value is None or isinstance(value, TrackingPlan):
        return value
    if isinstance(value, (str, os.PathLike)):
        return TrackingPlan.load(value)
    raise ConfigurationError(
        "tracking_plan", "must be a simple_segment.plan.TrackingPlan (from TrackingPlan.load), a path, or None"
    )


_ON_VIOLATION = ("raise", "drop", "warn", "send")


def _on_violation(value: object) -> OnViolation:
    if value not in _ON_VIOLATION:
        raise ConfigurationError("on_violation", f"must be one of {', '.join(map(repr, _ON_VIOLATION))}, not {value!r}")
    return value  # type: ignore[return-value]
