"""Every private name of http.client, urllib3 and ssl the transport relies on (``_transport/_httpclient.py``).

One test per trick: each first checks that the private it relies on is still there,
failing with a message that names it, then checks the trick's behaviour against a
real loopback server (tests/faults.py).  A urllib3 or CPython release that moves one
of them fails here by name, not somewhere deep in a delivery test.
"""

from __future__ import annotations

import http.client
import socket
import ssl
from typing import Any

import pytest
import urllib3
from faults import FaultServer, raw, respond
from urllib3.connection import HTTPConnection
from urllib3.connectionpool import HTTPConnectionPool
from urllib3.exceptions import ConnectTimeoutError, InvalidHeader
from urllib3.util import Retry

from simple_segment._transport._httpclient import (
    DeadlineSocket,
    DeadlineSSLSocket,
    adopt_pool,
    budget,
    keep_deadline,
    tunnel_refusal,
    with_deadline,
)
from simple_segment._transport.retry import Policy

BODY = b'{"batch":[]}'


class RecordingSocket:
    """Stands in front of a connection's socket and records each write (everything else passes through)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.writes: list[bytes] = []

    def sendall(self, data: bytes) -> None:
        self.writes.append(bytes(data))
        self.sock.sendall(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.sock, name)


def _connection(server: FaultServer, cls: type[HTTPConnection] | None = None) -> HTTPConnection:
    conn = (cls or with_deadline(HTTPConnection))("127.0.0.1", server.port, timeout=5)
    conn.connect()
    return conn


def _post(conn: HTTPConnection) -> None:
    conn.request("POST", "/v1/batch", body=BODY, headers={"Content-Type": "application/json"})


def test_new_conn_gives_the_socket_we_adopt() -> None:
    """urllib3's private ``HTTPConnection._new_conn`` returns the plain socket made a DeadlineSocket."""
    assert hasattr(HTTPConnection, "_new_conn"), (
        "urllib3.connection.HTTPConnection._new_conn is gone: _OurConnection._new_conn in "
        "simple_segment/_transport/_httpclient.py must adopt sockets some other way"
    )
    with FaultServer() as server:
        conn = _connection(server)
        try:
            assert isinstance(conn.sock, DeadlineSocket), type(conn.sock)
            budget.at = 0.0  # long past: the adopted socket refuses to send
            try:
                with pytest.raises(TimeoutError, match="total_timeout ran out"):
                    _post(conn)
            finally:
                budget.at = None
        finally:
            conn.close()
        plain = _connection(server, HTTPConnection)
        try:
            assert type(plain.sock) is socket.socket  # what urllib3 gives without us
        finally:
            plain.close()


def test_sslsocket_class_makes_tls_sockets_keep_the_deadline() -> None:
    """``SSLContext.sslsocket_class`` (per instance) makes every TLS socket of the context a DeadlineSSLSocket."""
    assert hasattr(ssl.SSLContext, "sslsocket_class"), (
        "ssl.SSLContext.sslsocket_class is gone: keep_deadline() in simple_segment/_transport/_httpclient.py "
        "cannot make TLS sockets keep the deadline"
    )
    context = ssl.create_default_context()
    keep_deadline(context)
    with socket.socket() as raw_sock:
        tls = context.wrap_socket(raw_sock, server_hostname="localhost", do_handshake_on_connect=False)
        try:
            assert isinstance(tls, DeadlineSSLSocket), type(tls)
            budget.at = 0.0
            try:
                with pytest.raises(TimeoutError, match="total_timeout ran out"):
                    tls.send(b"x")
            finally:
                budget.at = None
        finally:
            tls.close()
    other = ssl.create_default_context()
    with socket.socket() as raw_sock:
        plain = other.wrap_socket(raw_sock, server_hostname="localhost", do_handshake_on_connect=False)
        try:
            assert type(plain) is ssl.SSLSocket  # set per context, not for the process
        finally:
            plain.close()


def test_connection_cls_is_replaced_per_pool() -> None:
    """``HTTPConnectionPool.ConnectionCls`` set on one pool makes that pool's connections ours."""
    assert hasattr(HTTPConnectionPool, "ConnectionCls"), (
        "urllib3's HTTPConnectionPool.ConnectionCls is gone: adopt_pool() in "
        "simple_segment/_transport/_httpclient.py cannot give pools our connection class"
    )
    with FaultServer() as server:
        pool = HTTPConnectionPool("127.0.0.1", server.port)
        adopt_pool(pool)
        try:
            response = pool.urlopen("POST", "/v1/batch", body=BODY, preload_content=False, retries=False)
            assert response.status == 200
            assert type(response.connection) is with_deadline(HTTPConnection), type(response.connection)
            assert isinstance(response.connection.sock, DeadlineSocket)  # type: ignore[union-attr]
            response.read()
            response.release_conn()
        finally:
            pool.close()
        assert HTTPConnectionPool.ConnectionCls is HTTPConnection  # the class itself is left alone


