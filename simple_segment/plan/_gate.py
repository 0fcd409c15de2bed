"""What a client does with a message that breaks its tracking plan (``on_violation``)."""

from __future__ import annotations

import logging
import threading
from typing import Literal

from simple_segment._messages import Message

from ._plan import TrackingPlan, violation_error

__all__ = ["OnViolation", "PlanGate"]

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
