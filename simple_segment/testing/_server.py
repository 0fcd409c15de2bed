"""A Segment-compatible HTTP server for tests, standard library only (OAuth mode aside).

`FakeSegment` listens on loopback, speaks HTTP/1.1 with keep-alive, validates
requests the way Segment's Tracking API does, records every request, and can be
scripted to answer with errors, delays or dropped connections::

    with FakeSegment() as fake:
        client = Client("key", host=fake.url)
        client.track("user-1", "Signed Up")
        assert fake.by_event("Signed Up")[0]["userId"] == "user-1"

        fake.respond_with(429, headers={"Retry-After": "1"})   # next POST only
        fake.respond_with(200, delay=0.5)                      # the one after that

Endpoints: ``POST /v1/batch`` (and its alias ``/v1/import``) take
``{"batch": [...]}``; ``POST /v1/track``, ``/v1/identify``, ``/v1/page``,
``/v1/screen``, ``/v1/group`` and ``/v1/alias`` take one message, whose
``type`` is set from the path (and whose body ``writeKey`` is not recorded as
part of the message). In OAuth mode (``FakeSegment(oauth=OAuthSettings(...))``)
``POST /token`` issues access tokens and tracking requests need one; see
`FakeSegment` and :mod:`._oauth`. Any other path answers 404; another method
on a known path answers 405.

Error answers have the body ``{"success": false, "message": ..., "code": ...}``
with ``Content-Type: application/json``. The codes are ``not_found``,
``method_not_allowed``, ``missing_write_key`` (401), ``invalid_token`` (401,
OAuth mode: no valid Bearer token), ``invalid_request`` (bad
gzip, invalid JSON, wrong body shape), ``request_too_large``,
``message_too_large``, ``too_many_messages`` and ``invalid_message`` (a
message without the fields its type needs). Success is 200
``{"success": true}``.

Deliberately stricter than Segment:

- more than 2,500 messages in one request answers 400 ``too_many_messages``
  (Segment answers 200 and silently drops the events, which a test would
  never notice);
- a ``messageId`` that is not a string shorter than 100 characters answers
  400 (the client refuses to send one, too);
- ``NaN``, ``Infinity`` and numbers that overflow a float are invalid JSON;
- an unknown write key is still accepted (as Segment does), but no write key
  at all answers 401.

Control endpoints, for a test in another process than the server (code
under test in Celery or RQ workers, or ``simple-segment serve``); they are
never recorded, never use a script and never count as messages:

- ``GET /_messages[?since=N]``: accepted messages as JSON lines
  (``application/x-ndjson``), oldest first, skipping the first N accepted;
  the ``X-Messages-Accepted`` header gives the next N. Cheap enough to poll.
- ``GET /_requests[?since=N]``: one JSON line per recorded request:
  ``{"method", "path", "status", "headers", "write_key", "received_at",
  "messages"}``.
- ``POST /_script``: a JSON object scripting answers like `respond_with`, e.g.
  ``{"status": 503, "times": 3}`` or ``{"status": 503, "seconds": 2.5}``, with
  optional ``"headers"``, ``"body"``, ``"delay"``, ``"drop"`` and
  ``"endpoint"`` (``"token"`` scripts ``POST /token``).
- ``POST /_clear``: forget everything, as `FakeSegment.clear`.

Details in :mod:`._control`.

The package's parts: :mod:`._rules` (Segment's validation rules, pure
functions), :mod:`._recorder` (recorded state, scripts and waits),
:mod:`._control` (the control endpoints), :mod:`._oauth` (OAuth mode's
token authority, the only part that imports PyJWT) and this module (the HTTP
server and `FakeSegment`).

Since: 0.1.0
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
from ._oauth import TOKEN_PATH, IssuedToken, OAuthSettings, TokenAuthority
from ._recorder import Endpoint, FakeSegmentTimeoutError, RecordedRequest, Recorder, Script, make_script
from ._rules import (
    JSON_TYPE,
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
    from types import TracebackType

    from typing_extensions import Self

    _Request = socket.socket | tuple[bytes, socket.socket]

__all__ = ["FakeSegment", "FakeSegmentTimeoutError", "IssuedToken", "OAuthSettings", "RecordedRequest"]

_MAX_CHUNK_LINE = 1024
_MAX_TRAILER_LINES = 100
# How often the accept loop checks for stop(); bounds how long stop() waits for it.
_POLL_INTERVAL = 0.05
# Bounds on stop(): waiting for the accept loop, then for handler threads to finish.
_STOP_JOIN_TIMEOUT = 5.0
_STOP_DRAIN_TIMEOUT = 2.0
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


class _Server(ThreadingHTTPServer):
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

        Disconnects (any `OSError`) and anything after stop() are normal and ignored.
        """
        exc = sys.exc_info()[1]
        if exc is None or isinstance(exc, OSError) or self.stopping.is_set():
            return
        self.recorder.add_error(exc)