def test_headers_and_body_go_in_one_write() -> None:
    """http.client's ``endheaders`` writes the headers with one ``send`` (``_send_output``): held, sent with the body."""
    assert hasattr(http.client.HTTPConnection, "_send_output"), (
        "http.client.HTTPConnection._send_output is gone: _OurConnection.endheaders/send in "
        "simple_segment/_transport/_httpclient.py assume endheaders writes the headers in one send()"
    )
    with FaultServer() as server:
        for cls, writes in ((with_deadline(HTTPConnection), 1), (HTTPConnection, 2)):
            conn = _connection(server, cls)
            recorder = RecordingSocket(conn.sock)  # type: ignore[arg-type]
            conn.sock = recorder  # type: ignore[assignment]
            try:
                _post(conn)
                response = conn.getresponse()
                assert response.status == 200
                response.read()
            finally:
                conn.close()
            assert len(recorder.writes) == writes, (cls, recorder.writes)
            assert recorder.writes[-1].endswith(BODY)
            assert recorder.writes[0].startswith(b"POST /v1/batch HTTP/1.1\r\n")
        assert [r.body for r in server.requests] == [BODY, BODY]


def test_response_slot_and_reader() -> None:
    """http.client keeps an unfinished answer in ``_HTTPConnection__response`` and reads through ``makefile``.

    A keep-alive answer is held there; an answer that ends its connection is not
    (``None``), which is when our getresponse closes a reader urllib3 dropped.
    """
    probe = http.client.HTTPConnection("127.0.0.1")
    assert hasattr(probe, "_HTTPConnection__response"), (
        "http.client.HTTPConnection's private __response slot (_HTTPConnection__response) is gone: "
        "_OurConnection.getresponse in simple_segment/_transport/_httpclient.py reads it"
    )
    ends = raw(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok", name="close")
    with FaultServer() as server:
        server.script(respond(200), ends)
        conn = _connection(server)
        try:
            _post(conn)
            response = conn.getresponse()
            assert conn._HTTPConnection__response is not None  # type: ignore[attr-defined]  # kept: keep-alive
            assert conn.sock is not None
            assert conn.sock._reader is not None  # type: ignore[attr-defined]  # made through our makefile
            response.read()
            _post(conn)
            response = conn.getresponse()
            assert conn._HTTPConnection__response is None  # type: ignore[attr-defined]  # the answer ends it
            response.read()
        finally:
            conn.close()


def test_a_refused_answer_leaves_no_reader_open() -> None:
    """urllib3 refuses an answer http.client has read (two Content-Lengths): its reader is closed at once."""
    conflicting = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 16\r\nConnection: close\r\n\r\n{}"
    with FaultServer() as server:
        server.script(raw(conflicting, name="conflicting"))
        conn = _connection(server)
        sock = conn.sock
        try:
            _post(conn)
            with pytest.raises((InvalidHeader, http.client.HTTPException, ValueError)):
                conn.getresponse()
            assert sock._reader is None  # type: ignore[union-attr]  # closed and forgotten, not left to GC
        finally:
            conn.close()


def test_retry_waits_nothing_before_the_second_attempt_and_policy_shifts_it() -> None:
    """urllib3's ``Retry.get_backoff_time`` is 0 after one error; :class:`Policy` waits ``backoff_factor`` already.

    Also: ``Retry.RETRY_AFTER_STATUS_CODES`` is a class attribute Policy narrows to 429 and 503.
    """
    assert "RETRY_AFTER_STATUS_CODES" in vars(Retry), "urllib3 Retry.RETRY_AFTER_STATUS_CODES moved: see Policy"
    plain = Retry(total=5, backoff_factor=1.0).increment("POST", "/", error=ConnectionError())
    assert plain.get_backoff_time() == 0  # what Policy corrects; if urllib3 changes it, Policy must change
    # policy_of makes Policy with half of backoff_factor (here 0.5): the waits are 0.5, then 1.0.
    ours = Policy(total=5, backoff_factor=0.25).increment("POST", "/", error=ConnectionError())
    assert ours.get_backoff_time() == 0.5
    assert ours.increment("POST", "/", error=ConnectionError()).get_backoff_time() == 1.0
    assert frozenset({429, 503}) == Policy.RETRY_AFTER_STATUS_CODES
    assert urllib3.__version__  # the version under test shows in a failure's locals


def test_new_conn_connects_each_address_within_the_budget() -> None:
    """Our ``_new_conn`` replaces urllib3's ``create_connection``: it reads the connection's private
    ``_dns_host`` and its ``socket_options``, ``source_address`` and ``timeout``, and each address
    gets what is left of the attempt (a connect with the budget spent is a ``ConnectTimeoutError``)."""
    probe = HTTPConnection("127.0.0.1", 80)
    for name in ("_dns_host", "socket_options", "source_address", "timeout"):
        assert hasattr(probe, name), (
            f"urllib3's HTTPConnection.{name} is gone: _OurConnection._new_conn / _connect in "
            "simple_segment/_transport/_httpclient.py connect with it"
        )
    with FaultServer() as server:
        conn = with_deadline(HTTPConnection)("127.0.0.1", server.port, timeout=5)
        budget.at = 0.0  # long past: no address is tried
        try:
            with pytest.raises(ConnectTimeoutError):
                conn.connect()
        finally:
            budget.at = None
            conn.close()
        conn = _connection(server)
        try:
            assert isinstance(conn.sock, DeadlineSocket), type(conn.sock)
            assert conn.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)  # urllib3's socket_options applied
        finally:
            conn.close()


