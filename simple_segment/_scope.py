"""``with simple_segment.scope(...)``: ambient context, and delivery held until the block ends.

A :class:`Scope` is a :mod:`contextvars` variable (one per thread, copied into each
asyncio task), read by the one delivery path (``_delivery``) for every message built
while it is active: by the module-level functions, any ``Client`` and any ``Batch``.
Its ``context`` and ``integrations`` are merged under the message's own; with
``defer=True`` the messages are validated and encoded at the call but held in a
:class:`Pending`, and delivered when the outermost deferring scope ends.

This module knows nothing of HTTP or of how a client sends: a :class:`Pending` holds
encoded bytes per *target* (a client's delivery) and asks each target to send its
own as batches.
"""

from __future__ import annotations

import json
import logging
import threading
from contextvars import ContextVar, Token
from types import TracebackType
from typing import Any, Protocol

from ._messages import Properties, mapping, merged_under
from .errors import BatchDeliveryError, EncodedMessages, RetryableBatchDeliveryError, RetryableError, SegmentError

__all__ = ["Pending", "Scope", "Target", "current", "scope"]

log = logging.getLogger("simple_segment")


class Target(Protocol):
    """Where held messages go: one client's delivery (``_delivery.Delivery``)."""

    def send_held(self, encoded: list[bytes]) -> int:
        """Send ``encoded`` as batches; return how many were delivered; raise BatchDeliveryError."""
        ...  # pragma: no cover - a protocol


class Pending:
    """Messages a deferring scope holds, to be delivered later as one batch per client.

    What :meth:`Scope.detach` returns.  ``len(pending)`` is the number of messages held
    and :meth:`message_ids` their messageIds (for a log line); :meth:`deliver` sends
    them.  Only the encoded bytes of each message are kept.

    Since: 0.2.0
    """

    __slots__ = ("_closed", "_held", "_lock")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: dict[Target, list[bytes]] = {}  # clients in the order of their first message
        self._closed = False

    def __len__(self) -> int:
        with self._lock:
            return sum(len(encoded) for encoded in self._held.values())

    def __repr__(self) -> str:
        return f"<simple_segment.Pending messages={len(self)} clients={len(self._held)}>"

    def hold(self, target: Target, encoded: list[bytes]) -> bool:
        """Hold ``encoded`` for ``target``; False (nothing held) once :meth:`deliver` has begun."""
        with self._lock:
            if self._closed:
                return False
            self._held.setdefault(target, []).extend(encoded)
        return True

    def message_ids(self) -> list[str]:
        """Return the messageIds of the held messages, client by client, each in call order."""
        with self._lock:
            held = [data for encoded in self._held.values() for data in encoded]
        return [str(json.loads(data).get("messageId")) for data in held]

    def deliver(self) -> None:
        """Deliver every held message: one batch per client, split at 500,000 bytes and 2,500 messages.

        Safe to call from any thread; a second call delivers nothing.  A message built
        after the first call (by a task that outlived the scope) is delivered at its own
        call, as outside any scope.  A failed request goes to its client's ``on_error``
        when it has one.  Otherwise every client is still tried, then
        :class:`~simple_segment.BatchDeliveryError` is raised (its retryable subclass when
        every failure was retryable) whose ``unsent`` lists every message not delivered,
        client by client, in call order, and whose ``__cause__`` is the first failure.

        Since: 0.2.0
        """
        with self._lock:
            held, self._held, self._closed = self._held, {}, True
        sent = 0
        failures: list[BatchDeliveryError] = []
        unexpected: Exception | None = None
        for target, encoded in held.items():
            try:
                sent += target.send_held(encoded)
            except BatchDeliveryError as exc:  # noqa: PERF203 - one per client: every client is tried
                sent += exc.sent
                failures.append(exc)
            except Exception as exc:  # noqa: BLE001 - re-raised below, once the other clients are tried
                unexpected = unexpected or exc
        if unexpected is not None:
            if failures:
                log.error("deferred delivery failed: %s", "; ".join(str(failure) for failure in failures))
            raise unexpected
        if not failures:
            return
        unsent = _joined([failure.unsent for failure in failures])
        first = failures[0]
        cause = first.__cause__ if isinstance(first.__cause__, Exception) else first
        retryable = all(isinstance(failure, RetryableError) for failure in failures)
        kind = RetryableBatchDeliveryError if retryable else BatchDeliveryError
        error = kind(
            f"deferred delivery failed: {len(unsent)} messages not delivered ({cause})",
            unsent=unsent,
            attempts=first.attempts,
            sent=sent,
        )
        raise error from cause


_current: ContextVar[Scope | None] = ContextVar("simple_segment_scope", default=None)


def current() -> Scope | None:
    """Return the innermost active scope of this thread or task, or None."""
    return _current.get()


