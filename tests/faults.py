"""A raw-socket HTTP server for fault-injection tests, scripted per request.

``FaultServer`` listens on 127.0.0.1, reads each HTTP request itself (no
``http.server``), records it, and answers with a *behaviour*: a small function
that writes whatever bytes it likes to the socket, as slowly as it likes, and says
whether the connection stays open.  That lets a test send what no well-behaved
server would: a status line dripped one byte at a time, garbage, a reset in the
middle of the headers, a 50 MB error body, a gzip bomb, a malformed Retry-After::

    with FaultServer() as server:
        server.script(respond(503), drip("body", 0.2), ok())   # the next three requests
        client = Client("key", host=server.url, ...)
        ...
        assert [r.retry_count for r in server.requests] == [None, "1", "2"]

Requests beyond the script get ``server.default`` (``ok()`` unless given).

Everything is bounded: reads and writes poll a stop event every 50 ms, a behaviour
that never ends on its own (``endless=True``) stops after ``limit`` seconds, request
heads and bodies have size limits, and ``stop()`` (called by ``__exit__``) closes
every socket and joins every thread it started within a few seconds.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import gzip
import ipaddress
import json
import select
import socket
import ssl
import struct
import tempfile
import threading
import time
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

__all__ = [
    "BAD_RETRY_AFTER",
    "Behaviour",
    "Conn",
    "FaultServer",
    "Received",
    "close_without_answer",
    "closed_port",
    "drip",
    "garbage",
    "gzip_bomb",
    "huge_body",
    "malformed",
    "ok",
    "raw",
    "redirect",
    "reset",
    "respond",
    "retry_after",
    "self_signed_context",
    "silent",
]

POLL = 0.05
"""Seconds between checks of the stop event while waiting on a socket."""
MAX_HEAD = 64 * 1024
"""Largest request line + headers read; more closes the connection."""
MAX_BODY = 16 * 1024 * 1024
"""Largest request body read; more closes the connection."""
IDLE = 10.0
"""An idle keep-alive connection is closed after this many seconds."""
ENDLESS_LIMIT = 8.0
"""Default cap, in seconds, on a behaviour that would otherwise never end."""
JOIN_TIMEOUT = 5.0
"""How long ``stop()`` waits for its threads."""

OK_BODY = b'{"success":true}'


class _ClosedError(Exception):
    """The peer went away or the server is stopping."""


# -- what was received --------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Received:
    """One request as the server read it, before it was answered."""

    connection: int
    """Index of the TCP connection it came on (0 for the first accepted)."""
    method: str
    path: str
    headers: dict[str, str]
    """Lower-cased names; repeated headers joined with ", "."""
    body: bytes
    """As on the wire (still gzipped if it was)."""
    at: float
    """time.monotonic() when the request had been read."""

    @property
    def json(self) -> Any:
        """The body decoded as JSON (gunzipped first when needed), or None."""
        data = self.body
        if "gzip" in self.headers.get("content-encoding", ""):
            try:
                data = gzip.decompress(data)
            except (OSError, EOFError, zlib.error):
                return None
        try:
            return json.loads(data)
        except ValueError:
            return None

    @property
    def messages(self) -> list[dict[str, Any]]:
        """The messages of a ``{"batch": [...]}`` body (empty when it is not one)."""
        value = self.json
        if isinstance(value, dict) and isinstance(value.get("batch"), list):
            return [m for m in value["batch"] if isinstance(m, dict)]
        return []

    @property
    def message_ids(self) -> list[str]:
        """The messageIds of :attr:`messages`, in order."""
        return [m.get("messageId") for m in self.messages]

    @property
    def retry_count(self) -> str | None:
        """The ``X-Retry-Count`` header, or None."""
        return self.headers.get("x-retry-count")


# -- behaviours ---------------------------------------------------------------------


class Conn:
    """What a behaviour may do with one accepted connection."""

    def __init__(self, server: FaultServer, sock: socket.socket, request: Received | None) -> None:
        self.server = server
        self.sock = sock
        self.request = request
        self.reset_done = False

    @property
    def stopping(self) -> bool:
        """The server is shutting down: behaviours must return promptly."""
        return self.server.stop_event.is_set()

    def send(self, data: bytes, deadline: float | None = None) -> None:
        """Write all of ``data``; raise _ClosedError when the peer is gone or the server stops."""
        view = memoryview(data)
        while view:
            if self.stopping or (deadline is not None and time.monotonic() > deadline):
                raise _ClosedError
            try:
                _, writable, _ = select.select([], [self.sock], [], POLL)
            except (OSError, ValueError):
                raise _ClosedError from None
            if not writable:
                continue
            try:
                sent = self.sock.send(view[:65536])
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                raise _ClosedError from None
            self.server._count_written(sent)
            view = view[sent:]

    def sleep(self, seconds: float) -> None:
        """Wait ``seconds``; raise _ClosedError early if the peer hangs up or the server stops."""
        end = time.monotonic() + seconds
        while True:
            remaining = end - time.monotonic()
            if remaining <= 0:
                return
            if self.server.stop_event.wait(min(POLL, remaining)):
                raise _ClosedError
            if self.peer_closed():
                raise _ClosedError

    def peer_closed(self) -> bool:
        """True when the client has closed its end (a read would return EOF or fail)."""
        try:
            readable, _, _ = select.select([self.sock], [], [], 0)
            if not readable:
                return False
            data = self.sock.recv(1, socket.MSG_PEEK)
        except (BlockingIOError, InterruptedError):
            return False
        except (OSError, ValueError):
            return True
        return data == b""

    def reset(self) -> None:
        """Abort the connection with a TCP RST (SO_LINGER 0), not a FIN."""
        with contextlib.suppress(OSError):
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        with contextlib.suppress(OSError):
            self.sock.close()
        self.reset_done = True


@dataclasses.dataclass(frozen=True)
class Behaviour:
    """How to answer one request: ``run(conn)`` returns True to keep the connection open."""

    name: str
    run: Callable[[Conn], bool]

    def __repr__(self) -> str:
        return self.name

    def __str__(self) -> str:
        return self.name


def _response(status: int, headers: Iterable[tuple[str, str]] = (), body: bytes = b"", reason: str = "") -> bytes:
    lines = [f"HTTP/1.1 {status} {reason or _reason(status)}"]
    lines += [f"{name}: {value}" for name, value in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def _reason(status: int) -> str:
    return {
        200: "OK",
        301: "Moved Permanently",
        302: "Found",
        303: "See Other",
        307: "Temporary Redirect",
        308: "Permanent Redirect",
        400: "Bad Request",
        401: "Unauthorized",
        403: "Forbidden",
        404: "Not Found",
        408: "Request Timeout",
        413: "Content Too Large",
        429: "Too Many Requests",
        500: "Internal Server Error",
        502: "Bad Gateway",
        503: "Service Unavailable",
        504: "Gateway Timeout",
    }.get(status, "Status")


def respond(
    status: int,
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
    *,
    name: str | None = None,
) -> Behaviour:
    """A complete, well-formed answer with Content-Length; the connection stays open."""
    if body is None:
        body = (
            OK_BODY
            if 200 <= status < 300
            else json.dumps({"success": False, "message": _reason(status), "code": f"status_{status}"}).encode()
        )
    items = [("Content-Type", "application/json"), *(headers or {}).items(), ("Content-Length", str(len(body)))]
    data = _response(status, items, body)

    def run(conn: Conn) -> bool:
        conn.send(data)
        return True

    return Behaviour(name or f"respond({status}{', ' + repr(headers) if headers else ''})", run)


def ok() -> Behaviour:
    """200 ``{"success":true}``, keep-alive."""
    return respond(200, name="ok")


def retry_after(status: int, value: str) -> Behaviour:
    """``status`` with ``Retry-After: value`` (shown shortened in test ids)."""
    shown = value if len(value) <= 24 else f"{value[:10]}...({len(value)} chars)"
    return respond(status, {"Retry-After": value}, name=f"retry_after({status}, {shown!r})")


BAD_RETRY_AFTER = {
    "5000-digits": "9" * 5000,
    "year-99999": "Fri, 31 Dec 99999 23:59:59 GMT",
    "year-10000": "Sat, 01 Jan 10000 00:00:00 GMT",
    "garbage": "soon, maybe",
    "negative": "-5",
    "empty": "",
    "float-inf": "inf",
    "nan": "nan",
    "hex": "0x10",
    "bad-date": "Mon, 99 Foo 2024 25:61:61 GMT",
}
"""Retry-After values that are neither delay-seconds in a sane range nor a valid HTTP-date."""


def redirect(status: int = 307, location: str = "/elsewhere") -> Behaviour:
    """A 3xx pointing at ``location`` (a path on this same server unless absolute)."""
    return respond(status, {"Location": location}, b"", name=f"redirect({status})")


def raw(data: bytes, *, name: str, close: str = "fin") -> Behaviour:
    """Send ``data`` as is, then close with a FIN (``close="fin"``) or a reset (``"rst"``)."""

    def run(conn: Conn) -> bool:
        conn.send(data)
        if close == "rst":
            conn.reset()
        return False

    return Behaviour(name, run)


def garbage(kind: str = "binary") -> Behaviour:
    """Not HTTP at all: random-looking bytes, or a line of text, then close."""
    data = {
        "binary": bytes(range(256)) * 4,
        "text": b"hello, this is not HTTP\r\n\r\n",
        "json": OK_BODY + b"\r\n",
        "http0.9": b"<html>ok</html>",
    }[kind]
    return raw(data, name=f"garbage({kind})")


MALFORMED: dict[str, bytes] = {
    "content-length-not-a-number": _response(200, [("Content-Length", "abc")], OK_BODY),
    "content-length-negative": _response(400, [("Content-Length", "-5")], b"bad"),
    "content-length-conflicting": _response(200, [("Content-Length", "3"), ("Content-Length", "16")], OK_BODY),
    "content-length-too-long": _response(500, [("Content-Length", "1000")], b"short"),
    "header-without-colon": _response(200, [("This is not a header", "")], OK_BODY).replace(
        b"This is not a header: ", b"This is not a header"
    ),
    "header-with-nul-and-high-bytes": _response(503, [("Content-Length", "2")], b"no").replace(
        b"\r\n\r\n", b"\r\nX-Bad: \x00\xff\xfe\r\n\r\n", 1
    ),
    "status-not-a-number": b"HTTP/1.1 abc OK\r\nContent-Length: 0\r\n\r\n",
    "status-out-of-range": b"HTTP/1.1 999 Weird\r\nContent-Length: 0\r\n\r\n",
    "status-four-digits": b"HTTP/1.1 2000 OK\r\nContent-Length: 0\r\n\r\n",
    "status-line-only": b"HTTP/1.1 200 OK\r\n",
    "unknown-protocol": b"SPDY/9 200 OK\r\nContent-Length: 16\r\n\r\n" + OK_BODY,
    "too-many-headers": _response(500, [(f"X-H{i}", "v") for i in range(150)] + [("Content-Length", "0")]),
    "header-line-too-long": _response(503, [("X-Long", "a" * 70_000), ("Content-Length", "0")]),
    "bad-chunked-encoding": _response(500, [("Transfer-Encoding", "chunked")], b"zz\r\nnot hex\r\n0\r\n\r\n"),
    "chunked-cut-short": _response(500, [("Transfer-Encoding", "chunked")], b"ffff\r\nabc"),
    "gzip-not-gzip": _response(500, [("Content-Encoding", "gzip"), ("Content-Length", "12")], b"not gzipped!"),
    "unknown-content-encoding": _response(503, [("Content-Encoding", "br, zstd, x-nope"), ("Content-Length", "3")])
    + b"???",
    "100-continue-then-nothing": b"HTTP/1.1 100 Continue\r\n\r\n",
    "status-1xx-final": b"HTTP/1.1 199 Odd\r\nContent-Length: 0\r\n\r\n",
}
"""Answers that break HTTP's rules, by name (each followed by closing the connection)."""


