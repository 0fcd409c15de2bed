"""``with client.batch() as batch:``: many calls, few requests, bounded memory."""

from __future__ import annotations

import logging
import threading
from types import TracebackType
from typing import Any

from ._calls import Calls, Result
from ._delivery import Delivery
from ._messages import Message, Properties, mapping, with_defaults
from .errors import BatchDeliveryError, DeliveryError, RetryableBatchDeliveryError, RetryableError, SegmentError

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
        self._pending = delivery.new_buffer()  # the pending request; only its bytes are kept
        self._unsent: list[dict[str, Any]] = []
        self._failure: DeliveryError | None = None
        self._open = False
        self.messages_sent = 0
        """Messages delivered so far."""
        self.requests_sent = 0
        """Requests delivered so far."""
        self.bytes_sent = 0
        """Request body bytes delivered so far (compressed size with gzip)."""

    def __repr__(self) -> str:
        return (
            f"<simple_segment.Batch pending={len(self._pending)} messages_sent={self.messages_sent}"
            f" requests_sent={self.requests_sent} bytes_sent={self.bytes_sent}>"
        )

    def __enter__(self) -> Batch:  # noqa: PYI034 - Self needs Python 3.11
        with self._lock:
            if self._open:
                msg = "this batch is already open; make a new one with client.batch()"
                raise SegmentError(msg)
            self._open = True
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
                if self._pending:
                    log.warning("batch block raised: %d pending messages not sent", len(self._pending))
                if self._failure is not None:
                    # The block's own exception propagates unchanged; say what else was lost.
                    log.error(
                        "batch block raised after a failed request: %d messages not delivered (%s)",
                        len(self._unsent),
                        self._failure,
                    )
                    self._unsent, self._failure = [], None
                self._pending.take()
                return
            self._flush_locked()
            failure = self._failure
            if failure is None:
                return
            unsent, self._unsent, self._failure = self._unsent, [], None
        kind = RetryableBatchDeliveryError if isinstance(failure, RetryableError) else BatchDeliveryError
        error = kind(
            f"batch delivery failed: {len(unsent)} messages not delivered ({failure})",
            unsent=unsent,
            attempts=failure.attempts,
            sent=self.messages_sent,
        )
        raise error from failure

    def _emit(self, msg: Message) -> Result:
        if not self._open:
            error = "a batch takes calls only inside its block: `with client.batch() as batch:`"
            raise SegmentError(error)
        if self._context or self._integrations:
            msg = with_defaults(msg, self._context, self._integrations)
        prepared = self._delivery.prepare(msg)
        if prepared is None:
            return False, msg
        msg, data = prepared
        with self._lock:
            if not self._open:
                error = "this batch's block ended while the call was being made"
                raise SegmentError(error)
            if self._failure is None and not self._pending.fits(data):
                self._flush_locked()
            if self._failure is not None:
                self._unsent.append(msg)
            else:
                self._pending.add(data)
        return True, msg

    def flush(self) -> None:
        """Post the pending messages now (nothing when there are none)."""
        with self._lock:
            self._flush_locked()

    def _flush_locked(self) -> None:
        if not self._pending or self._failure is not None:
            return
        encoded = self._pending.take()
        try:
            outcome = self._delivery.deliver(encoded)
        except DeliveryError as exc:
            self._failure = exc
            self._unsent.extend(exc.messages)
            return
        self.messages_sent += outcome.messages
        self.requests_sent += outcome.requests
        self.bytes_sent += outcome.bytes_sent
