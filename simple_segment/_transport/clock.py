"""Where the transport reads the time and waits: the real clock, and the seam tests replace."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    """Where the transport reads the time and waits: the seam tests replace."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back."""
        ...

    def sleep(self, seconds: float) -> None:
        """Wait ``seconds``."""
        ...


class SystemClock:
    """The real clock: :func:`time.monotonic` and :func:`time.sleep`."""

    monotonic = staticmethod(time.monotonic)
    sleep = staticmethod(time.sleep)