def malformed(kind: str) -> Behaviour:
    """One of :data:`MALFORMED`, then close."""
    return raw(MALFORMED[kind], name=f"malformed({kind})")


def reset(where: str = "before-answer") -> Behaviour:
    """Reset the connection (RST) before answering, mid-status-line, mid-headers or mid-body."""
    partial = {
        "before-answer": b"",
        "mid-status": b"HTTP/1.1 5",
        "mid-headers": b"HTTP/1.1 200 OK\r\nContent-Type: appl",
        "mid-body": _response(200, [("Content-Length", "16")], OK_BODY[:5]),
        "mid-error-body": _response(503, [("Content-Length", "100")], b'{"success":'),
    }[where]
    return raw(partial, name=f"reset({where})", close="rst")


def close_without_answer() -> Behaviour:
    """Read the request, then close (FIN) without a byte of answer."""
    return Behaviour("close_without_answer", lambda conn: False)


def silent(limit: float = ENDLESS_LIMIT) -> Behaviour:
    """Read the request and never answer (until the client leaves, ``limit`` passes or the server stops)."""

    def run(conn: Conn) -> bool:
        conn.sleep(limit)
        return False

    return Behaviour("silent", run)


def drip(
    part: str,
    interval: float = 0.2,
    *,
    status: int = 200,
    endless: bool = False,
    limit: float = ENDLESS_LIMIT,
) -> Behaviour:
    """Send a ``status`` answer with one ``part`` dripped one byte every ``interval`` seconds.

    ``part`` is ``"status"`` (the status line), ``"headers"`` or ``"body"``; what comes
    before it is sent at once.  Each dripped part is 25 bytes, so it takes
    25 * ``interval`` seconds.  With ``endless=True`` the part never ends (an
    endless status line, endless headers, a body with a huge Content-Length),
    until the client leaves or ``limit`` seconds have passed; then the connection is
    closed.
    """
    status_line = f"HTTP/1.1 {status:03d} Slow reply\r\n".encode()  # 25 bytes
    headers = b"Content-Length:    25\r\n\r\n"  # 25 bytes with the blank line
    body = (b'{"success": true}' if 200 <= status < 300 else b'{"success":false}').ljust(25)
    assert len(status_line) == len(headers) == len(body) == 25
    if endless:
        prefix, dripped, suffix = {
            "status": (b"", _repeat(f"HTTP/1.1 {status:03d} S".encode(), b"l"), b""),
            "headers": (status_line, _repeat(b"", b"X-Slow: yes\r\n"), b""),
            "body": (status_line + b"Content-Length: 1000000000\r\n\r\n", _repeat(b"", b" "), b""),
        }[part]
    else:
        prefix, dripped, suffix = {
            "status": (b"", iter(status_line), headers + body),
            "headers": (status_line, iter(headers), body),
            "body": (status_line + headers, iter(body), b""),
        }[part]

    def run(conn: Conn) -> bool:
        end = time.monotonic() + limit
        conn.send(prefix)
        for byte in dripped:
            if time.monotonic() > end:
                return False
            conn.send(bytes([byte]))
            conn.sleep(interval)
        conn.send(suffix)
        return True

    kind = "endless" if endless else f"{interval}s/byte"
    shown = "" if status == 200 else f", {status}"
    return Behaviour(f"drip({part}, {kind}{shown})", run)