class _Server6(_Server):
    address_family = socket.AF_INET6


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
    def fake(self) -> _Server:
        return cast("_Server", self.server)

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

    def do_POST(self) -> None:
        """Handle a POST: the only method Segment's endpoints take."""
        self._serve()

    def do_GET(self) -> None:
        """Record and answer 404 or 405."""
        self._serve()

    def do_HEAD(self) -> None:
        """Record and answer 404 or 405 (without a body)."""
        self._serve()

    def do_PUT(self) -> None:
        """Record and answer 404 or 405."""
        self._serve()

    def do_PATCH(self) -> None:
        """Record and answer 404 or 405."""
        self._serve()

    def do_DELETE(self) -> None:
        """Record and answer 404 or 405."""
        self._serve()

    def do_OPTIONS(self) -> None:
        """Record and answer 404 or 405."""
        self._serve()

    def _serve(self) -> None:
        if self.path.startswith(_control.PREFIX):
            self._serve_control()
            return
        received_at = time.time()
        headers = _header_dict(list(self.headers.items()))
        recorder = self.fake.recorder
        try:
            body = self._read_body()
        except _BodyError as exc:
            self.close_connection = True
            payload = {
                "success": False,
                "message": exc.message,
                "code": "invalid_request",
            }
            reply = _json_reply(exc.status, payload)
            request = RecordedRequest(
                method=self.command,
                path=self.path,
                headers=headers,
                body=b"",
                json=None,
                write_key=None,
                status=exc.status,
                received_at=received_at,
            )
            recorder.record(request, ())
            self._write(reply)
            return

        authority = self.fake.authority
        if authority is not None and urlsplit(self.path).path.rstrip("/") == TOKEN_PATH:
            self._serve_token(authority, headers, body, received_at)
            return
        script = recorder.next_script() if self.command == "POST" else None
        authorize = self.fake.authorize if authority is not None else None
        value, write_key, verdict = evaluate(self.command, self.path, headers, body, authorize=authorize)
        reply = _reply_for(verdict, script)
        accepted = is_success(reply.status) and is_success(verdict.status)
        messages = verdict.messages if accepted and not reply.drop else ()
        status = 0 if reply.drop else reply.status
        request = RecordedRequest(
            method=self.command,
            path=self.path,
            headers=headers,
            body=body,
            json=value,
            write_key=write_key,
            status=status,
            received_at=received_at,
        )
        recorder.record(request, messages)
        self._finish(reply)

    def _serve_token(self, authority: TokenAuthority, headers: dict[str, str], body: bytes, received_at: float) -> None:
        """Answer ``/token`` in OAuth mode; recorded like any request, with no messages."""
        recorder = self.fake.recorder
        script = recorder.next_script("token") if self.command == "POST" else None
        reply = _token_reply(authority, script, (self.command, headers, body), self.fake.audience)
        request = RecordedRequest(
            method=self.command,
            path=self.path,
            headers=headers,
            body=body,
            json=None,
            write_key=None,
            status=0 if reply.drop else reply.status,
            received_at=received_at,
        )
        recorder.record(request, ())
        self._finish(reply)

    def _serve_control(self) -> None:
        """Answer a control request; it is not recorded and uses no script."""
        try:
            body = self._read_body()
        except _BodyError as exc:
            self.close_connection = True
            payload = {"success": False, "message": exc.message, "code": "invalid_request"}
            self._write(_json_reply(exc.status, payload))
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
            raise _BodyError(413, f"body of {length} bytes is far over the size limit")
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
            if total > MAX_WIRE_BYTES:
                raise _BodyError(413, "chunked body is far over the size limit")
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


