"""A CONNECT proxy on 127.0.0.1 for the proxy tests: it records each tunnel and pipes bytes both ways.

It speaks plain HTTP or, given a server-side ``ssl.SSLContext``, TLS (an ``https://``
proxy, TLS-in-TLS for an HTTPS target).  It can refuse every CONNECT with a status or
drip its ``200`` answer's headers forever.
"""

from __future__ import annotations

import contextlib
import select
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field


@dataclass
class ConnectProxy:
    """Records the head of every CONNECT it tunnels (request line and headers)."""

    port: int = 0
    heads: list[str] = field(default_factory=list)
    scheme: str = "http"

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"


def _pipe(client: socket.socket, upstream: socket.socket, stop: threading.Event) -> None:
    sockets = [client, upstream]
    while not stop.is_set():
        readable, _, _ = select.select(sockets, [], [], 0.05)
        for sock in readable:
            data = sock.recv(65536)
            if not data:
                return
            while isinstance(sock, ssl.SSLSocket) and sock.pending():  # TLS records select() cannot see
                data += sock.recv(65536)
            (upstream if sock is client else client).sendall(data)


DRIP_LIMIT = 6.0
"""Seconds a dripped CONNECT answer goes on before the proxy gives up and closes."""


def _drip_answer(client: socket.socket, interval: float, stop: threading.Event) -> None:
    client.sendall(b"HTTP/1.1 200 Connection established\r\n")
    end = time.monotonic() + DRIP_LIMIT
    while not stop.is_set() and time.monotonic() < end:
        for byte in b"X-Slow: yes\r\n":
            client.sendall(bytes([byte]))
            stop.wait(interval)


@contextlib.contextmanager
def connect_proxy(  # noqa: C901, PLR0915 - one server, its handlers closures over its state

    *, tls: ssl.SSLContext | None = None, refuse: int | None = None, drip: float | None = None
) -> Iterator[ConnectProxy]:
    """Run a CONNECT proxy until the block ends (every socket closed, every thread joined).

    ``tls``: speak TLS with this server-side context.  ``refuse``: answer every CONNECT
    with this status.  ``drip``: answer every CONNECT with a ``200`` whose headers never
    end, one byte every ``drip`` seconds (for :data:`DRIP_LIMIT` seconds).
    """
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(0.05)
    proxy = ConnectProxy(listener.getsockname()[1], scheme="https" if tls else "http")
    stop = threading.Event()
    threads: list[threading.Thread] = []
    opened: list[socket.socket] = []

    def handle(client: socket.socket) -> None:
        client.settimeout(5)
        if tls is not None:
            try:
                client = tls.wrap_socket(client, server_side=True)
            except (OSError, ssl.SSLError):
                return  # the client gave up on the handshake (or refused our certificate)
            opened.append(client)
        with contextlib.suppress(OSError):  # the client left
            tunnel(client)

    def tunnel(client: socket.socket) -> None:
        head = b""
        while b"\r\n\r\n" not in head and len(head) < 65536:
            chunk = client.recv(4096)
            if not chunk:
                return
            head += chunk
        text = head.split(b"\r\n\r\n", 1)[0].decode("latin-1")
        proxy.heads.append(text)
        method, target, _ = text.split("\r\n", 1)[0].split(" ", 2)
        if method != "CONNECT":
            client.sendall(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
            return
        if refuse is not None:
            client.sendall(f"HTTP/1.1 {refuse} Refused\r\nContent-Length: 0\r\n\r\n".encode())
            return
        if drip is not None:
            _drip_answer(client, drip, stop)
            return
        host, _, port = target.rpartition(":")
        upstream = socket.create_connection((host, int(port)), timeout=5)
        opened.append(upstream)
        client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        _pipe(client, upstream, stop)

    def serve() -> None:
        while not stop.is_set():
            try:
                client, _ = listener.accept()
            except OSError:
                continue
            opened.append(client)
            thread = threading.Thread(target=handle, args=(client,), daemon=True)
            threads.append(thread)
            thread.start()

    acceptor = threading.Thread(target=serve, daemon=True)
    acceptor.start()
    try:
        yield proxy
    finally:
        stop.set()
        acceptor.join(5)
        for thread in threads:
            thread.join(5)
        for sock in opened:
            sock.close()
        listener.close()
