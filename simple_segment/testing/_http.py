"""The HTTP side of :class:`FakeSegment`: a threaded HTTP/1.1 server and its request handler.

:class:`_Handler` reads one request at a time off a keep-alive connection (plain or
chunked body), sends control requests to :mod:`._control`, ``POST /token`` in
OAuth mode to :mod:`._oauth`, and everything else through :mod:`._rules` and
the next script of :mod:`._recorder`; it records each request once and writes
the answer (after a scripted delay, or drops the connection).  :class:`Server` tracks
client sockets so that :meth:`FakeSegment.stop` can close them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import socket
import socketserver
import sys
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit

from . import _control
from ._oauth import TOKEN_PATH, TokenAuthority
from ._recorder import RecordedRequest, Recorder, Script
from ._rules import (
    JSON_TYPE,
    MAX_REQUEST_BYTES,
    MAX_WIRE_BYTES,
    Verdict,
    error,
    evaluate,
    is_success,
    json_bytes,
    status_code,
    status_phrase,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    _Request = socket.socket | tuple[bytes, socket.socket]

__all__ = ["Server", "make_server"]

_MAX_CHUNK_LINE = 1024
_MAX_TRAILER_LINES = 100
# How often the accept loop checks for stop(); bounds how long stop() waits for it.
_POLL_INTERVAL = 0.05
# An idle keep-alive connection is closed after this many seconds.
_IDLE_TIMEOUT = 60.0
_NO_BODY_STATUSES = frozenset({HTTPStatus.NO_CONTENT, HTTPStatus.NOT_MODIFIED})


@dataclasses.dataclass(frozen=True)
class _Reply:
    """A response ready to write: status, headers and body, or a dropped connection."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes
    delay: float = 0.0
    drop: bool = False


class _BodyError(Exception):
    """The request body could not be read; answer ``status`` and close."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(status, message)
        self.status = status
        self.message = message

    def reply(self) -> _Reply:
        """Return the answer: Segment's error body, code ``invalid_request``."""
        return _json_reply(self.status, {"success": False, "message": self.message, "code": "invalid_request"})


def _json_reply(status: int, payload: Mapping[str, Any]) -> _Reply:
    return _Reply(status, (("Content-Type", JSON_TYPE),), json_bytes(payload))


def _reply_for(verdict: Verdict, script: Script | None) -> _Reply:
    """Combine the validation verdict with a scripted answer, if any."""
    if script is None:
        return _json_reply(verdict.status, verdict.payload)
    headers = script.headers
    body = script.body
    if body is None:
        if is_success(script.status):
            payload: dict[str, Any] = {"success": True}
        else:
            payload = {
                "success": False,
                "message": status_phrase(script.status),
                "code": status_code(script.status),
            }
        body = json_bytes(payload)
    return _Reply(script.status, headers, body, script.delay, script.drop)