def _repeat(head: bytes, unit: bytes) -> Iterator[int]:
    yield from head
    while True:
        yield from unit


def huge_body(status: int = 500, size: int = 50 * 1024 * 1024, *, chunked: bool = False) -> Behaviour:
    """``status`` with a ``size``-byte body, streamed (never held in memory), then close."""
    block = (b'{"success":false,"message":"' + b"x" * 65_000 + b'"}\n')[:65_536]

    def run(conn: Conn) -> bool:
        with contextlib.suppress(OSError):
            conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65_536)
        if chunked:
            conn.send(_response(status, [("Content-Type", "application/json"), ("Transfer-Encoding", "chunked")]))
        else:
            conn.send(_response(status, [("Content-Type", "application/json"), ("Content-Length", str(size))]))
        left = size
        deadline = time.monotonic() + ENDLESS_LIMIT
        while left > 0:
            piece = block[: min(left, len(block))]
            conn.send(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece, deadline)
            left -= len(piece)
        if chunked:
            conn.send(b"0\r\n\r\n", deadline)
        return False

    return Behaviour(f"huge_body({status}, {size // (1024 * 1024)} MB{', chunked' if chunked else ''})", run)


def _gzip_member(size: int) -> bytes:
    return gzip.compress(b"\0" * size, compresslevel=9, mtime=0)


