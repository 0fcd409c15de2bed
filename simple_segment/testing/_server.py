"""A Segment-compatible HTTP server for tests, standard library only (OAuth mode aside).

:class:`FakeSegment` listens on loopback, speaks HTTP/1.1 with keep-alive, validates
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
:class:`FakeSegment` and :mod:`._oauth`. Any other path answers 404; another method
on a known path answers 405.

Error answers have the body ``{"success": false, "message": ..., "code": ...}``
with ``Content-Type: application/json``. The codes are ``not_found``,
``method_not_allowed``, ``missing_write_key`` (401), ``invalid_token`` (401,
OAuth mode: no valid Bearer token), ``invalid_request`` (bad
gzip, invalid JSON, wrong body shape), ``request_too_large``,
``message_too_large``, ``too_many_messages`` and ``invalid_message`` (a
message without the fields its type needs). Success is 200
``{"success": true}``. A body over 1 MiB (``_rules.MAX_WIRE_BYTES``) is never
read into memory: a Content-Length over it answers 413 at once, a chunked body
is cut there (413 too), and the connection is closed. A request whose body is over
500,000 bytes is recorded with an empty body (and its JSON is not parsed), so what
``max_requests`` requests hold stays bounded.

Deliberately stricter than Segment:

- more than 2,500 messages in one request answers 400 ``too_many_messages``
  (Segment answers 200 and silently drops the events, which a test would
  never notice);
- a ``messageId`` that is not a string shorter than 100 characters answers
  400 (the client refuses to send one, too);
- ``NaN``, ``Infinity`` and numbers that overflow a float are invalid JSON;
- an unknown write key is still accepted (as Segment does), but no write key
  at all answers 401.

Control endpoints (``GET /_messages``, ``GET /_requests``, ``POST /_script``,
``POST /_clear``) let a test in another process than the server (code under
test in Celery or RQ workers, or ``simple-segment serve``) read and script it;
they are never recorded, never use a script and never count as messages.
Details in :mod:`._control`.

The package's parts: :mod:`._rules` (Segment's validation rules, pure
functions), :mod:`._recorder` (recorded state, scripts and waits),
:mod:`._control` (the control endpoints), :mod:`._oauth` (OAuth mode's
token authority, the only part that imports PyJWT), :mod:`._http` (the HTTP
server and its one request handler) and this module (:class:`FakeSegment`).
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from ._http import Server, make_server
from ._oauth import IssuedToken, OAuthSettings, TokenAuthority
from ._recorder import Endpoint, FakeSegmentTimeoutError, RecordedRequest, Recorder, make_script

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from types import TracebackType

    from typing_extensions import Self

__all__ = ["FakeSegment", "FakeSegmentTimeoutError", "IssuedToken", "OAuthSettings", "RecordedRequest"]

# Bounds on stop(): waiting for the accept loop, then for handler threads to finish.
_STOP_JOIN_TIMEOUT = 5.0
_STOP_DRAIN_TIMEOUT = 2.0


class FakeSegment:
    """A local Segment Tracking API for tests: validates, records and can be scripted.

    Requests run on daemon threads; all recorded state sits behind one lock, and
    every accessor returns a copy. At most ``max_messages`` messages and
    ``max_requests`` requests are kept (the oldest are forgotten and counted in
    :attr:`dropped_messages` / :attr:`dropped_requests`).

    Validation follows Segment's limits (500,000-byte body, 32,768-byte message,
    required ids and fields), a little stricter; code in another process can send
    to :attr:`url`, and a test that does not hold this object can read and script it
    with the control endpoints. The module docstring lists both.

    OAuth mode (``oauth=OAuthSettings(...)``) plays a source that requires
    OAuth, as SPEC.md section 6 describes it: ``POST /token`` verifies the
    client assertion (an RS256 JWT: ``kid`` the key id, ``iss`` = ``sub`` the
    client id, ``aud`` this server's :attr:`url`, ``iat``/``exp`` judged on the
    server's clock, a fresh ``jti``) and answers 200 ``{"access_token",
    "expires_in", "scope", "token_type": "Bearer"}`` with a ``Date`` header.
    A bad assertion answers 400 ``{"error": "invalid_request",
    "error_description": ...}`` ("Token used before issued" / "Token is
    expired" when ``iat``/``exp`` disagree with the server's clock, which
    :attr:`clock_offset` moves); an unknown client 401 ``invalid_client``. Tracking
    requests then need ``Authorization: Bearer <token>`` with a token this
    server issued that has not expired or been revoked, else 401
    ``invalid_token``; the write key is not required. Token requests are
    recorded in :attr:`requests` (path ``/token``) and can be scripted with
    ``respond_with(..., endpoint="token")``. See :attr:`tokens`, :meth:`revoke_tokens`,
    :attr:`token_lifetime` and :attr:`clock_offset`. Only this mode needs PyJWT with
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
        """Configure the server; nothing listens until :meth:`start`.

        - ``host``: Address to bind; loopback by default. An IPv6 address (one
          containing ``:``) binds an IPv6 socket.
        - ``port``: Port to bind; 0 picks a free one (see :attr:`port` after
          :meth:`start`).
        - ``max_messages``: How many accepted messages to keep.
        - ``max_requests``: How many :class:`RecordedRequest` to keep.
        - ``on_message``: Called with each accepted message, on the request's thread,
          outside the lock, before the response is sent. Its exceptions are kept in
          :attr:`errors`, not raised.
        - ``oauth``: Require OAuth, as these settings say (see the class docstring).

        Raises :class:`ValueError` when ``max_messages`` or ``max_requests`` is
        negative, or the OAuth public key is not an RSA key; :class:`ImportError` when
        ``oauth`` is given but PyJWT or cryptography is missing.
        """
        if max_messages < 0 or max_requests < 0:
            msg = "max_messages and max_requests must not be negative"
            raise ValueError(msg)
        self._host = host
        self._port = port
        self._recorder = Recorder(max_messages, max_requests, on_message, oauth=oauth is not None)
        self._authority = None if oauth is None else TokenAuthority(oauth)
        self._server: Server | None = None
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

        Raises :class:`RuntimeError` when the server was already stopped;
        :class:`OSError` when the address could not be bound.
        """
        with self._state_lock:
            if self._stopped:
                msg = "a stopped FakeSegment cannot be restarted; create a new one"
                raise RuntimeError(msg)
            if self._server is not None:
                return self
            server = make_server((self._host, self._port), self._recorder, self._authority, self.clear)
            self._server = server
            server.audience = self.url  # before the first request is accepted
            self._thread = threading.Thread(
                target=server.serve_until_stopped,
                name=f"FakeSegment:{server.server_port}",
                daemon=True,
            )
            self._thread.start()
        return self

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
        """Stop the server, as :meth:`stop` does."""
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

        Raises :class:`RuntimeError` when the server has not been started.
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
        (:attr:`tokens`, :attr:`tokens_issued`) is forgotten too, but the tokens stay valid,
        so a client holding one goes on without a new token request.
        """
        self._recorder.clear()
        if self._authority is not None:
            self._authority.forget_history()

    def wait_for_messages(self, n: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        """Wait until ``n`` messages in all have been accepted; return :attr:`messages`.

        Counts every accepted message since start (or :meth:`clear`), including any
        forgotten to stay within ``max_messages``.

        Raises :class:`FakeSegmentTimeoutError` when fewer than ``n`` arrived within
        ``timeout`` seconds (an :class:`AssertionError` and a :class:`TimeoutError`).
        """
        return self._recorder.wait_for_messages(n, timeout)

    def wait_for_requests(self, n: int, timeout: float = 5.0) -> list[RecordedRequest]:
        """Wait until ``n`` requests in all have been received; return :attr:`requests`.

        Raises :class:`FakeSegmentTimeoutError` when fewer than ``n`` arrived within
        ``timeout`` seconds.
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

        - ``status``: The status code to answer (200-599).
        - ``headers``: Extra response headers, e.g. ``{"Retry-After": "2"}``.
          Content-Length is always computed.
        - ``body``: The response body: a dict is sent as JSON, a str as UTF-8. None
          sends ``{"success": true}`` for 2xx, else ``{"success": false, "message":
          <reason>, "code": <reason_code>}``. Content-Type defaults to application/json
          for dict/None and text/plain for str/bytes unless ``headers`` sets it.
        - ``delay``: Seconds to wait before answering; cut short (and the connection
          dropped) by :meth:`stop`.
        - ``drop``: Read the request, then close the connection without answering
          (recorded with status 0).
        - ``times``: How many consecutive POSTs get this answer (default 1).
        - ``seconds``: Instead of ``times``: answer every POST this way for the next
          ``seconds`` seconds.
        - ``endpoint``: ``"tracking"`` (every POST but ``/token``) or, in OAuth mode,
          ``"token"`` (``POST /token``); each has its own scripts. A token script
          without a body answers ``{"error": <reason_code>, "error_description":
          <reason>}``; a 2xx one without a body still verifies the assertion and issues
          the token (before any ``delay``).

        Raises :class:`ValueError` when status, delay, times or seconds is out of range,
        both times and seconds are given, or the endpoint is unknown (``"token"``
        without OAuth mode).
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
        """The access tokens issued since start (or :meth:`clear`), oldest first, as they are now.

        Raises :class:`RuntimeError` when not in OAuth mode.
        """
        return self._oauth().tokens

    @property
    def tokens_issued(self) -> int:
        """How many access tokens were issued since start (or :meth:`clear`).

        Raises :class:`RuntimeError` when not in OAuth mode.
        """
        return self._oauth().issued

    def revoke_tokens(self) -> int:
        """Revoke every access token issued so far; return how many were still unrevoked.

        A tracking request with a revoked token answers 401 ``invalid_token``;
        the client must ask ``/token`` again.

        Raises :class:`RuntimeError` when not in OAuth mode.
        """
        return self._oauth().revoke_all()

    @property
    def token_lifetime(self) -> int:
        """Seconds a newly issued token lives (``expires_in``); settable.

        Tokens already issued keep their expiry.

        Raises :class:`RuntimeError` when not in OAuth mode; :class:`ValueError` when
        set to less than 1 second.
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
        :attr:`token_lifetime` expires every token without waiting.

        Raises :class:`RuntimeError` when not in OAuth mode; :class:`ValueError` when
        set to a non-finite number.
        """
        return self._oauth().clock_offset

    @clock_offset.setter
    def clock_offset(self, seconds: float) -> None:
        self._oauth().clock_offset = seconds
