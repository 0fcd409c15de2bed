"""What `FakeSegment` remembers: recorded requests and messages, scripts, waits.

`Recorder` holds all state that request threads share, behind one lock, and
knows nothing of HTTP or sockets. Waits are bounded by the caller's timeout.

Since: 0.1.0
"""

from __future__ import annotations

import collections
import dataclasses
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["FakeSegmentTimeoutError", "RecordedRequest", "Recorder", "Script"]

_MAX_ERRORS_KEPT = 100


class FakeSegmentTimeoutError(AssertionError, TimeoutError):
    """`FakeSegment.wait_for_messages` (or ``_requests``) gave up waiting.

    It is an `AssertionError`, so pytest reports it as a failed expectation,
    and a `TimeoutError`, so code that catches timeouts catches it too.
    """


@dataclasses.dataclass(frozen=True)
class RecordedRequest:
    """One HTTP request as `FakeSegment` received and answered it.

    Attributes:
        method: The HTTP method, e.g. ``"POST"``.
        path: The request target as sent, including any query string.
        headers: Request headers with lower-cased names (repeated headers
            joined with ``", "``).
        body: The raw body as received on the wire (still gzipped if it was).
        json: The decoded JSON body (after gunzip), or None if it was not
            valid JSON.
        write_key: The HTTP Basic user name, else the body's ``writeKey``,
            else None.
        status: The status code answered; 0 if the connection was dropped.
        received_at: When the request was read, as `time.time`.

    """

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    json: Any
    write_key: str | None
    status: int
    received_at: float

    @property
    def batch(self) -> list[dict[str, Any]]:
        """The messages in the body: its ``batch`` list, or the single message.

        Empty if the body was not a JSON object. Entries are returned as sent,
        even if they are not valid messages.
        """
        if not isinstance(self.json, dict):
            return []
        batch = self.json.get("batch")
        if isinstance(batch, list):
            return list(batch)
        return [self.json]


@dataclasses.dataclass(frozen=True)
class Script:
    """One scripted answer queued by `FakeSegment.respond_with`.

    ``body`` None means "the server's own body for this status".
    """

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes | None
    delay: float
    drop: bool


class Recorder:
    """All mutable state shared by request threads, behind one lock.

    Attributes are read and written only while holding `lock` (`changed` is a
    condition on that lock, notified whenever something is recorded or cleared).
    """

    def __init__(
        self,
        max_messages: int,
        max_requests: int,
        on_message: Callable[[dict[str, Any]], None] | None,
    ) -> None:
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)
        self.on_message = on_message
        self.requests: collections.deque[RecordedRequest] = collections.deque(maxlen=max_requests)
        self.messages: collections.deque[dict[str, Any]] = collections.deque(maxlen=max_messages)
        self.scripts: collections.deque[Script] = collections.deque()
        self.errors: collections.deque[BaseException] = collections.deque(maxlen=_MAX_ERRORS_KEPT)
        self.requests_seen = 0
        self.messages_accepted = 0
        self.dropped_requests = 0
        self.dropped_messages = 0
        self.connections_accepted = 0

    def clear(self) -> None:
        """Forget requests, messages, scripts, errors and counters."""
        with self.lock:
            self.requests.clear()
            self.messages.clear()
            self.scripts.clear()
            self.errors.clear()
            self.requests_seen = 0
            self.messages_accepted = 0
            self.dropped_requests = 0
            self.dropped_messages = 0
            self.connections_accepted = 0
            self.changed.notify_all()

    # -- scripts ---------------------------------------------------------------

    def add_script(self, script: Script, times: int) -> None:
        """Queue ``script`` for the next ``times`` POSTs."""
        with self.lock:
            self.scripts.extend([script] * times)

    def next_script(self) -> Script | None:
        """Take the script for this POST, or None to answer normally."""
        with self.lock:
            return self.scripts.popleft() if self.scripts else None

    def pending_scripts(self) -> int:
        """Return how many queued scripts are not used yet."""
        with self.lock:
            return len(self.scripts)

    # -- recording -------------------------------------------------------------

    def record(self, request: RecordedRequest, messages: tuple[dict[str, Any], ...]) -> None:
        """Keep ``request`` and its accepted ``messages``, then call ``on_message``."""
        with self.lock:
            if len(self.requests) == self.requests.maxlen:
                self.dropped_requests += 1
            self.requests.append(request)
            self.requests_seen += 1
            limit = self.messages.maxlen or 0
            self.dropped_messages += max(0, len(self.messages) + len(messages) - limit)
            self.messages.extend(messages)
            self.messages_accepted += len(messages)
            self.changed.notify_all()
        callback = self.on_message
        if callback is not None:
            for message in messages:
                self._notify(callback, message)

    def _notify(self, callback: Callable[[dict[str, Any]], None], message: dict[str, Any]) -> None:
        try:
            callback(message)
        except Exception as exc:  # noqa: BLE001 - kept in .errors for the test to see
            self.add_error(exc)

    def add_error(self, exc: BaseException) -> None:
        """Keep an unexpected exception for `FakeSegment.errors`."""
        with self.lock:
            self.errors.append(exc)

    def count_connection(self) -> None:
        """Count one accepted TCP connection."""
        with self.lock:
            self.connections_accepted += 1

    # -- waits -----------------------------------------------------------------

    def wait_for_messages(self, n: int, timeout: float) -> list[dict[str, Any]]:
        """Wait until ``n`` messages were accepted in all; return those kept.

        Raises:
            FakeSegmentTimeoutError: Fewer than ``n`` arrived within ``timeout``.

        """
        with self.changed:
            if not self.changed.wait_for(lambda: self.messages_accepted >= n, max(timeout, 0.0)):
                msg = (
                    f"waited {timeout}s for {n} messages; "
                    f"got {self.messages_accepted} from {self.requests_seen} requests"
                )
                raise FakeSegmentTimeoutError(msg)
            return list(self.messages)

    def wait_for_requests(self, n: int, timeout: float) -> list[RecordedRequest]:
        """Wait until ``n`` requests were received in all; return those kept.

        Raises:
            FakeSegmentTimeoutError: Fewer than ``n`` arrived within ``timeout``.

        """
        with self.changed:
            if not self.changed.wait_for(lambda: self.requests_seen >= n, max(timeout, 0.0)):
                msg = f"waited {timeout}s for {n} requests; got {self.requests_seen}"
                raise FakeSegmentTimeoutError(msg)
            return list(self.requests)
