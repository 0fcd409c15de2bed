"""``with client.batch() as batch:``: many calls, few requests, bounded memory."""

from __future__ import annotations

import logging
import threading
from types import TracebackType
from typing import TYPE_CHECKING, Any

from ._calls import Calls, Result
from ._messages import Message, with_defaults
from ._wire import MAX_REQUEST_BYTES, MAX_REQUEST_MESSAGES, encode_message, to_json_value
from .errors import BatchDeliveryError, DeliveryError, SegmentError

if TYPE_CHECKING:
    from .client import Client

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
        client: Client,
        *,
        context: dict[str, Any] | None = None,
        integrations: dict[str, Any] | None = None,
    ) -> None:
        self._client = client
        self._context: dict[str, Any] | None = to_json_value(context, "context") if context else None
        self._integrations: dict[str, Any] | None = (
            to_json_value(integrations, "integrations") if integrations else None
        )
        self._lock = threading.RLock()
        self._encoded: list[bytes] = []  # the pending messages; only their bytes are kept
        self._pending_bytes = 0
        self._unsent: list[Message] = []
        self._failure: DeliveryError | None = None
        self._open = False
        self._envelope = client._envelope  # noqa: SLF001 - the batch is part of the client
        self.messages_sent = 0
        """Messages delivered so far."""
        self.requests_sent = 0
        """Requests delivered so far."""
        self.bytes_sent = 0
        """Request body bytes delivered so far (compressed size with gzip)."""

    def __repr__(self) -> str:
        return (
            f"<simple_segment.Batch pending={len(self._encoded)} messages_sent={self.messages_sent}"
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
                if self._encoded:
                    log.warning("batch block raised: %d pending messages not sent", len(self._encoded))
                if self._failure is not None:
                    # The block's own exception propagates unchanged; say what else was lost.
                    log.error(
                        "batch block raised after a failed request: %d messages not delivered (%s)",
                        len(self._unsent),
                        self._failure,
                    )
                    self._unsent, self._failure = [], None
                self._clear_pending()
                return
            self._flush_locked()
            failure = self._failure
            if failure is None:
                return
            unsent, self._unsent, self._failure = self._unsent, [], None
        error = BatchDeliveryError(
            f"batch delivery failed: {len(unsent)} messages not delivered ({failure})",
            sent=self.messages_sent,
            unsent=unsent,
            retryable=failure.retryable,
            attempts=failure.attempts,
        )
        raise error from failure

    def _emit(self, msg: Message) -> Result:
        if self._context or self._integrations:
            msg = with_defaults(msg, self._context, self._integrations)
        data = encode_message(msg)
        with self._lock:
            if not self._open:
                error = "a batch takes calls only inside its block: `with client.batch() as batch:`"
                raise SegmentError(error)
            if self._failure is not None:
                self._unsent.append(msg)
                return True, msg
            count = len(self._encoded)
            if count and (
                count >= MAX_REQUEST_MESSAGES
                or self._envelope.body_size(count + 1, self._pending_bytes + len(data)) > MAX_REQUEST_BYTES
            ):
                self._flush_locked()
                if self._failure is not None:
                    self._unsent.append(msg)
                    return True, msg
            self._encoded.append(data)
            self._pending_bytes += len(data)
        return True, msg

    def flush(self) -> None:
        """Post the pending messages now (nothing when there are none)."""
        with self._lock:
            self._flush_locked()

    def _flush_locked(self) -> None:
        if not self._encoded or self._failure is not None:
            return
        encoded = self._encoded
        self._clear_pending()
        try:
            delivered = self._client._deliver(encoded)  # noqa: SLF001
        except DeliveryError as exc:
            on_error = self._client.on_error
            if on_error is None:
                self._failure = exc
                self._unsent.extend(exc.messages)
                return
            on_error(exc, exc.messages)
            return
        if delivered is not None:
            self.messages_sent += len(encoded)
            self.requests_sent += 1
            self.bytes_sent += delivered.bytes_sent

    def _clear_pending(self) -> None:
        self._encoded, self._pending_bytes = [], 0
