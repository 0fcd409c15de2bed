"""simple_segment: a synchronous, inline client for Segment's HTTP Tracking API.

A drop-in for ``segment.analytics``: set the same module settings and call the same
functions, and each call is delivered before it returns::

    import simple_segment as analytics

    analytics.write_key = "YOUR_WRITE_KEY"
    analytics.track("user-1", "Signed Up", {"plan": "pro"})

The module-level functions use ``default_client``, built from the settings on first
use.  Assigning a different value to a setting afterwards (``analytics.write_key =
...``) closes that client and the next call builds a new one from the new settings:
a changed write key or host is never ignored.  Assigning a name that is not a
setting (``analytics.writekey = ...``) raises :class:`AttributeError`.
"""

from __future__ import annotations

import difflib
import logging
import os
import sys
import threading
import types
from typing import Any

from . import _messages, _options
from ._batch import Batch
from ._calls import Result, forward
from ._ids import stable_ids
from ._messages import Id, Message, Properties
from ._options import BeforeSend, BeforeSendHooks, OnError, OnViolation, Options, Timeout
from ._scope import Pending, Scope, scope
from ._version import VERSION
from .client import Client
from .errors import (
    APIError,
    BatchDeliveryError,
    ConfigurationError,
    DeliveryError,
    MessageTooLargeError,
    NetworkError,
    PlanViolationError,
    RateLimitError,
    RetryableBatchDeliveryError,
    RetryableError,
    SegmentError,
    ServerError,
    TokenError,
    TransportError,
    ValidationError,
)
from .plan import TrackingPlan

__version__ = VERSION

__all__ = [
    "VERSION",
    "APIError",
    "Batch",
    "BatchDeliveryError",
    "BeforeSend",
    "Client",
    "ConfigurationError",
    "DeliveryError",
    "Id",
    "Message",
    "MessageTooLargeError",
    "NetworkError",
    "OnError",
    "Options",
    "Pending",
    "PlanViolationError",
    "Properties",
    "RateLimitError",
    "Result",
    "RetryableBatchDeliveryError",
    "RetryableError",
    "Scope",
    "SegmentError",
    "ServerError",
    "Timeout",
    "TokenError",
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
    "scope",
    "screen",
    "shutdown",
    "stable_ids",
    "track",
]

# -- settings, read when default_client is built (the defaults are Options') ------------
write_key: str | None = Options.write_key
host: str | None = Options.host
debug: bool = Options.debug
max_queue_size: int = Options.max_queue_size
send: bool = Options.send
on_error: OnError | None = Options.on_error
gzip: bool = Options.gzip
max_retries: int | None = Options.max_retries
sync_mode: bool = Options.sync_mode
timeout: Timeout | tuple[float, None] | None = Options.timeout
proxies: dict[str, str | None] | None = None
thread: int = Options.thread
upload_size: int = Options.upload_size
upload_interval: float = Options.upload_interval
log_handler: logging.Handler | None = Options.log_handler
oauth_client_id: str | None = Options.oauth_client_id
oauth_client_key: str | None = Options.oauth_client_key
oauth_key_id: str | None = Options.oauth_key_id
oauth_auth_server: str = Options.oauth_auth_server
oauth_scope: str = Options.oauth_scope
max_total_backoff_duration: float = Options.max_total_backoff_duration
max_rate_limit_duration: float = Options.max_rate_limit_duration
total_timeout: float | None = None
backoff_factor: float = Options.backoff_factor
verify: bool | str = Options.verify
before_send: BeforeSendHooks = Options.before_send
tracking_plan: TrackingPlan | str | None = Options.tracking_plan
on_violation: OnViolation = Options.on_violation

_SETTINGS = _options.names()
"""Every option is a module setting of the same name."""

_log = logging.getLogger(__name__)

default_client: Client | None = None
"""The client behind the module-level functions; built from the settings on first use."""


_building = threading.RLock()
"""Held while ``default_client`` is built and while a setting is assigned, so neither is lost."""


def _new_lock_after_fork() -> None:
    # The thread that held the lock in the parent does not exist in a forked child: a lock
    # copied while held would block the child's first call forever.
    global _building  # noqa: PLW0603
    _building = threading.RLock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_lock_after_fork)


def _client() -> Client:
    global default_client  # noqa: PLW0603 - the official module-level API
    client = default_client
    if client is None:
        with _building:  # two threads' first calls build one client, not two
            client = default_client
            if client is None:
                module = sys.modules[__name__]
                client = default_client = Client(**{name: getattr(module, name) for name in _SETTINGS})
    return client


def _same(old: object, new: object) -> bool:
    # Equal values are the same setting (15 and 15.0 alike); a value whose == fails is a new one.
    if old is new:
        return True
    try:
        return bool(old == new)
    except Exception:  # noqa: BLE001
        return False


class _SettingsModule(types.ModuleType):
    """Makes assigning a new value to a setting drop ``default_client``, and refuses misspelt settings."""

    def __setattr__(self, name: str, value: Any) -> None:  # noqa: ANN401 - any setting's value
        namespace = self.__dict__
        if name in _SETTINGS:
            # Under the building lock: a client being built now reads either the old value (and
            # is dropped here once built) or the new one; the assignment is never lost.
            with namespace["_building"]:
                old = namespace.get("default_client")
                if old is not None and not _same(namespace.get(name), value):
                    namespace["default_client"] = None
                    old.close()
                super().__setattr__(name, value)
            return
        if name not in namespace and not name.startswith("_") and not isinstance(value, types.ModuleType):
            close = difflib.get_close_matches(name, _SETTINGS, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; the settings are {', '.join(_SETTINGS)}"
            msg = f"simple_segment has no setting {name!r}{hint}"
            raise AttributeError(msg)
        super().__setattr__(name, value)


identify = forward(_messages.identify, _client)
track = forward(_messages.track, _client)
page = forward(_messages.page, _client)
screen = forward(_messages.screen, _client)
group = forward(_messages.group, _client)
alias = forward(_messages.alias, _client)


def batch(context: Properties | None = None, integrations: Properties | None = None) -> Batch:
    """Return a batch of ``default_client`` (see :meth:`Client.batch`)."""
    return _client().batch(context=context, integrations=integrations)


def _configured_client() -> Client | None:
    # As the official functions do, flush/join/shutdown build default_client from the
    # settings when a write key is set; unlike them, bad settings never make them fail.
    if default_client is None and write_key:
        try:
            return _client()
        except SegmentError:
            _log.debug("default_client could not be built from the settings", exc_info=True)
    return default_client


def flush() -> None:
    """Build ``default_client`` if a write key is set; nothing to send (every call was delivered).  Never fails."""
    _configured_client()


def join() -> None:
    """Build ``default_client`` if a write key is set; there is no thread to wait for.  Never fails."""
    _configured_client()


def shutdown() -> None:
    """Close ``default_client``'s connections (building it first if a write key is set).  Never fails."""
    client = _configured_client()
    if client is not None:
        client.shutdown()


# Tracebacks, reprs and pickles name public objects by their public path
# (``simple_segment.Client``, not ``simple_segment.client.Client``).
for _name in __all__:
    _public = globals()[_name]
    if (
        isinstance(_public, (type, types.FunctionType))
        and not isinstance(_public, types.GenericAlias)  # a type alias, on Python 3.10
        and _public.__module__.startswith(__name__)
    ):
        _public.__module__ = __name__
del _name, _public

sys.modules[__name__].__class__ = _SettingsModule