class FakeSegment:
    """A local Segment Tracking API for tests: validates, records and can be scripted.

    Requests run on daemon threads; all recorded state sits behind one lock, and
    every accessor returns a copy. At most ``max_messages`` messages and
    ``max_requests`` requests are kept (the oldest are forgotten and counted in
    `dropped_messages` / `dropped_requests`).

    Validation follows Segment's limits (500,000-byte body, 32,768-byte message,
    required ids and fields) with one deliberate difference: more than 2,500
    messages in a request answers 400, where Segment answers 200 and silently
    drops the events. See the module docstring for the error codes.

    Code in another process (a Celery or RQ worker, say) can send to `url`
    like any client; a test that does not hold this object can read and
    script it over HTTP with the control endpoints ``GET /_messages``,
    ``GET /_requests``, ``POST /_script`` and ``POST /_clear`` (see the module
    docstring).

    OAuth mode (``oauth=OAuthSettings(...)``) plays a source that requires
    OAuth, as SPEC.md section 6 describes it: ``POST /token`` verifies the
    client assertion (an RS256 JWT: ``kid`` the key id, ``iss`` = ``sub`` the
    client id, ``aud`` this server's `url`, ``iat``/``exp`` judged on the
    server's clock, a fresh ``jti``) and answers 200 ``{"access_token",
    "expires_in", "scope", "token_type": "Bearer"}`` with a ``Date`` header.
    A bad assertion answers 400 ``{"error": "invalid_request",
    "error_description": ...}`` ("Token used before issued" / "Token is
    expired" when ``iat``/``exp`` disagree with the server's clock, which
    `clock_offset` moves); an unknown client 401 ``invalid_client``. Tracking
    requests then need ``Authorization: Bearer <token>`` with a token this
    server issued that has not expired or been revoked, else 401
    ``invalid_token``; the write key is not required. Token requests are
    recorded in `requests` (path ``/token``) and can be scripted with
    ``respond_with(..., endpoint="token")``. See `tokens`, `revoke_tokens`,
    `token_lifetime` and `clock_offset`. Only this mode needs PyJWT with
    cryptography, imported when the server is created.

    A stopped server cannot be started again; create a new one.

    Since: 0.1.0
    """

    def __init__(  # noqa: PLR0913 - all but host and port are keyword-only options
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        max_messages: int = 1_000_000,
        max_requests: int = 100_000,
        on_message: Callable[[dict[str, Any]], None] | None = None,
        oauth: OAuthSettings | None = None,
    ) -> None:
        """Configure the server; nothing listens until `start`.

        Args:
            host: Address to bind; loopback by default. An IPv6 address (one
                containing ``:``) binds an IPv6 socket.
            port: Port to bind; 0 picks a free one (see `port` after `start`).
            max_messages: How many accepted messages to keep.
            max_requests: How many `RecordedRequest` to keep.
            on_message: Called with each accepted message, on the request's
                thread, outside the lock, before the response is sent. Its
                exceptions are kept in `errors`, not raised.
            oauth: Require OAuth, as these settings say (see the class
                docstring). Since: 0.1.0.

        Raises:
            ValueError: ``max_messages`` or ``max_requests`` is negative, or
                the OAuth public key is not an RSA key.
            ImportError: ``oauth`` is given but PyJWT or cryptography is missing.

        """
        if max_messages < 0 or max_requests < 0:
            msg = "max_messages and max_requests must not be negative"
            raise ValueError(msg)
        self._host = host
        self._port = port
        self._recorder = Recorder(max_messages, max_requests, on_message, oauth=oauth is not None)
        self._authority = None if oauth is None else TokenAuthority(oauth)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._state_lock = threading.Lock()
        self._stopped = False

    def __repr__(self) -> str:
        """Show where it listens and how much it has recorded."""
        where = self.url if self._server is not None else "not started"
        recorder = self._recorder
        with recorder.lock:
            counts = f"requests={len(recorder.requests)} messages={len(recorder.messages)}"
        return f"<FakeSegment {where} {counts}>"

    # -- lifecycle -----------------------------------------------------------

    def start(self) -> Self:
        """Bind and start serving in a daemon thread; return self.

        Calling it again while running does nothing.

        Raises:
            RuntimeError: The server was already stopped.
            OSError: The address could not be bound.

        """
        with self._state_lock:
            if self._stopped:
                msg = "a stopped FakeSegment cannot be restarted; create a new one"
                raise RuntimeError(msg)
            if self._server is not None:
                return self
            server_class = _Server6 if ":" in self._host else _Server
            server = server_class((self._host, self._port), self._recorder, self._authority, self.clear)
            self._server = server
            server.audience = self.url  # before the first request is accepted
            self._thread = threading.Thread(
                target=self._accept_loop,
                args=(server,),
                name=f"FakeSegment:{server.server_port}",
                daemon=True,
            )
            self._thread.start()
        return self

    def _accept_loop(self, server: _Server) -> None:
        while not server.stopping.is_set() and self._accept_once(server):
            pass

    def _accept_once(self, server: _Server) -> bool:
        """Accept at most one connection; return False once the socket is gone."""
        try:
            server.handle_request()
        except (OSError, ValueError):
            # The listening socket went away under us: only stop() does that.
            if server.stopping.is_set():
                return False
            raise
        return True

    def stop(self) -> None:
        """Stop serving and close every connection; safe to call more than once.

        Returns within a few seconds even with idle keep-alive connections
        open or requests sleeping in a scripted ``delay`` (those are dropped).
        """
        with self._state_lock:
            if self._stopped:
                return
            self._stopped = True
            server, thread = self._server, self._thread
        if server is None:
            return
        server.stopping.set()
        if thread is not None:
            thread.join(_STOP_JOIN_TIMEOUT)
        server.server_close()
        server.close_connections(_STOP_DRAIN_TIMEOUT)

    def close(self) -> None:
        """Stop the server, as `stop` does."""
        self.stop()

    def __enter__(self) -> Self:
        """Start the server and return it."""
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Stop the server."""
        self.stop()

    # -- where it listens ----------------------------------------------------

    @property
    def host(self) -> str:
        """The host it was asked to bind."""
        return self._host

    @property
    def port(self) -> int:
        """The bound port once started (the requested one before)."""
        server = self._server
        return self._port if server is None else int(server.server_address[1])

    @property
    def url(self) -> str:
        """The base URL to give a client, e.g. ``http://127.0.0.1:54321``.

        Raises:
            RuntimeError: The server has not been started.

        """
        if self._server is None:
            msg = "FakeSegment has no URL until start() is called"
            raise RuntimeError(msg)
        host = self._host
        if host in {"", "0.0.0.0"}:  # noqa: S104 - only compared, never bound here
            host = "127.0.0.1"
        elif host == "::":
            host = "::1"
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    # -- what it recorded ----------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received (accepted, rejected or dropped), oldest first."""
        with self._recorder.lock:
            return list(self._recorder.requests)

    @property
    def messages(self) -> list[dict[str, Any]]:
        """Every message of every request answered 2xx, in arrival order.

        Each message is the decoded dict as sent; retries of one message appear
        once per accepted attempt (compare ``messageId`` to de-duplicate).
        """
        with self._recorder.lock:
            return list(self._recorder.messages)

    def by_type(self, type_: str) -> list[dict[str, Any]]:
        """Return the accepted messages whose ``type`` is ``type_``."""
        return [m for m in self.messages if m.get("type") == type_]

    def by_event(self, event: str) -> list[dict[str, Any]]:
        """Return the accepted track messages whose ``event`` is ``event``."""
        return [m for m in self.messages if m.get("type") == "track" and m.get("event") == event]

    def by_message_id(self, message_id: str) -> dict[str, Any] | None:
        """Return the first accepted message with this ``messageId``, or None."""
        matches = (m for m in self.messages if m.get("messageId") == message_id)
        return next(matches, None)

    @property
    def dropped_messages(self) -> int:
        """How many accepted messages were forgotten to stay within ``max_messages``."""
        with self._recorder.lock:
            return self._recorder.dropped_messages

    @property
    def dropped_requests(self) -> int:
        """How many requests were forgotten to stay within ``max_requests``."""
        with self._recorder.lock:
            return self._recorder.dropped_requests

    @property
    def connections_accepted(self) -> int:
        """How many TCP connections clients opened (keep-alive reuse keeps this low).

        Connections used only for control endpoints count too.
        """
        with self._recorder.lock:
            return self._recorder.connections_accepted

    @property
    def errors(self) -> list[BaseException]:
        """Exceptions raised by ``on_message`` or by a request handler (latest 100).

        Empty in a healthy run; client disconnects are not errors.
        """
        with self._recorder.lock:
            return list(self._recorder.errors)

    @property
    def pending_responses(self) -> int:
        """How many counted scripted responses are queued and not yet used.

        A time window (``respond_with(..., seconds=...)``) is not counted.
        """
        return self._recorder.pending_scripts()

    def clear(self) -> None:
        """Forget recorded requests, messages, errors, counters and pending scripts.

        Open connections stay open. In OAuth mode the record of issued tokens
        (`tokens`, `tokens_issued`) is forgotten too, but the tokens stay valid,
        so a client holding one goes on without a new token request.
        """
        self._recorder.clear()
        if self._authority is not None:
            self._authority.forget_history()

    def wait_for_messages(self, n: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        """Wait until ``n`` messages in all have been accepted; return `messages`.

        Counts every accepted message since start (or `clear`), including any
        forgotten to stay within ``max_messages``.

        Raises:
            FakeSegmentTimeoutError: Fewer than ``n`` arrived within ``timeout``
                seconds (an `AssertionError` and a `TimeoutError`).

        """
        return self._recorder.wait_for_messages(n, timeout)

    def wait_for_requests(self, n: int, timeout: float = 5.0) -> list[RecordedRequest]:
        """Wait until ``n`` requests in all have been received; return `requests`.

        Raises:
            FakeSegmentTimeoutError: Fewer than ``n`` arrived within ``timeout``
                seconds.

        """
        return self._recorder.wait_for_requests(n, timeout)

    # -- scripting -----------------------------------------------------------

    def respond_with(  # noqa: PLR0913 - mirrors the response's parts
        self,
        status: int = 200,
        *,
        headers: Mapping[str, str] | None = None,
        body: bytes | str | dict[str, Any] | None = None,
        delay: float = 0.0,
        drop: bool = False,
        times: int | None = None,
        seconds: float | None = None,
        endpoint: Endpoint = "tracking",
    ) -> None:
        """Script the answer to the next ``times`` POSTs, or to every POST for ``seconds``.

        Counted scripts are used one per POST, in the order queued; with none
        queued the request is validated and answered normally. A time window
        (``seconds``) starts now, answers every POST until it ends (queued
        scripts wait meanwhile) and replaces an earlier window. The request is
        still recorded; its messages count as accepted (and are stored before
        any ``delay``) only if the scripted status is 2xx *and* the request
        passes validation. ``POST /_script`` does the same from another process.

        Args:
            status: The status code to answer (200-599).
            headers: Extra response headers, e.g. ``{"Retry-After": "2"}``.
                Content-Length is always computed.
            body: The response body: a dict is sent as JSON, a str as UTF-8.
                None sends ``{"success": true}`` for 2xx, else
                ``{"success": false, "message": <reason>, "code": <reason_code>}``.
                Content-Type defaults to application/json for dict/None and
                text/plain for str/bytes unless ``headers`` sets it.
            delay: Seconds to wait before answering; cut short (and the
                connection dropped) by `stop`.
            drop: Read the request, then close the connection without answering
                (recorded with status 0).
            times: How many consecutive POSTs get this answer (default 1).
            seconds: Instead of ``times``: answer every POST this way for the
                next ``seconds`` seconds. Since: 0.1.0.
            endpoint: ``"tracking"`` (every POST but ``/token``) or, in OAuth
                mode, ``"token"`` (``POST /token``); each has its own scripts.
                A token script without a body answers
                ``{"error": <reason_code>, "error_description": <reason>}``;
                a 2xx one without a body still verifies the assertion and
                issues the token (before any ``delay``). Since: 0.1.0.

        Raises:
            ValueError: status, delay, times or seconds is out of range, both
                times and seconds are given, or the endpoint is unknown
                (``"token"`` without OAuth mode).

        """
        script = make_script(status, headers=headers, body=body, delay=delay, drop=drop)
        self._recorder.add_script(script, times=times, seconds=seconds, endpoint=endpoint)

    # -- OAuth mode --------------------------------------------------------------

    def _oauth(self) -> TokenAuthority:
        if self._authority is None:
            msg = "FakeSegment is not in OAuth mode; create it with oauth=OAuthSettings(...)"
            raise RuntimeError(msg)
        return self._authority

    @property
    def oauth(self) -> OAuthSettings | None:
        """The OAuth settings it was created with, or None without OAuth mode."""
        return None if self._authority is None else self._authority.settings

    @property
    def tokens(self) -> list[IssuedToken]:
        """The access tokens issued since start (or `clear`), oldest first, as they are now.

        Raises:
            RuntimeError: Not in OAuth mode.

        """
        return self._oauth().tokens

    @property
    def tokens_issued(self) -> int:
        """How many access tokens were issued since start (or `clear`).

        Raises:
            RuntimeError: Not in OAuth mode.

        """
        return self._oauth().issued

    def revoke_tokens(self) -> int:
        """Revoke every access token issued so far; return how many were still unrevoked.

        A tracking request with a revoked token answers 401 ``invalid_token``;
        the client must ask ``/token`` again.

        Raises:
            RuntimeError: Not in OAuth mode.

        """
        return self._oauth().revoke_all()

    @property
    def token_lifetime(self) -> int:
        """Seconds a newly issued token lives (``expires_in``); settable.

        Tokens already issued keep their expiry.

        Raises:
            RuntimeError: Not in OAuth mode.
            ValueError: Set to less than 1 second.

        """
        return self._oauth().token_lifetime

    @token_lifetime.setter
    def token_lifetime(self, seconds: int) -> None:
        self._oauth().token_lifetime = seconds

    @property
    def clock_offset(self) -> float:
        """Seconds the server's clock runs ahead of this machine's (negative: behind); settable.

        It judges client assertions' ``iat``/``exp``, stamps the ``Date`` header
        a client reads its skew from, and ages tokens: moving it forward by
        `token_lifetime` expires every token without waiting.

        Raises:
            RuntimeError: Not in OAuth mode.
            ValueError: Set to a non-finite number.

        """
        return self._oauth().clock_offset

    @clock_offset.setter
    def clock_offset(self, seconds: float) -> None:
        self._oauth().clock_offset = seconds
