"""``with client.batch() as batch:``: many calls, few requests, bounded memory."""

from __future__ import annotations

import logging
import threading
from types import TracebackType
from typing import Any

from . import _scope
from ._calls import Calls, Result
from ._delivery import Delivery, Outbox
from ._messages import Message, Properties, mapping, with_defaults
from .errors import SegmentError

log = logging.getLogger("simple_segment")


class Batch(Calls):
    """Calls made on a batch are posted together, in as few requests as allowed.

    Use it as ``with client.batch() as batch:``.  Each call validates and serializes
    its message at once (a bad argument raises at that line) and returns
    ``(True, msg)``.  A request is posted when the next message would take it past
    500,000 bytes or 2,500 messages, and the rest when the block ends, so memory holds
    about one request whatever the number of calls.  :meth:`flush` posts what is
    pending now.

    If the block raises, pending messages are dropped and the exception propagates
    unchanged.  If a request fails (after the client's retries), the batch sends
    nothing more: later calls are still validated and collected, and when the block
    ends it raises :class:`~simple_segment.BatchDeliveryError` whose ``unsent`` lists
    every message not delivered.  With the client's ``on_error``, it is called once per
    failed request with that request's messages, and the batch goes on.

    A batch opened inside a deferring :func:`~simple_segment.scope` posts nothing
    itself: when its block ends (or at :meth:`flush`) it hands its messages to the
    scope, which delivers them when it ends; its counters then stay at 0.  Messages
    get the active scope's ``context``/``integrations`` under the batch's own.

    ``messages_sent``, ``requests_sent`` and ``bytes_sent`` count what was delivered.
    A batch is independent of any other (nesting one in another makes two separate
    batches), and may be used from several threads; its calls are serialized by a lock.
    """

    def __init__(
        self,
        delivery: Delivery,
        *,
        context: Properties | None = None,
        integrations: Properties | None = None,
    ) -> None:
        self._delivery = delivery
        self._context: dict[str, Any] | None = mapping(context, "context") or None
        self._integrations: dict[str, Any] | None = mapping(integrations, "integrations") or None
        self._lock = threading.RLock()
        self._outbox = Outbox(delivery)
        self._deferred: _scope.Pending | None = None  # the deferring scope's, when opened in one
        self._held: list[bytes] = []  # for that scope, handed over at the block's end
        self._open = False

    @property
    def messages_sent(self) -> int:
        """Messages delivered so far."""
        return self._outbox.messages_sent

    @property
    def requests_sent(self) -> int:
        """Requests delivered so far."""
        return self._outbox.requests_sent

    @property
    def bytes_sent(self) -> int:
        """Request body bytes delivered so far (compressed size with gzip)."""
        return self._outbox.bytes_sent

    def __repr__(self) -> str:
        return (
            f"<simple_segment.Batch pending={len(self._outbox) + len(self._held)} messages_sent={self.messages_sent}"
            f" requests_sent={self.requests_sent} bytes_sent={self.bytes_sent}>"
        )

    def __enter__(self) -> Batch:  # noqa: PYI034 - Self needs Python 3.11
        with self._lock:
            if self._open:
                msg = "this batch is already open; make a new one with client.batch()"
                raise SegmentError(msg)
            self._open = True
            scope = _scope.current()
            self._deferred = None if scope is None else scope.pending
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        with self._lock:
            self._open = False
            if exc_type is not None:
                held, self._held = len(self._held), []
                pending, unsent, failure = self._outbox.discard()
                if pending or held:
                    log.warning("batch block raised: %d pending messages not sent", pending + held)
                if failure is not None:
                    # The block's own exception propagates unchanged; say what else was lost.
                    log.error(
                        "batch block raised after a failed request: %d messages not delivered (%s)", unsent, failure
                    )
                return
            self._hand_over_locked()
            self._outbox.flush()
            self._outbox.raise_failure("batch delivery failed")

    def _emit(self, msg: Message) -> Result:
        if not self._open:
            error = "a batch takes calls only inside its block: `with client.batch() as batch:`"
            raise SegmentError(error)
        if self._context or self._integrations:
            msg = with_defaults(msg, self._context, self._integrations)
        msg, data = self._delivery.prepare(msg)
        if data is None:
            return False, msg
        with self._lock:
            if not self._open:
                error = "this batch's block ended while the call was being made"
                raise SegmentError(error)
            if self._deferred is not None:
                self._held.append(data)
            else:
                self._outbox.add(data, msg)
        return True, msg

    def flush(self) -> None:
        """Post the pending messages now (nothing when there are none); in a deferring scope, hand them to it."""
        with self._lock:
            self._hand_over_locked()
            self._outbox.flush()

    def _hand_over_locked(self) -> None:
        if not self._held or self._deferred is None:
            return
        held, self._held = self._held, []
        if not self._deferred.hold(self._delivery, held):
            # The scope was delivered while this batch was open: the batch sends them itself.
            self._deferred = None
            for data in held:
                self._outbox.add(data)
