"""A CONNECT proxy on 127.0.0.1 for the proxy tests: it records each tunnel and pipes bytes both ways."""

from __future__ import annotations

import contextlib
import select
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field


@dataclass
class ConnectProxy:
    """Records the head of every CONNECT it tunnels (request line and headers)."""

    port: int = 0
    heads: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def _pipe(client: socket.socket, upstream: socket.socket, stop: threading.Event) -> None:
    sockets = [client, upstream]
    while not stop.is_set():
        readable, _, _ = select.select(sockets, [], [], 0.05)
        for sock in readable:
            data = sock.recv(65536)
            if not data:
                return
            (upstream if sock is client else client).sendall(data)


@contextlib.contextmanager
def connect_proxy() -> Iterator[ConnectProxy]:
    """Run a CONNECT proxy until the block ends (every socket closed, every thread joined)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(0.05)
    proxy = ConnectProxy(listener.getsockname()[1])
    stop = threading.Event()
    threads: list[threading.Thread] = []
    opened: list[socket.socket] = []

    def handle(client: socket.socket) -> None:
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
