"""What a client does with a message that breaks its tracking plan (``on_violation``)."""

from __future__ import annotations

import logging
import threading
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal, NamedTuple

from simple_segment._messages import Message

from ._plan import TrackingPlan, Violation, violation_error

__all__ = ["OnViolation", "PlanGate", "Seen", "watch", "watchers"]

log = logging.getLogger("simple_segment")

OnViolation = Literal["raise", "drop", "warn", "send"]
"""``on_violation``: raise PlanViolationError, drop the message, log a warning and send, or do not check."""


class PlanGate:
    """Checks each prepared message against the plan; made by the client when it has one.

    Called by :meth:`simple_segment._delivery.Delivery.prepare` with the message as it
    would be sent (after the batch's or scope's context and ``before_send``).  Returns
    the message to send, None to drop it (``"drop"``, counted in :attr:`dropped`), or
    raises :class:`~simple_segment.PlanViolationError` (``"raise"``).
    """

    __slots__ = ("_lock", "_mode", "_validate", "dropped", "plan")

    def __init__(self, plan: TrackingPlan, mode: Literal["raise", "drop", "warn"]) -> None:
        self.plan = plan
        self._validate = plan.validate
        self._mode = mode
        self._lock = threading.Lock()
        self.dropped = 0
        """Messages dropped for breaking the plan (``on_violation="drop"``)."""

    def __call__(self, msg: Message) -> Message | None:
        violations = self._validate(msg)
        if not violations:
            return msg
        if self._mode == "raise":
            raise violation_error(violations)
        listed = "; ".join(str(violation) for violation in violations)
        if self._mode == "warn":
            log.warning("%s %s breaks the tracking plan (sent anyway): %s", msg.get("type"), _name(msg), listed)
            return msg
        with self._lock:
            self.dropped += 1
        log.debug("dropped %s %s: it breaks the tracking plan: %s", msg.get("type"), _name(msg), listed)
        return None


def _name(msg: Message) -> str:
    what = msg.get("event") or msg.get("name")
    return f"{what!r} ({msg.get('messageId')})" if what else str(msg.get("messageId"))


class Seen(NamedTuple):
    """A message that broke a watched plan, and where the code that made it is."""

    message: Message
    violations: list[Violation]
    location: str
    """``file:line`` of the first caller outside simple_segment."""


watchers: tuple[Callable[[Message], None], ...] = ()
"""Checks every client runs on each prepared message (the pytest plugin's plan); they record, never raise."""
_watchers_lock = threading.Lock()
_PACKAGE = str(Path(__file__).resolve().parent.parent)


@contextmanager
def watch(plan: TrackingPlan) -> Iterator[list[Seen]]:
    """Check every message any client prepares against ``plan`` until the block ends; yield what broke it.

    Process-wide, like :func:`simple_segment.testing.capture`; nothing is changed or
    stopped: the list only records each violating message and the line that made it.
    """
    seen: list[Seen] = []
    lock = threading.Lock()

    def record(msg: Message) -> None:
        violations = plan.validate(msg)
        if violations:
            found = Seen(msg, violations, _caller())
            with lock:
                seen.append(found)

    global watchers  # noqa: PLW0603 - one process-wide tuple, swapped whole under a lock
    with _watchers_lock:
        watchers = (*watchers, record)
    try:
        yield seen
    finally:
        with _watchers_lock:
            remaining = list(watchers)
            remaining.remove(record)
            watchers = tuple(remaining)


def _caller() -> str:
    for frame in reversed(traceback.extract_stack()):
        if not str(Path(frame.filename).resolve()).startswith(_PACKAGE):
            return f"{frame.filename}:{frame.lineno}"
    return "?"
