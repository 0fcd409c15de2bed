"""MockTransport: a client's requests answered by a function, with a clock that never sleeps.

``Client(transport=MockTransport(handler))`` hands every request the client makes
(tracking batches and OAuth token requests) to ``handler(request)`` instead of the
network.  The seam is below the retry loop, the deadline and the error mapping, so
retries, Retry-After, errors, OAuth and ``on_error`` behave as they do over the
network.  Waits go to a :class:`FakeClock`, which moves time instead of sleeping.
"""

from __future__ import annotations

import gzip
import json as _json
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["FakeClock", "Handler", "MockRequest", "MockResponse", "MockTransport"]


class FakeClock:
    """A clock whose time moves only when the client waits (or a test calls :meth:`advance`).

    ``waits`` lists every wait the client made, in seconds.  Pass one to
    ``MockTransport(handler, clock=...)`` (every MockTransport has one by default).

    Since: 0.2.0
    """

    def __init__(self, start: float = 1_000.0) -> None:
        self.now = start
        """The current time (seconds, as :func:`time.monotonic` counts them)."""
        self.waits: list[float] = []
        """Every wait made, in order."""
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<FakeClock now={self.now} waits={len(self.waits)}>"

    def monotonic(self) -> float:
        """Return the current time."""
        return self.now

    def sleep(self, seconds: float) -> None:
        """Record a wait of ``seconds`` and move time on by as much, at once."""
        with self._lock:
            self.waits.append(seconds)
            self.now += seconds

    def advance(self, seconds: float) -> None:
        """Move time on by ``seconds`` without recording a wait (a token growing old, a slow answer)."""
        with self._lock:
            self.now += seconds


class _Headers(Mapping[str, str]):
    """Headers in the order sent, looked up case-insensitively (without importing an HTTP library)."""

    def __init__(self, headers: Mapping[str, str]) -> None:
        self._items = dict(headers)
        self._folded = {name.lower(): value for name, value in self._items.items()}

    def __getitem__(self, name: str) -> str:
        return self._folded[name.lower()]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._folded

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return repr(self._items)


@dataclass(frozen=True)
class MockRequest:
    """One request as the client would send it: ``method``, ``url``, ``headers`` and ``body``.

    ``headers`` are looked up case-insensitively and include those http.client adds
    (``Host``, ``Accept-Encoding``, ``Content-Length``).  ``body`` is the bytes sent
    (gzip-compressed when the client compresses); :attr:`content` and :meth:`json`
    undo the compression.

    Since: 0.2.0
    """

    method: str
    url: str
    headers: Mapping[str, str] = field(repr=False)
    body: bytes = field(repr=False)

    @property
    def content(self) -> bytes:
        """The body, decompressed when its ``Content-Encoding`` is gzip."""
        if self.headers.get("Content-Encoding", "").lower() == "gzip":
            return gzip.decompress(self.body)
        return self.body

    def json(self) -> Any:  # noqa: ANN401 - any JSON
        """Return the body decoded as JSON (gzip undone).  Raises ValueError when it is not JSON."""
        return _json.loads(self.content)


class MockResponse:
    """An answer for a :class:`MockTransport` handler to return: status, headers and body.

    ``json=`` sets the body to that value as JSON (and ``Content-Type`` to
    ``application/json`` unless given).  A handler may return a plain
    ``(status, headers, body)`` tuple or just an int status instead.

    Since: 0.2.0
    """

    __slots__ = ("body", "headers", "status")

    def __init__(
        self,
        status: int = 200,
        headers: Mapping[str, str] | None = None,
        body: bytes | str = b"",
        *,
        json: Any = None,  # noqa: ANN401 - any JSON value
    ) -> None:
        self.status = status
        self.headers: dict[str, str] = dict(headers or {})
        if json is not None:
            body = _json.dumps(json)
            if not any(name.lower() == "content-type" for name in self.headers):
                self.headers["Content-Type"] = "application/json"
        self.body: bytes = body.encode() if isinstance(body, str) else body

    def __repr__(self) -> str:
        return f"MockResponse({self.status}, {self.headers!r}, {self.body[:60]!r})"


Handler = Callable[[MockRequest], "int | MockResponse | tuple[int, Mapping[str, str], bytes | str]"]
"""What a :class:`MockTransport` calls: a request in, an int status, a MockResponse or a tuple out."""


class MockTransport:
    """A transport for ``Client(transport=...)`` that answers every request with ``handler(request)``.

    ``handler`` gets a :class:`MockRequest` and returns an int status (an empty
    body), a :class:`MockResponse` or a ``(status, headers, body)`` tuple.  To stand
    for a network failure it raises :class:`OSError` (``ConnectionError``,
    ``TimeoutError`` ...): the client maps that as a failure on the wire, a
    retryable :class:`~simple_segment.NetworkError`.  Anything else it raises (a
    failed ``assert``) reaches the caller unchanged.

    The client waits (backoff, Retry-After) and keeps time (``total_timeout``, a
    token's life) on ``clock``, a :class:`FakeClock` unless given: nothing sleeps.
    A handler may ``clock.advance()`` to play a slow answer: one that ends after the
    call's ``total_timeout`` fails as a network timeout would.  ``requests`` lists
    every request handled, in order.  Proxies, ``verify`` and the per-attempt
    ``timeout`` (of socket operations) do not apply.

    Since: 0.2.0
    """

    def __init__(self, handler: Handler, *, clock: FakeClock | None = None) -> None:
        self.handler = handler
        self.clock: FakeClock = clock if clock is not None else FakeClock()
        self.requests: list[MockRequest] = []
        """Every request handled, in order."""

    def __repr__(self) -> str:
        return f"<MockTransport {getattr(self.handler, '__name__', self.handler)!r} requests={len(self.requests)}>"

    def handle(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        """Answer one request with the handler: the seam ``Client`` calls.  Raises TypeError for an unusable answer."""
        request = MockRequest(method, url, _Headers(headers), body)
        self.requests.append(request)
        return _answer(self.handler(request))


def _answer(result: object) -> tuple[int, dict[str, str], bytes]:
    if isinstance(result, MockResponse):
        status, headers, body = result.status, result.headers, result.body
    elif isinstance(result, int) and not isinstance(result, bool):
        status, headers, body = result, {}, b""
    elif isinstance(result, tuple) and len(result) == 3:  # noqa: PLR2004 - (status, headers, body)
        status, headers, body = result
    else:
        msg = f"a MockTransport handler returns an int, a MockResponse or (status, headers, body), not {result!r}"
        raise TypeError(msg)
    if isinstance(body, str):
        body = body.encode()
    if not isinstance(status, int) or isinstance(status, bool) or not 200 <= status <= 599:  # noqa: PLR2004 - a final answer
        msg = f"a MockTransport answer's status is an int from 200 to 599, not {status!r}"
        raise TypeError(msg)
    if not isinstance(headers, Mapping) or not isinstance(body, bytes):
        msg = f"a MockTransport answer is (status, headers mapping, bytes or str body), not {result!r}"
        raise TypeError(msg)
    return status, {str(k): str(v) for k, v in headers.items()}, body
