"""``capture()``: record what would be sent, with no HTTP."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from simple_segment._delivery import intercept
from simple_segment._messages import Message
from simple_segment.plan import TrackingPlan

__all__ = ["Captured", "capture"]


class Captured:
    """Messages recorded by :func:`capture`, in the order they were sent."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._messages: list[Message] = []

    def _record(self, messages: list[Message]) -> None:
        with self._lock:
            self._messages.extend(messages)

    @property
    def messages(self) -> list[Message]:
        """A copy of every recorded message."""
        with self._lock:
            return list(self._messages)

    def by_type(self, type_: str) -> list[Message]:
        """Return the recorded messages of one type (``"track"``, ``"identify"``...)."""
        return [msg for msg in self.messages if msg.get("type") == type_]

    def by_event(self, event: str) -> list[Message]:
        """Return the recorded track messages of one event name."""
        return [msg for msg in self.messages if msg.get("event") == event]

    def by_message_id(self, message_id: str) -> Message | None:
        """Return the recorded message with this messageId, or None."""
        return next((msg for msg in self.messages if msg.get("messageId") == message_id), None)

    def check(self, plan: TrackingPlan) -> None:
        """Check every recorded message against ``plan`` at once.

        Raises :class:`~simple_segment.PlanViolationError` naming every violation of
        every message, its path led by the message's position
        (``messages[2].properties.currency``); returns None when all conform.

        Since: 0.2.0
        """
        plan.check_all(self.messages)

    def clear(self) -> None:
        """Forget what was recorded."""
        with self._lock:
            self._messages.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._messages)

    def __iter__(self) -> Iterator[Message]:
        return iter(self.messages)

    def __getitem__(self, index: int) -> Message:
        with self._lock:
            return self._messages[index]

    def __repr__(self) -> str:
        return f"<Captured {len(self)} messages>"


@contextmanager
def capture() -> Iterator[Captured]:
    """Record every message that any client would send, and send nothing.

    Inside the block no client opens a connection: each call (and each batch request)
    hands its messages here and succeeds as if the server had accepted them, so a
    batch counts ``messages_sent``, ``requests_sent`` and ``bytes_sent`` as a real run
    would.  Validation and ``before_send`` still run, so bad arguments raise as they
    would in production.  Clients made with ``send=False`` are captured too (the block
    records what the code tried to send).  Capturing is process-wide (calls from every
    thread are recorded, so nothing reaches the network); blocks may nest, and each
    records what was sent while it was open.
    """
    captured = Captured()
    with intercept(captured._record):  # noqa: SLF001 - the recorder is this module's own
        yield captured