def test_the_tls_handshake_keeps_the_deadline() -> None:
    """``SSLContext.wrap_socket`` calls the socket class's ``do_handshake``: ours starts with what is left."""
    assert "do_handshake" in vars(ssl.SSLSocket), (
        "ssl.SSLSocket.do_handshake moved: DeadlineSSLSocket.do_handshake in "
        "simple_segment/_transport/_httpclient.py no longer bounds the handshake"
    )
    context = ssl.create_default_context()
    keep_deadline(context)
    with FaultServer() as server, socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw_sock:
        budget.at = 0.0
        try:
            with pytest.raises(TimeoutError, match="total_timeout ran out"):
                context.wrap_socket(raw_sock, server_hostname="localhost")
        finally:
            budget.at = None


def test_read_status_skips_interim_answers() -> None:
    """http.client's private ``HTTPResponse._read_status`` reads one status line; ours (the connection's
    ``response_class``) skips ``1xx`` answers, which http.client would take for the answer (all but 100)."""
    assert hasattr(http.client.HTTPResponse, "_read_status"), (
        "http.client.HTTPResponse._read_status is gone: _InterimSkippingResponse in "
        "simple_segment/_transport/_httpclient.py skips 1xx answers through it"
    )
    hints = b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"
    final = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    with FaultServer() as server:
        server.script(raw(hints + final, name="103+200"), raw(hints + final, name="103+200"))
        for cls, status in ((with_deadline(HTTPConnection), 200), (HTTPConnection, 103)):
            conn = _connection(server, cls)
            try:
                _post(conn)
                response = conn.getresponse()
                assert response.status == status, cls
            finally:
                conn.close()


def test_a_refused_tunnel_names_its_status() -> None:
    """http.client's (and urllib3's own copy of) ``_tunnel`` raises ``OSError('Tunnel connection failed: 407 ...')``:
    :func:`tunnel_refusal` reads the status from that text."""
    from proxy import connect_proxy

    with connect_proxy(refuse=407) as proxy:
        conn = with_deadline(HTTPConnection)("127.0.0.1", proxy.port, timeout=5)
        conn.set_tunnel("127.0.0.1", 9)
        try:
            with pytest.raises(OSError, match="Tunnel connection failed: 407") as info:
                conn.connect()
        finally:
            conn.close()
    assert tunnel_refusal(info.value) == 407, (
        "http.client's _tunnel no longer says 'Tunnel connection failed: <status>': tunnel_refusal in "
        "simple_segment/_transport/_httpclient.py cannot tell a 407 from a network failure"
    )
    assert tunnel_refusal(OSError("Connection refused")) is None


def test_a_connection_pickles_as_its_description() -> None:
    """An error's cause may hold its connection (urllib3 2.0's NewConnectionError): pickling it must not fail."""
    import pickle

    from urllib3.connection import HTTPConnection

    from simple_segment._transport._httpclient import with_deadline

    connection = with_deadline(HTTPConnection)("127.0.0.1", 9)
    restored = pickle.loads(pickle.dumps(connection))
    assert isinstance(restored, str)
    assert "DeadlineHTTPConnection" in restored