_BOMB_UNIT = 16 * 1024 * 1024
_bomb_member: list[bytes] = []


def gzip_bomb(status: int = 500, inflated_gb: float = 4.0) -> Behaviour:
    """``status`` with ``Content-Encoding: gzip``: ~16 KB on the wire per 16 MB inflated.

    The body is the same small gzip member (16 MB of zeros) repeated; gzip readers
    inflate concatenated members as one stream, so ``inflated_gb`` GB come from a
    few megabytes on the wire, generated as they are sent.
    """
    if not _bomb_member:
        _bomb_member.append(_gzip_member(_BOMB_UNIT))
    member = _bomb_member[0]
    count = max(1, int(inflated_gb * 1024**3 // _BOMB_UNIT))

    def run(conn: Conn) -> bool:
        headers = [
            ("Content-Type", "application/json"),
            ("Content-Encoding", "gzip"),
            ("Content-Length", str(len(member) * count)),
        ]
        conn.send(_response(status, headers))
        deadline = time.monotonic() + ENDLESS_LIMIT
        for _ in range(count):
            conn.send(member, deadline)
        return False

    return Behaviour(f"gzip_bomb({status}, {inflated_gb:g} GB)", run)


# -- the server ---------------------------------------------------------------------


class FaultServer:
    """A scripted raw-socket HTTP/1.1 server on 127.0.0.1 (see the module docstring).

    ``tls`` (an ``ssl.SSLContext`` for the server side) makes it speak HTTPS.
    ``default`` answers requests the script does not cover.  A connection whose first
    bytes are not an HTTP request (a TLS ClientHello on the plain server, say) is
    counted in :attr:`rejected` and closed.
    """

    def __init__(
        self,
        *,
        default: Behaviour | None = None,
        tls: ssl.SSLContext | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        if not ipaddress.ip_address(host).is_loopback:
            msg = "FaultServer binds loopback addresses only"
            raise ValueError(msg)
        self.default = default or ok()
        self.tls = tls
        self.stop_event = threading.Event()
        self._lock = threading.Lock()
        self._script: deque[Behaviour] = deque()
        self._requests: list[Received] = []
        self._sockets: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self._connections = 0
        self._rejected = 0
        self._tls_failures = 0
        self._written = 0
        self._errors: list[BaseException] = []
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._listener = socket.socket(family, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind((host, 0))
        self._host = host
        self.port: int = self._listener.getsockname()[1]
        self._started = False

    # -- lifecycle -------------------------------------------------------------------

    def __enter__(self) -> FaultServer:  # noqa: PYI034 - Self needs Python 3.11
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> None:
        """Listen and accept connections on a thread."""
        self._listener.listen(64)
        self._listener.settimeout(POLL)
        self._started = True
        self._spawn(self._accept_loop, "accept")

    def stop(self) -> None:
        """Stop accepting, close every connection and join every thread (bounded)."""
        self.stop_event.set()
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes accept() at once on Linux
        with contextlib.suppress(OSError):
            self._listener.close()
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        deadline = time.monotonic() + JOIN_TIMEOUT
        for thread in self.threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.close()

    @property
    def threads(self) -> list[threading.Thread]:
        """Every thread this server started (alive or not)."""
        with self._lock:
            return list(self._threads)

    def alive_threads(self) -> list[threading.Thread]:
        """This server's threads still running (empty after ``stop()``)."""
        return [t for t in self.threads if t.is_alive()]

    def owns(self, thread: threading.Thread) -> bool:
        """True for a thread this server started."""
        return thread in self.threads

    # -- scripting and records ---------------------------------------------------------

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` (``https://`` with ``tls``)."""
        scheme = "https" if self.tls else "http"
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"{scheme}://{host}:{self.port}"

    def script(self, *behaviours: Behaviour, times: int = 1) -> None:
        """Queue behaviours for the next requests, in order (``times`` repeats the lot)."""
        with self._lock:
            self._script.extend(list(behaviours) * times)

    @property
    def requests(self) -> list[Received]:
        """Every request read, in the order they were read."""
        with self._lock:
            return list(self._requests)

    def message_ids(self) -> list[str]:
        """messageIds of every request received (with repeats for retries)."""
        return [mid for request in self.requests for mid in request.message_ids]

    @property
    def connections(self) -> int:
        """TCP connections accepted."""
        with self._lock:
            return self._connections

    @property
    def rejected(self) -> int:
        """Connections closed because they did not start with an HTTP request."""
        with self._lock:
            return self._rejected

    @property
    def tls_failures(self) -> int:
        """Connections whose TLS handshake failed (with ``tls``)."""
        with self._lock:
            return self._tls_failures

    @property
    def bytes_written(self) -> int:
        """Bytes the server handed to the kernel for its clients, over all connections."""
        with self._lock:
            return self._written

    @property
    def errors(self) -> list[BaseException]:
        """Unexpected exceptions in the server's own threads (a healthy run has none)."""
        with self._lock:
            return list(self._errors)

    def _count_written(self, n: int) -> None:
        with self._lock:
            self._written += n

    # -- threads ---------------------------------------------------------------------

    def _spawn(self, target: Callable[..., None], name: str, *args: Any) -> None:
        thread = threading.Thread(target=self._guard, args=(target, *args), name=f"FaultServer-{name}", daemon=True)
        with self._lock:
            self._threads.append(thread)
        thread.start()

    def _guard(self, target: Callable[..., None], *args: Any) -> None:
        try:
            target(*args)
        except _ClosedError:
            pass
        except Exception as exc:
            with self._lock:
                self._errors.append(exc)

    def _accept_loop(self) -> None:
        while not self.stop_event.is_set():
            try:
                sock, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                index = self._connections
                self._connections += 1
                self._sockets.add(sock)
            self._spawn(self._serve, f"conn{index}", sock, index)

    def _serve(self, sock: socket.socket, index: int) -> None:
        try:
            sock.setblocking(False)
            if self.tls is not None:
                sock = self._handshake(sock)
            buffer = bytearray()
            while not self.stop_event.is_set():
                request = self._read_request(sock, buffer, index)
                if request is None:
                    return
                with self._lock:
                    self._requests.append(request)
                    behaviour = self._script.popleft() if self._script else self.default
                conn = Conn(self, sock, request)
                keep = behaviour.run(conn)
                if conn.reset_done or not keep:
                    return
        except _ClosedError:
            pass
        finally:
            with self._lock:
                self._sockets.discard(sock)
            with contextlib.suppress(OSError):
                sock.close()

    def _handshake(self, sock: socket.socket) -> socket.socket:
        assert self.tls is not None
        wrapped = self.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        with self._lock:
            self._sockets.add(wrapped)
        deadline = time.monotonic() + IDLE
        while not self.stop_event.is_set() and time.monotonic() < deadline:
            try:
                wrapped.do_handshake()
            except ssl.SSLWantReadError:  # noqa: PERF203 - a non-blocking handshake loop
                select.select([wrapped], [], [], POLL)
            except ssl.SSLWantWriteError:
                select.select([], [wrapped], [], POLL)
            except (ssl.SSLError, OSError):
                with self._lock:
                    self._tls_failures += 1
                raise _ClosedError from None
            else:
                return wrapped
        raise _ClosedError

    def _recv(self, sock: socket.socket, deadline: float) -> bytes:
        while True:
            if self.stop_event.is_set() or time.monotonic() > deadline:
                raise _ClosedError
            if isinstance(sock, ssl.SSLSocket) and sock.pending():
                readable = [sock]
            else:
                try:
                    readable, _, _ = select.select([sock], [], [], POLL)
                except (OSError, ValueError):
                    raise _ClosedError from None
            if not readable:
                continue
            try:
                data = sock.recv(65536)
            except (BlockingIOError, InterruptedError, ssl.SSLWantReadError):
                continue
            except OSError:
                raise _ClosedError from None
            if not data:
                raise _ClosedError
            return data

    def _read_request(self, sock: socket.socket, buffer: bytearray, index: int) -> Received | None:
        deadline = time.monotonic() + IDLE
        while b"\r\n\r\n" not in buffer:
            if buffer and not buffer[:1].isalpha():
                with self._lock:
                    self._rejected += 1
                return None
            if len(buffer) > MAX_HEAD:
                return None
            buffer += self._recv(sock, deadline)
        if not buffer[:1].isalpha():
            with self._lock:
                self._rejected += 1
            return None
        head, _, rest = bytes(buffer).partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3:
            with self._lock:
                self._rejected += 1
            return None
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            key = name.strip().lower()
            headers[key] = f"{headers[key]}, {value.strip()}" if key in headers else value.strip()
        length = int(headers.get("content-length", "0") or "0")
        if length < 0 or length > MAX_BODY:
            return None
        body = bytearray(rest)
        while len(body) < length:
            body += self._recv(sock, deadline)
        buffer[:] = body[length:]
        return Received(index, parts[0], parts[1], headers, bytes(body[:length]), time.monotonic())


# -- other network helpers ----------------------------------------------------------


def closed_port() -> int:
    """A loopback port with nothing listening (connecting to it is refused)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def self_signed_context() -> ssl.SSLContext:
    """A server-side SSLContext with a freshly generated self-signed cert for 127.0.0.1."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .sign(key, hashes.SHA256())
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with tempfile.TemporaryDirectory() as folder:
        cert_path, key_path = Path(folder, "cert.pem"), Path(folder, "key.pem")
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        context.load_cert_chain(cert_path, key_path)
    return context
