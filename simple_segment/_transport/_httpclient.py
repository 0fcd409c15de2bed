"""Every use of http.client's and urllib3's internals, in one place: the deadline sockets and one-write requests.

A urllib3 minor release or a CPython change to http.client can break what is here,
so it is kept small and each trick has a test naming the private it relies on
(``tests/test_http_internals.py``):

- urllib3's ``HTTPConnection._new_conn`` is where a connection's socket is made:
  ours resolves ``_dns_host`` and connects to each address with what is left of the
  attempt (urllib3's ``create_connection`` gives each address the whole timeout), as a
  :class:`DeadlineSocket`; a subclass's own ``_new_conn`` (SOCKS) is adopted
  (``socket.detach`` and ``fileno=``);
- ``SSLSocket.do_handshake`` is called by ``SSLContext.wrap_socket``: ours gets what
  is left, not the socket's connect timeout;
- http.client's ``HTTPResponse._read_status`` reads a status line: ours skips ``1xx``
  interim answers (http.client skips ``100 Continue`` only), and urllib3's CONNECT
  reads the proxy's answer with it too; a refused CONNECT is an ``OSError`` whose
  text http.client (and urllib3's copy) writes as ``Tunnel connection failed: 407 ...``
  (:func:`tunnel_refusal`);
- ``SSLContext.sslsocket_class`` makes TLS sockets :class:`DeadlineSSLSocket`;
- ``HTTPConnectionPool.ConnectionCls`` is replaced per pool (:func:`adopt_pool`);
- http.client's ``endheaders`` writes the headers with one ``send`` (from
  ``_send_output``) before urllib3 sends the body: the headers are held and go out
  with the body in one write;
- http.client reads an answer through ``sock.makefile("rb")``, and keeps the
  response it has not finished with in ``_HTTPConnection__response`` (``None`` once
  an answer ends its connection): a reader nobody holds is closed at once.
"""

from __future__ import annotations

import functools
import http.client
import re
import socket
import ssl
import sys
import threading
import time
from typing import TYPE_CHECKING, Any, TypeVar

import urllib3.connection
from urllib3.exceptions import ConnectTimeoutError, LocationParseError, NameResolutionError, NewConnectionError
from urllib3.util.connection import allowed_gai_family

if TYPE_CHECKING:
    from urllib3.connection import HTTPConnection
    from urllib3.connectionpool import HTTPConnectionPool

S = TypeVar("S", bound=socket.socket)

_URLLIB3_NEW_CONN = urllib3.connection.HTTPConnection._new_conn  # noqa: SLF001 - replaced by ours (module docstring)


class _Budget(threading.local):
    """The deadline (on :func:`time.monotonic`) of the attempt running on this thread, if any."""

    at: float | None = None


budget = _Budget()
"""This thread's attempt's deadline: :class:`Endpoint` sets ``budget.at`` around each exchange."""


def _within_budget(sock: socket.socket) -> None:
    """Lower ``sock``'s timeout to what is left of this thread's attempt, if that is less.

    Called before every blocking send and receive, so a stream of single bytes cannot
    keep a receive (or a send to a server that reads slowly) going after the deadline:
    each one waits no longer than what is left.  urllib3 sets its own (connect or
    read) timeout at each phase; a lower budget wins.  Outside an attempt, nothing.
    """
    at = budget.at
    if at is not None:
        left = at - time.monotonic()
        if left <= 0:
            msg = "total_timeout ran out"
            raise TimeoutError(msg)
        timeout = sock.gettimeout()
        if timeout is None or left < timeout:
            sock.settimeout(left)


def _time_left(timeout: object) -> float | None:
    """Return ``timeout`` (urllib3's connect timeout) or what is left of this thread's attempt, if less."""
    limit = float(timeout) if isinstance(timeout, (int, float)) else None
    at = budget.at
    if at is not None:
        left = at - time.monotonic()
        if left <= 0:
            msg = "total_timeout ran out"
            raise TimeoutError(msg)
        limit = left if limit is None else min(limit, left)
    return limit


def _deadline_class(base: type[S], doc: str) -> type[S]:
    """Return a subclass of the socket class ``base`` whose blocking operations keep the deadline.

    (For TLS sockets, ``sendall`` is a loop of ``send`` in Python: each one is checked.)
    The reader http.client makes on the socket is kept, so a response that urllib3
    refuses can be closed at once (:meth:`close_reader`).
    """
    recv_into, recv, send, sendall, makefile = base.recv_into, base.recv, base.send, base.sendall, base.makefile

    class DeadlineSocket(base):  # type: ignore[valid-type, misc]
        _reader: Any = None

        def recv_into(self, *args: Any) -> int:  # noqa: ANN401 - socket's own signature
            _within_budget(self)
            return recv_into(self, *args)

        def recv(self, *args: Any) -> bytes:  # noqa: ANN401
            _within_budget(self)
            return recv(self, *args)

        def send(self, *args: Any) -> int:  # noqa: ANN401
            _within_budget(self)
            return send(self, *args)

        def sendall(self, *args: Any) -> None:  # noqa: ANN401
            _within_budget(self)
            sendall(self, *args)

        def makefile(self, *args: Any, **kwargs: Any) -> Any:  # noqa: ANN401
            self._reader = makefile(self, *args, **kwargs)
            return self._reader

    DeadlineSocket.__name__ = DeadlineSocket.__qualname__ = f"Deadline{base.__name__}"
    DeadlineSocket.__doc__ = doc
    return DeadlineSocket


