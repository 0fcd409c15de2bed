"""simple_segment: a synchronous, inline client for Segment's HTTP Tracking API.

A drop-in for ``segment.analytics``: set the same module settings and call the same
functions, and each call is delivered before it returns::

    import simple_segment as analytics

    analytics.write_key = "YOUR_WRITE_KEY"
    analytics.track("user-1", "Signed Up", {"plan": "pro"})

The module-level functions use ``default_client``, built from the settings on first
use.  Assigning a setting afterwards (``analytics.write_key = ...``) closes that
client and the next call builds a new one from the new settings: a changed write key
or host is never ignored.
"""

from __future__ import annotations

import sys
import types
from typing import Any

from ._batch import Batch
from ._calls import Result
from ._messages import Message
from ._version import VERSION
from .client import DEFAULT_MAX_RETRIES, DEFAULT_TIMEOUT, DEFAULT_TOTAL_TIMEOUT, Client, OnError
from .errors import (
    APIError,
    BatchDeliveryError,
    ConfigurationError,
    DeliveryError,
    MessageTooLargeError,
    RateLimitError,
    RetryableError,
    SegmentError,
    ServerError,
    TransportError,
    ValidationError,
)

__version__ = VERSION

__all__ = [
    "VERSION",
    "APIError",
    "Batch",
    "BatchDeliveryError",
    "Client",
    "ConfigurationError",
    "DeliveryError",
    "Message",
    "MessageTooLargeError",
    "OnError",
    "RateLimitError",
    "Result",
    "RetryableError",
    "SegmentError",
    "ServerError",
    "TransportError",
    "ValidationError",
    "__version__",
    "alias",
    "batch",
    "default_client",
    "flush",
    "group",
    "identify",
    "join",
    "page",
    "screen",
    "shutdown",
    "track",
]

# -- settings, read when default_client is built ------------------------------------
write_key: str | None = None
host: str | None = None
on_error: OnError | None = None
debug: bool = False
log_handler: Any = None
send: bool = True
sync_mode: bool = False
max_queue_size: int = 10000
gzip: bool = False
timeout: float | tuple[float, float] = DEFAULT_TIMEOUT
max_retries: int = DEFAULT_MAX_RETRIES
proxies: dict[str, str] | None = None
total_timeout: float = DEFAULT_TOTAL_TIMEOUT
oauth_client_id: str | None = None
oauth_client_key: str | None = None
oauth_key_id: str | None = None
oauth_auth_server: str = "https://oauth2.segment.io"
oauth_scope: str = "tracking_api:write"

_SETTINGS = (
    "write_key",
    "host",
    "on_error",
    "debug",
    "log_handler",
    "send",
    "sync_mode",
    "max_queue_size",
    "gzip",
    "timeout",
    "max_retries",
    "proxies",
    "total_timeout",
    "oauth_client_id",
    "oauth_client_key",
    "oauth_key_id",
    "oauth_auth_server",
    "oauth_scope",
)

default_client: Client | None = None
"""The client behind the module-level functions; built from the settings on first use."""


def _client() -> Client:
    global default_client  # noqa: PLW0603 - the official module-level API
    client = default_client
    if client is None:
        client = default_client = Client(**{name: getattr(sys.modules[__name__], name) for name in _SETTINGS})
    return client


class _SettingsModule(types.ModuleType):
    """Makes assigning a setting drop ``default_client``, so the next call uses it."""

    def __setattr__(self, name: str, value: Any) -> None:  # noqa: ANN401 - any setting's value
        if name in _SETTINGS:
            old = self.__dict__.get("default_client")
            if old is not None and self.__dict__.get(name) is not value:
                self.__dict__["default_client"] = None
                old.close()
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _SettingsModule


def identify(*args: Any, **kwargs: Any) -> Result:  # noqa: ANN401
    """Send an identify call with ``default_client`` (see :meth:`Client.identify`)."""
    return _client().identify(*args, **kwargs)


def track(*args: Any, **kwargs: Any) -> Result:  # noqa: ANN401
    """Send a track call with ``default_client`` (see :meth:`Client.track`)."""
    return _client().track(*args, **kwargs)


def page(*args: Any, **kwargs: Any) -> Result:  # noqa: ANN401
    """Send a page call with ``default_client`` (see :meth:`Client.page`)."""
    return _client().page(*args, **kwargs)


def screen(*args: Any, **kwargs: Any) -> Result:  # noqa: ANN401
    """Send a screen call with ``default_client`` (see :meth:`Client.screen`)."""
    return _client().screen(*args, **kwargs)


def group(*args: Any, **kwargs: Any) -> Result:  # noqa: ANN401
    """Send a group call with ``default_client`` (see :meth:`Client.group`)."""
    return _client().group(*args, **kwargs)


def alias(*args: Any, **kwargs: Any) -> Result:  # noqa: ANN401
    """Send an alias call with ``default_client`` (see :meth:`Client.alias`)."""
    return _client().alias(*args, **kwargs)


def batch(context: dict[str, Any] | None = None, integrations: dict[str, Any] | None = None) -> Batch:
    """Return a batch of ``default_client`` (see :meth:`Client.batch`)."""
    return _client().batch(context=context, integrations=integrations)


def flush() -> None:
    """Do nothing, as every call is already delivered.  Never fails."""


def join() -> None:
    """Do nothing: there is no thread to wait for.  Never fails."""


def shutdown() -> None:
    """Close ``default_client``'s connections, if it was built.  Never fails."""
    client = default_client
    if client is not None:
        client.shutdown()
