"""The one path of a built message: scope defaults, ``before_send``, encoding, then capture, skip or send.

A single call is a batch of one: :meth:`Delivery.emit` prepares the message and
delivers a one-message request (or, inside a deferring :func:`~simple_segment.scope`,
holds it); a :class:`~simple_segment.Batch` prepares each message and fills requests
through an :class:`Outbox`, as a deferring scope's end does with what it held.
:meth:`Delivery.deliver` is the only place that decides whether a request is
captured (:func:`simple_segment.testing.capture`), skipped (``send=False``) or
posted, and the only place that hands a failure to ``on_error``.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import NamedTuple

from . import _messages
from ._messages import Message, Result
from ._options import BeforeSend, BeforeSendHooks, OnError
from ._scope import current as current_scope
from ._transport import Transport
from ._wire import Envelope, RequestBuffer, decode_messages, encode_message
from .errors import (
    BatchDeliveryError,
    DeliveryError,
    EncodedMessages,
    MessageTooLargeError,
    RetryableBatchDeliveryError,
    RetryableError,
    ValidationError,
)
from .plan import _gate

__all__ = ["Delivery", "Outbox", "Outcome", "Preview", "intercept"]

log = logging.getLogger("simple_segment")

Recorder = Callable[[list[Message]], None]

_recorders: tuple[Recorder, ...] = ()
_recorders_lock = threading.Lock()


def _new_lock_after_fork() -> None:
    # A lock another thread held at the fork would stay held in the child for ever.
    global _recorders_lock  # noqa: PLW0603
    _recorders_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_lock_after_fork)


@contextmanager
def intercept(recorder: Recorder) -> Iterator[None]:
    """Hand every request any client would deliver to ``recorder`` instead, until the block ends.

    Process-wide (calls from every thread are intercepted, so code under test that
    sends from a thread pool never reaches the network); blocks may nest and each
    recorder sees what was delivered while it was installed.  ``send=False`` clients
    are intercepted too: the recorder sees what the code tried to send.
    """
    global _recorders  # noqa: PLW0603 - the one process-wide switch, swapped whole under a lock
    with _recorders_lock:
        _recorders = (*_recorders, recorder)
    try:
        yield
    finally:
        with _recorders_lock:
            remaining = list(_recorders)
            remaining.remove(recorder)
            _recorders = tuple(remaining)


class Outcome(NamedTuple):
    """What delivering one request did (a tuple: it is made on every call)."""

    ok: bool
    """False only when delivery failed and ``on_error`` took the error."""
    requests: int = 0
    """1 when the request was posted and accepted (or captured), else 0."""
    messages: int = 0
    """Messages delivered (or captured)."""
    bytes_sent: int = 0
    """Body bytes of the request as sent (compressed size with gzip)."""


@dataclass(frozen=True)
class Preview:
    """A request as it would be sent, for showing: credentials redacted."""

    headers: dict[str, str]
    """Every header, ``Content-Length`` of the real wire body included."""
    body: bytes
    """The JSON body before compression, ``writeKey`` shown as ``***``."""


_HOOK = "before_send()"
"""How errors name a message returned by the hook (``before_send[i]()`` for a list's i-th)."""

_SKIPPED = Outcome(ok=True)
_FAILED = Outcome(ok=False)


class Delivery:
    """Prepares and delivers messages for one client; shared by its calls and batches."""

    __slots__ = ("_envelope", "_hooks", "_on_error", "_plan_gate", "_send", "_transport")

    def __init__(  # noqa: PLR0913 - keyword-only, one per part of the path
        self,
        *,
        envelope: Envelope,
        transport: Transport,
        send: bool,
        on_error: OnError | None,
        before_send: BeforeSendHooks,
        plan_gate: Callable[[Message], Message | None] | None = None,
    ) -> None:
        self._plan_gate = plan_gate
        """The tracking plan's check (``simple_segment.plan.PlanGate``), or None."""
        self._envelope = envelope
        self._transport = transport
        self._send = send
        self._on_error = on_error
        self._hooks: tuple[tuple[BeforeSend, str], ...] = _hooks(before_send)

    def new_buffer(self) -> RequestBuffer:
        """Return an empty buffer that fills up to one request of this client."""
        return self._envelope.buffer()

    def prepare(self, msg: Message) -> tuple[Message, bytes | None]:
        """Merge the scope's defaults, run the hooks, check the plan and serialize; return the message and its bytes.

        The bytes are None when a ``before_send`` hook or the tracking plan
        (``on_violation="drop"``) dropped the message (the message is then the one the
        hook was given, or the one checked).  Raises :class:`~simple_segment.ValidationError`
        for a message that cannot be sent (also one a hook returned),
        :class:`~simple_segment.PlanViolationError` for one that breaks the plan
        (``on_violation="raise"``) and whatever a hook
        itself raises.
        """
        scope = current_scope()
        if scope is not None and (scope.context or scope.integrations):
            msg = _messages.with_defaults(msg, scope.context, scope.integrations)
        name: str | None = None
        for hook, name in self._hooks:  # in order; each sees what the previous one returned
            changed = hook(msg)
            if changed is None:
                log.debug("%s dropped %s", name, msg.get("messageId"))
                return msg, None
            msg = _messages.check(changed, name)
        if name is None:
            data = encode_message(msg)
        else:
            try:
                data = encode_message(msg)
            except MessageTooLargeError:
                raise
            except ValidationError as exc:
                raise ValidationError(f"{name}.{exc.field}", exc.reason) from exc.__cause__
        for watch in _gate.watchers:  # the pytest plugin's segment_plan: it records, changes nothing
            watch(msg)
        gate = self._plan_gate  # the tracking plan checks the message as it would be sent
        if gate is not None and gate(msg) is None:
            return msg, None
        if log.isEnabledFor(logging.DEBUG):
            log.debug("sending %s", msg)
        return msg, data

    def emit(self, msg: Message) -> Result:
        """Deliver one message as a request of its own, or hold it in a deferring scope; what a call returns."""
        msg, data = self.prepare(msg)
        if data is None:
            return False, msg
        scope = current_scope()
        if scope is not None and scope.pending is not None and scope.pending.hold(self, [data]):
            return True, msg
        return self.deliver([data], [msg]).ok, msg

    def send_held(self, encoded: list[bytes]) -> int:
        """Send messages a deferring scope held, as a batch does; return how many were delivered.

        Raises :class:`~simple_segment.BatchDeliveryError` (``.unsent``) after a failed
        request when there is no ``on_error``.
        """
        outbox = Outbox(self)
        for data in encoded:
            outbox.add(data)
        outbox.flush()
        outbox.raise_failure("deferred delivery failed")
        return outbox.messages_sent

    def preview(self, encoded: list[bytes]) -> Preview:
        """Return the request that :meth:`deliver` would post for ``encoded`` now, redacted."""
        wire = self._transport.encode(self._envelope.render(encoded))
        return Preview(self._transport.wire_headers(wire), Envelope("***").render(encoded))

    def deliver(self, encoded: list[bytes], messages: list[Message] | None = None) -> Outcome:
        """Capture, skip or post one request holding the serialized messages ``encoded``.

        ``messages`` are those messages as dicts, when the caller still has them (a
        batch keeps only bytes; they are decoded again only when needed).  A failure
        raises :class:`DeliveryError` with ``.messages`` set, or, with ``on_error``,
        calls ``on_error(error, messages)`` and returns a failed :class:`Outcome`.
        """
        recorders = _recorders
        if recorders:
            captured = messages if messages is not None else _decode(encoded)
            for record in recorders:
                record(captured)
            body = self._transport.encode(self._envelope.render(encoded))
            return Outcome(ok=True, requests=1, messages=len(encoded), bytes_sent=len(body))
        if not self._send:
            return _SKIPPED
        try:
            delivered = self._transport.post(functools.partial(self._envelope.render, encoded))
        except DeliveryError as exc:
            # Still encoded when the caller has no dicts: a failing batch keeps only bytes.
            exc.messages = messages if messages is not None else EncodedMessages(encoded)
            if self._on_error is None:
                raise
            self._on_error(exc, exc.messages)
            return _FAILED
        return Outcome(True, 1, len(encoded), delivered.bytes_sent)  # noqa: FBT003 - positional: the hot path


class Outbox:
    """Requests of one client being filled from encoded messages and sent as each fills up.

    What a :class:`~simple_segment.Batch` and a deferring scope's end send through.
    It holds at most one pending request.  After a failed request (with no
    ``on_error``) it sends nothing more: the failed request's messages and every
    later one are collected as ``unsent``, in order and still encoded (the bytes are
    about a fifth of the memory of the dicts), and :meth:`raise_failure` raises them
    as a :class:`~simple_segment.BatchDeliveryError` whose ``unsent`` decodes them on
    access (:class:`~simple_segment.errors.EncodedMessages`).
    Not thread-safe: its owner serializes calls.
    """

    __slots__ = ("_delivery", "_failure", "_pending", "_unsent", "bytes_sent", "messages_sent", "requests_sent")

    def __init__(self, delivery: Delivery) -> None:
        self._delivery = delivery
        self._pending = delivery.new_buffer()  # only the bytes of the pending request are kept
        self._unsent: list[bytes] = []
        self._failure: DeliveryError | None = None
        self.messages_sent = 0
        self.requests_sent = 0
        self.bytes_sent = 0

    def __len__(self) -> int:
        """Messages pending (not yet sent, failures excepted)."""
        return len(self._pending)

    def add(self, data: bytes, msg: Message | None = None) -> None:
        """Add one encoded message (``msg`` is it as a dict, when the caller has it); send a full request first."""
        del msg  # only the bytes are kept, sent or not
        if self._failure is None and not self._pending.fits(data):
            self.flush()
        if self._failure is not None:
            self._unsent.append(data)
        else:
            self._pending.add(data)

    def flush(self) -> None:
        """Send the pending request now (nothing when there is none or a request failed)."""
        if not self._pending or self._failure is not None:
            return
        encoded = self._pending.take()
        try:
            outcome = self._delivery.deliver(encoded)
        except DeliveryError as exc:
            self._failure = exc
            self._unsent.extend(encoded)  # exc.messages, as the bytes that were posted
            return
        self.messages_sent += outcome.messages
        self.requests_sent += outcome.requests
        self.bytes_sent += outcome.bytes_sent

    def discard(self) -> tuple[int, int, DeliveryError | None]:
        """Drop what is pending and any failure; return the counts dropped (pending, unsent) and the failure."""
        dropped = (len(self._pending.take()), len(self._unsent), self._failure)
        self._unsent, self._failure = [], None
        return dropped

    def raise_failure(self, what: str) -> None:
        """Raise a BatchDeliveryError if a request failed (``what`` starts its text); then forget the failure."""
        failure = self._failure
        if failure is None:
            return
        unsent, self._unsent, self._failure = self._unsent, [], None
        kind = RetryableBatchDeliveryError if isinstance(failure, RetryableError) else BatchDeliveryError
        error = kind(
            f"{what}: {len(unsent)} messages not delivered ({failure})",
            unsent=EncodedMessages(unsent),
            attempts=failure.attempts,
            sent=self.messages_sent,
        )
        raise error from failure


def _hooks(before_send: BeforeSendHooks) -> tuple[tuple[BeforeSend, str], ...]:
    # Options has made it None, one callable, or a flat tuple of callables.
    if before_send is None:
        return ()
    if callable(before_send):
        return ((before_send, _HOOK),)
    return tuple((hook, f"before_send[{index}]()") for index, hook in enumerate(before_send) if callable(hook))


def _decode(encoded: list[bytes]) -> list[Message]:
    return [Message(msg) for msg in decode_messages(encoded)]
