"""The one path of a built message: ``before_send``, encoding, then capture, skip or send.

A single call is a batch of one: :meth:`Delivery.emit` prepares the message and
delivers a one-message request; a :class:`~simple_segment.Batch` prepares each
message and delivers full requests.  :meth:`Delivery.deliver` is the only place that
decides whether a request is captured (:func:`simple_segment.testing.capture`),
skipped (``send=False``) or posted, and the only place that hands a failure to
``on_error``.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import NamedTuple

from . import _messages
from ._calls import Result
from ._messages import Message
from ._options import BeforeSend, OnError
from ._transport import Transport
from ._wire import Envelope, RequestBuffer, decode_messages, encode_message
from .errors import DeliveryError, MessageTooLargeError, ValidationError
from .plan import _gate

__all__ = ["Delivery", "Outcome", "Preview", "intercept"]

log = logging.getLogger("simple_segment")

Recorder = Callable[[list[Message]], None]

_recorders: tuple[Recorder, ...] = ()
_recorders_lock = threading.Lock()


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
"""How errors name a message returned by the hook."""

_SKIPPED = Outcome(ok=True)
_FAILED = Outcome(ok=False)


class Delivery:
    """Prepares and delivers messages for one client; shared by its calls and batches."""

    __slots__ = ("_before_send", "_envelope", "_on_error", "_plan_gate", "_send", "_transport")

    def __init__(  # noqa: PLR0913 - keyword-only, one per part of the path
        self,
        *,
        envelope: Envelope,
        transport: Transport,
        send: bool,
        on_error: OnError | None,
        before_send: BeforeSend | None,
        plan_gate: Callable[[Message], Message | None] | None = None,
    ) -> None:
        self._plan_gate = plan_gate
        """The tracking plan's check (``simple_segment.plan.PlanGate``), or None."""
        self._envelope = envelope
        self._transport = transport
        self._send = send
        self._on_error = on_error
        self._before_send = before_send

    def new_buffer(self) -> RequestBuffer:
        """Return an empty buffer that fills up to one request of this client."""
        return self._envelope.buffer()

    def prepare(self, msg: Message) -> tuple[Message, bytes] | None:
        """Run ``before_send``, check the plan, serialize; return the message and its bytes, or None when dropped.

        Raises :class:`~simple_segment.ValidationError` for a message that cannot be
        sent (also one a hook returned), :class:`~simple_segment.PlanViolationError`
        for one that breaks the plan (``on_violation="raise"``) and whatever the hook
        itself raises.
        """
        hook = self._before_send
        if hook is None:
            data = encode_message(msg)
        else:
            changed = hook(msg)
            if changed is None:
                log.debug("before_send dropped %s", msg.get("messageId"))
                return None
            msg = _messages.check(changed, _HOOK)
            try:
                data = encode_message(msg)
            except MessageTooLargeError:
                raise
            except ValidationError as exc:
                raise ValidationError(f"{_HOOK}.{exc.field}", exc.reason) from exc.__cause__
        for watch in _gate.watchers:  # the pytest plugin's segment_plan: it records, changes nothing
            watch(msg)
        gate = self._plan_gate  # the tracking plan checks the message as it would be sent
        if gate is not None and gate(msg) is None:
            return None
        if log.isEnabledFor(logging.DEBUG):
            log.debug("sending %s", msg)
        return msg, data

    def emit(self, msg: Message) -> Result:
        """Deliver one message as a request of its own; what a single call returns."""
        prepared = self.prepare(msg)
        if prepared is None:
            return False, msg
        msg, data = prepared
        return self.deliver([data], [msg]).ok, msg

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
            exc.messages = messages if messages is not None else _decode(encoded)
            if self._on_error is None:
                raise
            self._on_error(exc, exc.messages)
            return _FAILED
        return Outcome(True, 1, len(encoded), delivered.bytes_sent)  # noqa: FBT003 - positional: the hot path


def _decode(encoded: list[bytes]) -> list[Message]:
    return [Message(msg) for msg in decode_messages(encoded)]
