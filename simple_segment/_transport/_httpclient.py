"""Every use of http.client's and urllib3's internals, in one place: the deadline sockets and one-write requests.

A urllib3 minor release or a CPython change to http.client can break what is here,
so it is kept small and each trick has a test naming the private it relies on
(``tests/test_http_internals.py``):

- urllib3's ``HTTPConnection._new_conn`` returns the plain socket we adopt as a
  :class:`DeadlineSocket` (``socket.detach`` and ``fileno=``);
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
import socket
import ssl
import threading
import time
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from urllib3.connection import HTTPConnection
    from urllib3.connectionpool import HTTPConnectionPool

S = TypeVar("S", bound=socket.socket)


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


def _close_reader(sock: socket.socket) -> None:
    """Close the reader http.client made on ``sock`` (urllib3 may drop that one unclosed)."""
    reader = getattr(sock, "_reader", None)
    if reader is not None:
        sock._reader = None  # type: ignore[attr-defined]  # noqa: SLF001 - our socket class's own slot
        reader.close()


DeadlineSocket = _deadline_class(socket.socket, "A TCP socket that keeps the attempt's deadline.")
DeadlineSSLSocket = _deadline_class(
    ssl.SSLSocket, "A TLS socket that keeps the attempt's deadline (``SSLContext.sslsocket_class``)."
)


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

    def _new_conn(self) -> socket.socket:
        return _adopt(super()._new_conn())  # type: ignore[misc]

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