def _connect(host: str, port: int, conn: Any) -> socket.socket:  # noqa: ANN401 - urllib3's connection
    """Connect to ``host`` (each address it resolves to in turn) within one budget, as a :class:`DeadlineSocket`.

    urllib3's ``create_connection``, except that each address gets what is left of
    the attempt if that is less than the connect timeout: three black-holed
    addresses share one budget instead of taking three.  Name resolution itself
    cannot be interrupted.
    """
    timeout = conn.timeout if isinstance(conn.timeout, (int, float)) else None
    if host.startswith("["):
        host = host.strip("[]")
    try:
        host.encode("idna")
    except UnicodeError:
        raise LocationParseError(f"'{host}', label empty or too long") from None
    error: OSError | None = None
    for family, kind, proto, _, address in socket.getaddrinfo(host, port, allowed_gai_family(), socket.SOCK_STREAM):
        sock = DeadlineSocket(family, kind, proto)
        try:
            for option in conn.socket_options or ():
                sock.setsockopt(*option)
            sock.settimeout(_time_left(timeout))
            if conn.source_address:
                sock.bind(conn.source_address)
            sock.connect(address)
        except OSError as exc:
            sock.close()
            error = exc
            if isinstance(exc, TimeoutError) and budget.at is not None and budget.at <= time.monotonic():
                break
            continue
        else:
            return sock
    if error is None:
        error = TimeoutError("timed out") if timeout is not None else OSError("getaddrinfo returns an empty list")
    try:
        raise error
    finally:
        error = None  # no reference cycle through this frame


def _close_reader(sock: socket.socket) -> None:
    """Close the reader http.client made on ``sock`` (urllib3 may drop that one unclosed)."""
    reader = getattr(sock, "_reader", None)
    if reader is not None:
        sock._reader = None  # type: ignore[attr-defined]  # noqa: SLF001 - our socket class's own slot
        reader.close()


DeadlineSocket = _deadline_class(socket.socket, "A TCP socket that keeps the attempt's deadline.")


class DeadlineSSLSocket(
    _deadline_class(ssl.SSLSocket, "")  # type: ignore[misc]
):
    """A TLS socket that keeps the attempt's deadline (``SSLContext.sslsocket_class``), its handshake too."""

    def do_handshake(self, *args: Any) -> None:  # noqa: ANN401 - ssl's own signature
        # The socket still has the timeout its TCP connect was given: the handshake
        # (bounded as a whole by the socket's timeout) gets what is left instead.
        _within_budget(self)
        super().do_handshake(*args)


class _InterimSkippingResponse(http.client.HTTPResponse):
    """http.client's response, skipping every ``1xx`` interim answer (``103 Early Hints``) before the real one.

    http.client skips ``100 Continue`` only: a ``103`` would be taken for the answer
    and the real one left unread.  ``101`` (we never ask to switch) is the answer.
    """

    def flush(self) -> None:
        # _close_reader may have closed our reader under us; on Python 3.13 the garbage
        # collector's close() then flushes it and reports an ignored ValueError.
        fp = self.fp
        if fp is None or getattr(fp, "closed", False):
            return
        super().flush()

    def _read_status(self) -> tuple[str, int, str]:
        for _ in range(_MAX_INTERIM):
            version, status, reason = super()._read_status()  # type: ignore[misc]
            if not 100 < status < 200 or status == 101:  # noqa: PLR2004 - interim answers; http.client skips 100
                return version, status, reason
            for _ in range(_MAX_INTERIM_LINES):  # its header lines, up to the blank one
                line = self.fp.readline(_MAX_LINE + 1)
                if len(line) > _MAX_LINE:
                    raise http.client.LineTooLong("header line")
                if line in (b"\r\n", b"\n", b""):
                    break
            else:
                raise http.client.HTTPException("too many header lines in an interim answer")
        raise http.client.HTTPException(f"more than {_MAX_INTERIM} interim (1xx) answers")


_MAX_INTERIM = 20
"""Most ``1xx`` answers skipped before one is a protocol error."""
_MAX_INTERIM_LINES = 100
_MAX_LINE = 65536


_TUNNEL_REFUSED = re.compile(r"Tunnel connection failed: (\d{3})\b")