class Scope:
    """A block whose messages get ambient ``context``/``integrations``, and with ``defer`` wait for its end.

    Made by :func:`simple_segment.scope`; see there.  ``context`` and ``integrations``
    are the merged values in effect inside the block (the outer scopes' under this
    one's); ``pending`` is where deferred messages are held (None when no deferring
    scope is active).  A Scope is entered once at a time; make a new one per request.

    Since: 0.2.0
    """

    __slots__ = (
        "_context_given", "_integrations_given", "_owns", "_token", "context", "defer", "integrations", "pending",
    )

    def __init__(
        self,
        *,
        context: Properties | None = None,
        integrations: Properties | None = None,
        defer: bool = False,
    ) -> None:
        self._context_given = mapping(context, "context")
        self._integrations_given = mapping(integrations, "integrations")
        self.defer = bool(defer)
        """Whether this scope asked for deferred delivery (it may join an outer deferring scope)."""
        self.context: dict[str, Any] = self._context_given
        """The context merged under each message's inside the block (outer scopes' included once entered)."""
        self.integrations: dict[str, Any] = self._integrations_given
        """The integrations merged under each message's inside the block."""
        self.pending: Pending | None = None
        """Where the block's messages are held; None when no deferring scope is active."""
        self._owns = False
        self._token: Token[Scope | None] | None = None

    def __repr__(self) -> str:
        held = "" if self.pending is None else f" pending={len(self.pending)}"
        return f"<simple_segment.Scope defer={self.defer} open={self._token is not None}{held}>"

    def __enter__(self) -> Scope:  # noqa: PYI034 - Self needs Python 3.11
        if self._token is not None:
            msg = "this scope is already open; make a new one with simple_segment.scope()"
            raise SegmentError(msg)
        outer = _current.get()
        if outer is None:
            self.context, self.integrations, self.pending = self._context_given, self._integrations_given, None
        else:
            self.context = merged_under(self._context_given, outer.context)
            self.integrations = merged_under(self._integrations_given, outer.integrations)
            self.pending = outer.pending  # an inner scope, deferring or not, holds into the outer's
        self._owns = self.defer and self.pending is None
        if self._owns:
            self.pending = Pending()
        self._token = _current.set(self)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        pending = self.detach()
        if not pending:
            return
        if exc_type is None:
            pending.deliver()
            return
        # The block's own exception propagates; what it made before is still delivered
        # (each call returned (True, msg)), and a failure of that can only be logged.
        held = pending.message_ids()
        try:
            pending.deliver()
        except BatchDeliveryError as error:
            log.error(  # noqa: TRY400 - the block's exception is the one being raised; this one is reported
                "deferred delivery failed after the block raised: %d messages not delivered (%s); messageIds: %s",
                len(error.unsent),
                error,
                ", ".join(str(msg.get("messageId")) for msg in error.unsent),
            )
        except Exception:  # an on_error that raised, say: it must not replace the block's exception
            log.exception(
                "deferred delivery failed after the block raised; of these %d messages some may not be "
                "delivered: %s",
                len(held),
                ", ".join(held),
            )

    def detach(self) -> Pending:
        """End the scope in this context without delivering; return what it holds.

        For code that delivers later or elsewhere (a web middleware delivers after the
        response, maybe from another thread): call ``scope.__enter__()``, run the work,
        then ``pending = scope.detach()`` and, when convenient, ``pending.deliver()``.
        The returned :class:`Pending` is empty unless this is the outermost deferring
        scope (an inner scope's messages belong to the outer one).  Raises
        :class:`~simple_segment.SegmentError` when the scope is not open, or when called
        from another thread or task than the one that entered it.

        Since: 0.2.0
        """
        token = self._token
        if token is None:
            msg = "this scope is not open"
            raise SegmentError(msg)
        try:
            _current.reset(token)
        except ValueError as exc:
            msg = "a scope must be ended in the thread or task that entered it"
            raise SegmentError(msg) from exc
        self._token = None
        if self._owns and self.pending is not None:
            return self.pending
        return Pending()


def scope(
    *,
    context: Properties | None = None,
    integrations: Properties | None = None,
    defer: bool = False,
) -> Scope:
    """Return a scope: ``with simple_segment.scope(context=..., defer=True):``.

    Every message built inside the block — by the module-level functions, any
    :class:`~simple_segment.Client` and any :class:`~simple_segment.Batch` — gets
    ``context`` and ``integrations`` merged under its own, recursively for nested
    dicts (``context["page"]``): the message's own keys win, then a ``batch(context=...)``,
    then the inner scope, then the outer one.  Before ``before_send`` runs, so hooks
    see the merged message.

    With ``defer=True`` each call validates and encodes its message at once (a bad
    argument still raises at the call) and returns ``(True, msg)``; nothing is sent
    until the outermost deferring scope ends, which delivers everything held as one
    batch per client (split at 500,000 bytes and 2,500 messages), a ``batch()`` block
    inside handing its messages over when it ends.  Failures follow the batch rules: a
    failed request goes to the client's ``on_error``, otherwise the block's end raises
    :class:`~simple_segment.BatchDeliveryError` (``.unsent``) after trying every client.
    A deferring scope inside another joins it, and a ``defer=False`` scope inside a
    deferring one does not send early.  If the block raises, what it made is still
    delivered, a delivery failure is logged at ERROR, and the block's exception propagates.

    The scope is a :mod:`contextvars` variable: asyncio tasks created inside the block
    inherit it, threads started inside it do not (run them with
    ``contextvars.copy_context().run`` to share it).  Raises
    :class:`~simple_segment.ValidationError` for a ``context`` or ``integrations``
    that is not a dict of JSON-able values.

    Since: 0.2.0
    """
    return Scope(context=context, integrations=integrations, defer=defer)


def _joined(lists: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    # Each client's failure keeps its unsent messages as bytes (EncodedMessages): joined as
    # bytes too, so a deferred scope's failure never holds them all as dicts.
    if len(lists) == 1:
        return lists[0]
    encoded: list[bytes] = []
    for unsent in lists:
        if not isinstance(unsent, EncodedMessages):
            return [msg for each in lists for msg in each]
        encoded.extend(unsent._encoded())  # noqa: SLF001 - the bytes, without decoding them
    return EncodedMessages(encoded)
