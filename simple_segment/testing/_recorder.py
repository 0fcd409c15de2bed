"""What :class:`FakeSegment` remembers: recorded requests and messages, scripts, waits.

:class:`Recorder` holds all state that request threads share, behind one lock, and
knows nothing of HTTP or sockets. Waits are bounded by the caller's timeout.
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import math
import threading
import time
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from ._rules import JSON_TYPE, MAX_STATUS, MIN_STATUS, json_bytes

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

__all__ = ["MAX_DELAY", "Endpoint", "FakeSegmentTimeoutError", "RecordedRequest", "Recorder", "Script", "make_script"]

_MAX_ERRORS_KEPT = 100
_T = TypeVar("_T")

#: Which requests a script answers: ``"tracking"`` is every POST except the
#: OAuth token endpoint; ``"token"`` is ``POST /token``.
Endpoint = Literal["tracking", "token"]
ENDPOINTS: tuple[Endpoint, ...] = ("tracking", "token")


class FakeSegmentTimeoutError(AssertionError, TimeoutError):
    """:meth:`FakeSegment.wait_for_messages` (or ``_requests``) gave up waiting.

    It is an :class:`AssertionError`, so pytest reports it as a failed expectation,
    and a :class:`TimeoutError`, so code that catches timeouts catches it too.
    """


@dataclasses.dataclass(frozen=True)
class RecordedRequest:
    """One HTTP request as :class:`FakeSegment` received and answered it."""

    method: str
    """The HTTP method, e.g. ``"POST"``."""
    path: str
    """The request target as sent, including any query string."""
    headers: dict[str, str]
    """Request headers with lower-cased names (repeated headers joined with ``", "``)."""
    body: bytes
    """The raw body as received on the wire (still gzipped if it was).

    Empty for a body over 500,000 bytes: refused for its size, it is not kept.
    """
    json: Any
    """The decoded JSON body (after gunzip), or None if it was not valid JSON."""
    write_key: str | None
    """The HTTP Basic user name, else the body's ``writeKey``, else None."""
    status: int
    """The status code answered; 0 if the connection was dropped."""
    received_at: float
    """When the request was read, as :func:`time.time`."""

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
    """One scripted answer queued by :meth:`FakeSegment.respond_with`.

    ``body`` None means "the server's own body for this status".
    """

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes | None
    delay: float
    drop: bool


def make_script(
    status: int,
    *,
    headers: Mapping[str, str] | None,
    body: bytes | str | Mapping[str, Any] | list[Any] | None,
    delay: float,
    drop: bool,
) -> Script:
    """Check and build a :class:`Script` (see :meth:`FakeSegment.respond_with` for the arguments).

    Raises :class:`ValueError` naming the argument when status or delay is out of range,
    a header is not a valid name and one line of Latin-1 text, or a str body holds a
    lone surrogate.
    """
    if isinstance(status, bool) or not MIN_STATUS <= status <= MAX_STATUS:
        msg = f"status must be between {MIN_STATUS} and {MAX_STATUS}, not {status}"
        raise ValueError(msg)
    if isinstance(delay, bool) or not (0 <= delay <= MAX_DELAY):
        msg = f"delay must be a number of seconds from 0 to {MAX_DELAY:g}, not {delay}"
        raise ValueError(msg)
    header_items = dict(headers or {})
    for name, value in header_items.items():
        _check_header(name, value)
    raw: bytes | None
    if isinstance(body, str):
        try:
            raw = body.encode()
        except UnicodeEncodeError:  # a lone surrogate, which JSON text may carry
            msg = "body must be text that UTF-8 can encode (it holds a lone surrogate)"
            raise ValueError(msg) from None
        content_type = "text/plain; charset=utf-8"
    elif isinstance(body, bytes):
        raw, content_type = body, "text/plain; charset=utf-8"
    elif body is None:
        raw, content_type = None, JSON_TYPE
    else:
        raw, content_type = json_bytes(body), JSON_TYPE
    if not any(name.lower() == "content-type" for name in header_items):
        header_items["Content-Type"] = content_type
    return Script(int(status), tuple(header_items.items()), raw, float(delay), bool(drop))