def _with_headers(base: tuple[tuple[str, str], ...], extra: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
    """Return ``base`` with headers of the same name replaced by ``extra``'s."""
    replaced = {name.lower() for name, _ in extra}
    return tuple((name, value) for name, value in base if name.lower() not in replaced) + extra


def _token_reply(
    authority: TokenAuthority,
    script: Script | None,
    request: tuple[str, Mapping[str, str], bytes],
    audience: str,
) -> _Reply:
    """Answer ``/token``: the server's own answer (maybe delayed), or a scripted one.

    A 2xx script without a body keeps the server's own answer, so a valid
    assertion still gets a token (issued before any delay); any other script
    answers instead of the server and issues nothing.
    """
    base = (("Content-Type", JSON_TYPE), ("Cache-Control", "no-store"), ("Date", authority.http_date()))
    if script is None:
        answer = authority.answer(*request, audience)
        return _Reply(answer.status, base, json_bytes(answer.payload))
    if is_success(script.status) and script.body is None and not script.drop:
        answer = authority.answer(*request, audience)
        status = script.status if is_success(answer.status) else answer.status
        body = json_bytes(answer.payload)
    else:
        status = script.status
        payload = {"error": status_code(status), "error_description": status_phrase(status)}
        body = script.body if script.body is not None else json_bytes(payload)
    return _Reply(status, _with_headers(base, script.headers), body, script.delay, script.drop)


def _header_dict(items: list[tuple[str, str]]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for name, value in items:
        key = name.lower()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    return headers


class Server(ThreadingHTTPServer):
    """Threaded HTTP server that tracks client sockets so stop() can close them."""

    daemon_threads = True
    block_on_close = False
    request_queue_size = 128

    def __init__(
        self,
        address: tuple[str, int],
        recorder: Recorder,
        authority: TokenAuthority | None,
        clear: Callable[[], None],
    ) -> None:
        self.recorder = recorder
        self.authority = authority
        self.clear = clear
        self.audience = ""  # the base URL, the aud of client assertions; set by FakeSegment.start
        self.stopping = threading.Event()
        self.connections: set[socket.socket] = set()
        self.connections_changed = threading.Condition()
        super().__init__(address, _Handler)
        self.timeout = _POLL_INTERVAL

    def server_bind(self) -> None:
        """Bind without HTTPServer's reverse DNS lookup, which can stall for seconds."""
        socketserver.TCPServer.server_bind(self)
        address = self.server_address
        self.server_name = str(address[0])
        self.server_port = int(address[1])

    def process_request(self, request: _Request, client_address: object) -> None:
        """Track the client socket, then hand it to a daemon thread."""
        if isinstance(request, socket.socket):
            with self.connections_changed:
                self.connections.add(request)
            self.recorder.count_connection()
        super().process_request(request, client_address)

    def shutdown_request(self, request: _Request) -> None:
        """Forget and close the client socket."""
        if isinstance(request, socket.socket):
            with self.connections_changed:
                self.connections.discard(request)
                self.connections_changed.notify_all()
        super().shutdown_request(request)

    def serve_until_stopped(self) -> None:
        """Accept and hand off connections until :attr:`stopping` is set."""
        while not self.stopping.is_set() and self._accept_once():
            pass

    def _accept_once(self) -> bool:
        """Accept at most one connection; return False once the socket is gone."""
        try:
            self.handle_request()
        except (OSError, ValueError):
            # The listening socket went away under us: only stop() does that.
            if self.stopping.is_set():
                return False
            raise
        return True

    def close_connections(self, timeout: float) -> None:
        """Shut down every client socket, then wait up to ``timeout`` for their threads."""
        with self.connections_changed:
            connections = list(self.connections)
        for sock in connections:
            with contextlib.suppress(OSError):  # already closed by its handler
                sock.shutdown(socket.SHUT_RDWR)
        deadline = time.monotonic() + timeout
        with self.connections_changed:
            while self.connections:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self.connections_changed.wait(remaining)

    def authorize(self, headers: Mapping[str, str]) -> Verdict | None:
        """In OAuth mode: reject a tracking request without a valid Bearer token."""
        if self.authority is None:
            return None
        problem = self.authority.bearer_problem(headers)
        return None if problem is None else error(401, problem, "invalid_token")

    def handle_error(self, request: _Request, client_address: object) -> None:  # noqa: ARG002 - stdlib signature
        """Keep unexpected handler exceptions instead of printing them to stderr.

        Disconnects (any :class:`OSError`) and anything after stop() are normal and ignored.
        """
        exc = sys.exc_info()[1]
        if exc is None or isinstance(exc, OSError) or self.stopping.is_set():
            return
        self.recorder.add_error(exc)


class _Server6(Server):
    address_family = socket.AF_INET6


def make_server(
    address: tuple[str, int],
    recorder: Recorder,
    authority: TokenAuthority | None,
    clear: Callable[[], None],
) -> Server:
    """Bind a :class:`Server` to ``address`` (an IPv6 one when the host contains ``:``).

    Raises :class:`OSError` when the address could not be bound.
    """
    server_class = _Server6 if ":" in address[0] else Server
    return server_class(address, recorder, authority, clear)


class _Handler(BaseHTTPRequestHandler):
    """Reads one request at a time off a keep-alive connection and answers it."""

    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; without TCP_NODELAY the body waits for
    # the client's delayed ACK (about 40 ms a request).
    disable_nagle_algorithm = True
    server_version = "FakeSegment/1"
    sys_version = ""
    timeout = _IDLE_TIMEOUT

    @property
    def fake(self) -> Server:
        """The server this handler answers for."""
        return cast("Server", self.server)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib name
        """Stay silent: the default writes every request to stderr."""

    def date_time_string(self, timestamp: float | None = None) -> str:
        """Stamp the Date header from the server's clock (``clock_offset`` in OAuth mode)."""
        authority = self.fake.authority
        if timestamp is None and authority is not None:
            return authority.http_date()
        return super().date_time_string(timestamp)

    def send_error(
        self,
        code: int,
        message: str | None = None,
        explain: str | None = None,
    ) -> None:
        """Answer malformed HTTP (bad request line, bad headers) with a JSON error."""
        text = message or explain or status_phrase(code)
        payload = {"success": False, "message": text, "code": status_code(code)}
        self.close_connection = True
        with_body = code >= HTTPStatus.OK and code not in _NO_BODY_STATUSES
        reply = _json_reply(code, payload)
        self._write(reply if with_body else dataclasses.replace(reply, body=b""))

    def serve(self) -> None:
        """Answer a request of any method: the one dispatch behind every ``do_*`` name.

        Control requests are answered and not recorded; every other request is
        recorded once, then answered (404/405 for an unknown path or method).
        """
        if self.path.startswith(_control.PREFIX):
            self._serve_control()
            return
        received_at = time.time()
        headers = _header_dict(list(self.headers.items()))
        try:
            body = self._read_body()
        except _BodyError as exc:
            self.close_connection = True
            self._record(headers, b"", received_at, exc.status)
            self._write(exc.reply())
            return
        authority = self.fake.authority
        if authority is not None and urlsplit(self.path).path.rstrip("/") == TOKEN_PATH:
            script = self.fake.recorder.next_script("token") if self.command == "POST" else None
            reply = _token_reply(authority, script, (self.command, headers, body), self.fake.audience)
            self._record(headers, body, received_at, 0 if reply.drop else reply.status)
            self._finish(reply)
            return
        script = self.fake.recorder.next_script() if self.command == "POST" else None
        authorize = self.fake.authorize if authority is not None else None
        value, write_key, verdict = evaluate(self.command, self.path, headers, body, authorize=authorize)
        reply = _reply_for(verdict, script)
        accepted = is_success(reply.status) and is_success(verdict.status)
        messages = verdict.messages if accepted and not reply.drop else ()
        status = 0 if reply.drop else reply.status
        self._record(headers, body, received_at, status, value=value, write_key=write_key, messages=messages)
        self._finish(reply)

    # Segment's endpoints take POST only; any other method is recorded and answered 404 or 405.
    do_POST = do_GET = do_HEAD = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = serve  # noqa: N815 - stdlib names

    def _record(  # noqa: PLR0913 - the parts of a RecordedRequest the handler does not hold
        self,
        headers: dict[str, str],
        body: bytes,
        received_at: float,
        status: int,
        *,
        value: object = None,
        write_key: str | None = None,
        messages: tuple[dict[str, Any], ...] = (),
    ) -> None:
        """Record this request (the one place a :class:`RecordedRequest` is built) and its accepted messages."""
        request = RecordedRequest(
            method=self.command,
            path=self.path,
            headers=headers,
            # A body over the request limit is refused whatever it holds; keeping it would let
            # max_requests refused requests hold up to 1 MiB each.
            body=body if len(body) <= MAX_REQUEST_BYTES else b"",
            json=value,
            write_key=write_key,
            status=status,
            received_at=received_at,
        )
        self.fake.recorder.record(request, messages)

    def _serve_control(self) -> None:
        """Answer a control request; it is not recorded and uses no script."""
        try:
            body = self._read_body()
        except _BodyError as exc:
            self.close_connection = True
            self._write(exc.reply())
            return
        status, headers, answer = _control.handle(self.fake.recorder, self.command, self.path, body, self.fake.clear)
        self._write(_Reply(status, headers, answer))

    def _finish(self, reply: _Reply) -> None:
        """Write ``reply`` after its delay, or drop the connection."""
        if reply.delay > 0 and self.fake.stopping.wait(reply.delay):
            reply = dataclasses.replace(reply, drop=True)
        if reply.drop:
            self.close_connection = True
            return
        self._write(reply)

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked()
        length_text = self.headers.get("Content-Length")
        if length_text is None:
            return b""
        try:
            length = int(length_text)
        except ValueError:
            raise _BodyError(400, f"invalid Content-Length: {length_text!r}") from None
        if length < 0:
            raise _BodyError(400, f"invalid Content-Length: {length_text!r}")
        if length > MAX_WIRE_BYTES:
            # Answered before a byte of the body is read, and the connection closed unread.
            raise _BodyError(413, f"body of {length} bytes is over the {MAX_WIRE_BYTES} bytes this server reads")
        body = self.rfile.read(length)
        if len(body) < length:
            raise _BodyError(400, "connection closed before the whole body arrived")
        return body

    def _read_chunked(self) -> bytes:
        parts: list[bytes] = []
        total = 0
        # Bounded: every chunk adds at least one byte to ``total``, capped at MAX_WIRE_BYTES.
        while True:
            line = self.rfile.readline(_MAX_CHUNK_LINE)
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise _BodyError(400, "invalid chunked body") from None
            if size < 0:
                raise _BodyError(400, "invalid chunked body")
            if size == 0:
                break
            total += size
            if total > MAX_WIRE_BYTES:  # checked before the chunk is read: a chunk may claim any size
                raise _BodyError(413, f"chunked body is over the {MAX_WIRE_BYTES} bytes this server reads")
            chunk = self.rfile.read(size)
            if len(chunk) < size or self.rfile.read(2) != b"\r\n":
                raise _BodyError(400, "invalid chunked body")
            parts.append(chunk)
        for _ in range(_MAX_TRAILER_LINES):
            if self.rfile.readline(_MAX_CHUNK_LINE) in {b"\r\n", b"\n", b""}:
                break
        return b"".join(parts)

    def _write(self, reply: _Reply) -> None:
        if any(name.lower() == "date" for name, _ in reply.headers):
            self.send_response_only(reply.status)  # the reply brings its own Date
            self.send_header("Server", self.version_string())
        else:
            self.send_response(reply.status)
        for name, value in reply.headers:
            if name.lower() not in {"content-length", "transfer-encoding"}:
                self.send_header(name, value)
        body = reply.body
        if reply.status < HTTPStatus.OK or reply.status in _NO_BODY_STATUSES:
            body = b""
        if reply.status != HTTPStatus.NO_CONTENT:  # a 204 must not carry Content-Length
            self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)