def tunnel_refusal(exc: BaseException) -> int | None:
    """Return the status with which a proxy refused our CONNECT, if ``exc`` (or its cause) says so."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if type(current) is OSError:  # http.client's and urllib3's _tunnel raise a bare OSError
            match = _TUNNEL_REFUSED.match(str(current))
            if match:
                return int(match.group(1))
        inner = getattr(current, "original_error", None)
        current = inner if isinstance(inner, BaseException) else current.__cause__ or current.__context__
    return None


def _adopt(sock: socket.socket) -> socket.socket:
    """Return ``sock``'s connection as a :class:`DeadlineSocket` (same descriptor and options)."""
    if type(sock) is not socket.socket:
        return sock  # already ours, or a proxy library's own socket type
    timeout = sock.gettimeout()
    adopted = DeadlineSocket(sock.family, sock.type, sock.proto, fileno=sock.detach())
    adopted.settimeout(timeout)
    return adopted


class _OurConnection:
    """What our urllib3 connections add: deadline sockets, one write per request, no stray reader.

    Mixed into urllib3's connection class by :func:`with_deadline`.  Its sockets keep
    the attempt's deadline (:func:`_adopt`; TLS sockets through :func:`keep_deadline`).
    A request goes out in one write: http.client writes the headers, then urllib3 the
    body, which costs a second TCP segment and a second read on the server (about a
    tenth of a call on loopback); the headers are held and sent with the body.
    """

    _hold_next = False
    _held: bytes | None = None
    sock: socket.socket | None

    def __reduce__(self) -> tuple[type[str], tuple[str]]:
        # urllib3 2.0's NewConnectionError holds its connection; an error of ours pickled with
        # its cause (tblib, which Dask installs, does that) then pickles the connection, whose
        # class is made at run time: it goes as its description instead.
        return (str, (repr(self),))
    response_class = _InterimSkippingResponse

    def _new_conn(self) -> socket.socket:
        if getattr(super()._new_conn, "__func__", None) is not _URLLIB3_NEW_CONN:  # type: ignore[misc]
            return _adopt(super()._new_conn())  # type: ignore[misc]  # a SOCKS connection's own
        host: str = self.host  # type: ignore[attr-defined]
        try:
            sock = _connect(self._dns_host, self.port, self)  # type: ignore[attr-defined]
        except socket.gaierror as exc:
            raise NameResolutionError(host, self, exc) from exc  # type: ignore[arg-type]
        except TimeoutError as exc:
            msg = f"Connection to {host} timed out. (connect timeout={self.timeout})"  # type: ignore[attr-defined]
            raise ConnectTimeoutError(self, msg) from exc
        except OSError as exc:
            raise NewConnectionError(self, f"Failed to establish a new connection: {exc}") from exc  # type: ignore[arg-type]
        sys.audit("http.client.connect", self, host, self.port)  # type: ignore[attr-defined]
        return sock

    def endheaders(self, *args: Any, **kwargs: Any) -> None:  # noqa: ANN401 - http.client's own
        self._hold_next, self._held = True, None  # the write it makes now is the headers
        super().endheaders(*args, **kwargs)  # type: ignore[misc]

    def send(self, data: Any) -> None:  # noqa: ANN401 - http.client's own
        if self._hold_next and isinstance(data, bytes):
            self._hold_next, self._held = False, data
            return
        self._hold_next = False
        held, self._held = self._held, None
        if held is not None:
            if isinstance(data, bytes):
                data = held + data
            else:
                super().send(held)  # type: ignore[misc]
        super().send(data)  # type: ignore[misc]

    def getresponse(self) -> Any:  # noqa: ANN401 - urllib3's own
        held, self._hold_next, self._held = self._held, False, None
        if held is not None:  # a request without a body: its headers go now
            super().send(held)  # type: ignore[misc]
        sock = self.sock
        try:
            return super().getresponse()  # type: ignore[misc]
        except BaseException:
            # urllib3 can refuse an answer (a malformed header) after http.client read it.
            # When the answer ends its connection, http.client no longer holds it and
            # nobody would close its reader until GC: close it now.  (When it does hold
            # it, closing the connection closes the reader too.)
            if sock is not None and getattr(self, "_HTTPConnection__response", None) is None:
                _close_reader(sock)
            raise

    def close(self) -> None:
        self._hold_next, self._held = False, None
        super().close()  # type: ignore[misc]


@functools.cache
def with_deadline(base: type[HTTPConnection]) -> type[HTTPConnection]:
    """Return urllib3's connection class ``base`` with :class:`_OurConnection` mixed in."""
    return type(f"Deadline{base.__name__}", (_OurConnection, base), {})


def keep_deadline(context: ssl.SSLContext) -> None:
    """Make the TLS sockets of ``context`` keep the attempt's deadline."""
    context.sslsocket_class = DeadlineSSLSocket


def adopt_pool(pool: HTTPConnectionPool) -> None:
    """Make ``pool``'s new connections ours: deadline sockets, one write per request."""
    pool.ConnectionCls = with_deadline(pool.ConnectionCls)