#: The longest scripted delay, in seconds (a day): longer ones overflow a thread's wait.
MAX_DELAY = 86_400.0
# RFC 9110's token characters: what a header name may hold.
_TOKEN = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


def _check_header(name: object, value: object) -> None:
    """Raise :class:`ValueError` naming the header when it cannot be written as one line of HTTP.

    Raises :class:`TypeError` when the name or the value is not a str.
    """
    if not isinstance(name, str) or not isinstance(value, str):
        msg = f"headers[{name!r}] must be a string naming a string, not {type(value).__name__}"
        raise TypeError(msg)
    if not name or not set(name) <= _TOKEN:
        msg = f"headers: {name!r} is not a header name (letters, digits and !#$%&'*+-.^_`|~)"
        raise ValueError(msg)
    # Latin-1 is what http.server writes; a CR or LF would start another header (or the body).
    if any(char in "\r\n\0" or ord(char) > 0xFF for char in value):  # noqa: PLR2004 - the Latin-1 range
        msg = f"headers[{name!r}] must be Latin-1 text without CR, LF or NUL, not {value!r}"
        raise ValueError(msg)


@dataclasses.dataclass
class _Queued:
    """A queued script and how many more POSTs it answers."""

    script: Script
    left: int


class _Scripts:
    """The scripted answers of one endpoint: an optional time window, then a queue.

    While the window is open every POST gets its script and the queue waits;
    afterwards queued scripts are used in order, each ``times`` times. Not
    thread-safe on its own: :class:`Recorder` guards it with its lock.
    """

    def __init__(self) -> None:
        # Kept as counts, so a large ``times`` costs nothing.
        self.queue: collections.deque[_Queued] = collections.deque()
        self.window: Script | None = None
        self.window_ends = 0.0

    def take(self, now: float) -> Script | None:
        if self.window is not None:
            if now < self.window_ends:
                return self.window
            self.window = None
        if not self.queue:
            return None
        entry = self.queue[0]
        entry.left -= 1
        if entry.left <= 0:
            self.queue.popleft()
        return entry.script

    def pending(self) -> int:
        return sum(entry.left for entry in self.queue)

    def clear(self) -> None:
        self.queue.clear()
        self.window = None


def _page(kept: collections.deque[_T], seen: int, since: int, limit: int | None) -> tuple[int, int, list[_T]]:
    """Page through ``kept``, the newest of ``seen`` items: (seen, index of the first returned, items)."""
    first_kept = seen - len(kept)
    start = max(since, first_kept)
    skip = start - first_kept
    stop = None if limit is None else skip + limit
    return seen, start, list(itertools.islice(kept, skip, stop))


class Recorder:
    """All mutable state shared by request threads, behind one lock.

    Attributes are read and written only while holding :attr:`lock` (:attr:`changed` is a
    condition on that lock, notified whenever something is recorded or cleared).
    """

    def __init__(
        self,
        max_messages: int,
        max_requests: int,
        on_message: Callable[[dict[str, Any]], None] | None,
        *,
        oauth: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.oauth = oauth  # whether the token endpoint exists, so its scripts can be used
        self.clock = clock  # times script windows
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)
        self.on_message = on_message
        self.requests: collections.deque[RecordedRequest] = collections.deque(maxlen=max_requests)
        self.messages: collections.deque[dict[str, Any]] = collections.deque(maxlen=max_messages)
        self.scripts = {endpoint: _Scripts() for endpoint in ENDPOINTS}
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
            for scripts in self.scripts.values():
                scripts.clear()
            self.errors.clear()
            self.requests_seen = 0
            self.messages_accepted = 0
            self.dropped_requests = 0
            self.dropped_messages = 0
            self.connections_accepted = 0
            self.changed.notify_all()

    # -- scripts ---------------------------------------------------------------

    def add_script(
        self,
        script: Script,
        *,
        times: int | None = None,
        seconds: float | None = None,
        endpoint: Endpoint = "tracking",
    ) -> None:
        """Use ``script`` for the next ``times`` POSTs, or for every POST during ``seconds``.

        With neither, ``times`` is 1. A window starts now and replaces any open
        window of the same endpoint.

        Raises :class:`ValueError` for both or an out-of-range ``times``/``seconds``, or
        an unknown endpoint (``"token"`` without OAuth mode).
        """
        if endpoint not in ENDPOINTS:
            msg = f"endpoint must be one of {', '.join(ENDPOINTS)}, not {endpoint!r}"
            raise ValueError(msg)
        if endpoint == "token" and not self.oauth:
            msg = 'endpoint "token" exists only in OAuth mode: FakeSegment(oauth=OAuthSettings(...))'
            raise ValueError(msg)
        if times is not None and seconds is not None:
            msg = "give times or seconds, not both"
            raise ValueError(msg)
        if seconds is not None:
            if isinstance(seconds, bool) or not (seconds > 0 and math.isfinite(seconds)):
                msg = f"seconds must be a finite number > 0, not {seconds}"
                raise ValueError(msg)
            with self.lock:
                scripts = self.scripts[endpoint]
                scripts.window = script
                scripts.window_ends = self.clock() + seconds
            return
        count = 1 if times is None else times
        if isinstance(count, bool) or count < 1:
            msg = f"times must be at least 1, not {count}"
            raise ValueError(msg)
        with self.lock:
            self.scripts[endpoint].queue.append(_Queued(script, count))

    def next_script(self, endpoint: Endpoint = "tracking") -> Script | None:
        """Take the script for this POST, or None to answer normally."""
        with self.lock:
            return self.scripts[endpoint].take(self.clock())

    def queued_scripts(self) -> tuple[int, int]:
        """Return how many scripts are queued (time windows included) and the bytes of their bodies."""
        with self.lock:
            scripts = [entry.script for queue in self.scripts.values() for entry in queue.queue]
            scripts += [queue.window for queue in self.scripts.values() if queue.window is not None]
        return len(scripts), sum(len(script.body or b"") for script in scripts)

    def pending_scripts(self) -> int:
        """Return how many counted script uses are left (time windows not included)."""
        with self.lock:
            return sum(scripts.pending() for scripts in self.scripts.values())

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
        """Keep an unexpected exception for :attr:`FakeSegment.errors`."""
        with self.lock:
            self.errors.append(exc)

    def count_connection(self) -> None:
        """Count one accepted TCP connection."""
        with self.lock:
            self.connections_accepted += 1

    def messages_since(self, since: int, limit: int | None = None) -> tuple[int, list[dict[str, Any]]]:
        """Return how many messages were accepted in all, and those kept after the first ``since``.

        ``since`` counts every accepted message since start or clear, including
        those forgotten to stay within ``max_messages``.  At most ``limit`` are
        returned (all when None).
        """
        total, _, page = self.messages_page(since, limit)
        return total, page

    def messages_page(self, since: int, limit: int | None = None) -> tuple[int, int, list[dict[str, Any]]]:
        """Return the total accepted, the index of the first message returned, and at most ``limit`` messages.

        The first message returned is the ``since``-th accepted, or the oldest kept
        when that one was forgotten; the next page starts at index + number returned.
        """
        with self.lock:
            return _page(self.messages, self.messages_accepted, since, limit)

    def requests_since(self, since: int, limit: int | None = None) -> tuple[int, list[RecordedRequest]]:
        """Return how many requests were received in all, and those kept after the first ``since``.

        At most ``limit`` are returned (all when None).
        """
        total, _, page = self.requests_page(since, limit)
        return total, page

    def requests_page(self, since: int, limit: int | None = None) -> tuple[int, int, list[RecordedRequest]]:
        """As :meth:`messages_page`, for recorded requests."""
        with self.lock:
            return _page(self.requests, self.requests_seen, since, limit)

    # -- waits -----------------------------------------------------------------

    def wait_for_messages(self, n: int, timeout: float) -> list[dict[str, Any]]:
        """Wait until ``n`` messages were accepted in all; return those kept.

        Raises :class:`FakeSegmentTimeoutError` when fewer than ``n`` arrived within
        ``timeout``.
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

        Raises :class:`FakeSegmentTimeoutError` when fewer than ``n`` arrived within
        ``timeout``.
        """
        with self.changed:
            if not self.changed.wait_for(lambda: self.requests_seen >= n, max(timeout, 0.0)):
                msg = f"waited {timeout}s for {n} requests; got {self.requests_seen}"
                raise FakeSegmentTimeoutError(msg)
            return list(self.requests)
