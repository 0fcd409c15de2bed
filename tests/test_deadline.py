"""Deadlines: timeout (one number or a (connect, read) pair) per attempt, total_timeout over the whole call.

Whatever a server does (drips bytes, accepts and never answers, asks to retry forever),
a call ends within its budget and leaves no helper thread running.  Timing assertions
are upper bounds with generous slack; nothing here asserts that something took *at
least* some time.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import WRITE_KEY, QuickClient
from faults import Behaviour, FaultServer, drip, respond, retry_after, silent
from outcomes import describe, outcome, send_one

from simple_segment import BatchDeliveryError, Client, DeliveryError, NetworkError, RetryableError, TransportError
from simple_segment.testing import FakeClock, FakeSegment, MockRequest, MockTransport

BUDGET = 1.0
"""total_timeout of the time-budget tests."""
SLACK = 2.0
"""Generous allowance over the budget (scheduling on a shared 2-core machine)."""


# -- timeout: per attempt, one number or a (connect, read) pair ----------------------------


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A port that accepts connections and never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        sock.settimeout(0.05)
        while not stop.is_set():
            with contextlib.suppress(OSError):
                accepted.append(sock.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield sock.getsockname()[1]
    finally:
        stop.set()
        thread.join(5)
        for conn in accepted:
            conn.close()
        sock.close()


def test_read_half_of_a_timeout_pair_is_applied(
    fake_segment: FakeSegment, silent_server: int, quick_client: QuickClient
) -> None:
    """timeout may be a (connect, read) pair: a server that never answers fails after the read half,
    not the connect half."""
    fake_segment.respond_with(delay=2, times=5)
    with quick_client(fake_segment, timeout=(1, 0.2), total_timeout=1, max_retries=0) as client:
        with pytest.raises(TransportError):
            client.track("u", "E")
    started = time.monotonic()
    with Client(WRITE_KEY, host=f"http://127.0.0.1:{silent_server}", timeout=(20, 0.3), max_retries=0) as client:
        with pytest.raises(NetworkError) as info:
            client.track("u", "E")
    assert time.monotonic() - started < 5
    assert info.value.retryable
    assert "timed out" in str(info.value).lower()


def test_silent_server_ends_within_budget(fake_segment: FakeSegment, quick_client: QuickClient) -> None:
    """A server that never answers yields a TransportError within the total time budget."""
    fake_segment.respond_with(delay=30, times=20)
    started = time.monotonic()
    with quick_client(fake_segment, timeout=0.3, total_timeout=1.5) as client, pytest.raises(TransportError) as info:
        client.track("u", "E")
    elapsed = time.monotonic() - started
    assert elapsed < 4
    assert info.value.attempts >= 2
    assert info.value.__cause__ is not None
    assert info.value.messages[0]["event"] == "E"


# -- total_timeout bounds the whole call ---------------------------------------------------


ENDLESS = BUDGET + SLACK + 1.0
"""Endless behaviours give up after this, so a client that waits them out fails fast."""


BUDGET_CASES: dict[str, tuple[list[Behaviour], dict[str, Any]]] = {
    "drip-status-line": ([drip("status", 0.2)], {}),
    "drip-headers": ([drip("headers", 0.2)], {}),
    "drip-error-body": ([drip("body", 0.2, status=503)], {}),
    "drip-status-line-endless": ([drip("status", 0.2, endless=True, limit=ENDLESS)], {}),
    "drip-headers-endless": ([drip("headers", 0.2, endless=True, limit=ENDLESS)], {}),
    "drip-error-body-endless": ([drip("body", 0.2, status=503, endless=True, limit=ENDLESS)], {}),
    "accepts-never-answers": ([silent(limit=10)], {}),
    "503-then-drip-headers": ([respond(503), drip("headers", 0.2)], {}),
    "503-forever-large-backoff": ([respond(503)] * 20, {"backoff_factor": 5.0, "max_retries": 10}),
    "429-retry-after-1-forever": ([retry_after(429, "1")] * 20, {"max_retries": 10}),
    "drip-error-body-with-retries": ([drip("body", 0.2, status=500)] * 5, {"max_retries": 4}),
}
"""Servers that would keep a call longer than its budget: (script, client options)."""


SUCCESS_BODY_CASES: dict[str, Behaviour] = {
    "drip-success-body": drip("body", 0.2),
    "drip-success-body-endless": drip("body", 0.2, endless=True, limit=ENDLESS),
}
"""A 200 whose body drips: the status says delivered, so returning (True, msg) at once is
as right as giving up with a retryable error; only waiting past the budget is wrong."""


def new_threads(before: set[threading.Thread], server: FaultServer) -> list[threading.Thread]:
    """Threads alive now that were not before and are not the server's own (after a short grace)."""
    end = time.monotonic() + 0.5
    while True:
        extra = [t for t in threading.enumerate() if t not in before and not server.owns(t) and t.is_alive()]
        if not extra or time.monotonic() > end:
            return extra
        time.sleep(0.05)


def call_within_budget(
    quick_client: QuickClient, script: list[Behaviour], **options: Any
) -> tuple[Any, Exception | None, float]:
    """Run one call against ``script``; check no helper thread outlives it; return
    (result, error, seconds)."""
    before = set(threading.enumerate())
    with FaultServer(default=script[-1]) as server:
        server.script(*script)
        client = quick_client(server.url, **{"timeout": 5, "total_timeout": BUDGET, "max_retries": 3, **options})
        started = time.monotonic()
        result, error = outcome(lambda: send_one(client))
        elapsed = time.monotonic() - started
        leftover = new_threads(before, server)
        client.close()
    assert leftover == [], f"helper threads left running: {leftover}"
    assert set(threading.enumerate()) <= before, "threads still running after the server stopped"
    return result, error, elapsed


@pytest.mark.parametrize("case", list(BUDGET_CASES))
def test_total_timeout_bounds_the_call(case: str, quick_client: QuickClient) -> None:
    """Whatever the server does, a call with total_timeout=1 (timeout=5) ends with a
    retryable DeliveryError within the budget + 2 s slack, and leaves no helper thread running."""
    script, options = BUDGET_CASES[case]
    result, error, elapsed = call_within_budget(quick_client, script, **options)
    assert elapsed < BUDGET + SLACK, f"{case}: the call took {elapsed:.2f}s with total_timeout={BUDGET}"
    assert error is not None, f"{case}: returned {result!r} instead of raising"
    assert isinstance(error, DeliveryError), describe(error)
    assert isinstance(error, RetryableError), describe(error)
    assert [m["messageId"] for m in error.messages] == ["mid-1"]


@pytest.mark.parametrize("case", list(SUCCESS_BODY_CASES))
def test_total_timeout_bounds_a_slow_success_body(case: str, quick_client: QuickClient) -> None:
    """A 200 whose body drips (finitely or endlessly): the call ends within budget + slack,
    with (True, msg) or a retryable DeliveryError, and leaves no helper thread running."""
    result, error, elapsed = call_within_budget(quick_client, [SUCCESS_BODY_CASES[case]])
    assert elapsed < BUDGET + SLACK, f"{case}: the call took {elapsed:.2f}s with total_timeout={BUDGET}"
    if error is None:
        assert result[0] is True
    else:
        assert isinstance(error, RetryableError), describe(error)


def test_total_timeout_bounds_a_batch_request(quick_client: QuickClient) -> None:
    """A batch whose request meets an endless drip ends within budget + slack with a
    BatchDeliveryError that is retryable, holding every message of the block."""

    def block(client: Client) -> None:
        with client.batch() as batch:
            for index in range(3):
                batch.track("u", "E", message_id=f"mid-{index}")

    before = set(threading.enumerate())
    with FaultServer(default=drip("headers", 0.2, endless=True, limit=ENDLESS)) as server:
        client = quick_client(server.url, timeout=5, total_timeout=BUDGET, max_retries=3)
        started = time.monotonic()
        _, error = outcome(lambda: block(client))
        elapsed = time.monotonic() - started
        leftover = new_threads(before, server)
        client.close()
    assert elapsed < BUDGET + SLACK, f"the batch took {elapsed:.2f}s with total_timeout={BUDGET}"
    assert isinstance(error, BatchDeliveryError), (
        "the block ended without an error" if error is None else describe(error)
    )
    assert isinstance(error, RetryableError), describe(error)
    assert [m["messageId"] for m in error.unsent] == ["mid-0", "mid-1", "mid-2"]
    assert leftover == [], f"helper threads left running: {leftover}"
    assert set(threading.enumerate()) <= before, "threads still running after the server stopped"


def test_total_timeout_ran_out_is_a_retryable_network_error_naming_it() -> None:
    """An answer that comes after total_timeout: NetworkError (retryable) saying so, with the attempts made."""
    clock = FakeClock()

    def late(_request: MockRequest) -> int:
        clock.advance(7)  # 7 s of fake time per answer; the budget is 10
        return 503

    transport = MockTransport(late, clock=clock)
    client = Client(WRITE_KEY, host="https://api.example.test", transport=transport, total_timeout=10,
                    backoff_factor=0.1, max_retries=5)
    with pytest.raises(NetworkError) as info:
        client.track("u", "E")
    error = info.value
    assert type(error) is NetworkError
    assert error.retryable
    assert error.attempts == 2
    assert len(transport.requests) == 2
    assert str(error) == (
        "POST https://api.example.test/v1/batch failed: "
        "TimeoutError: total_timeout ran out before the answer was complete"
    )
    assert len(error.messages) == 1


def test_total_timeout_spent_by_the_token_request_is_named(private_key_pem: str) -> None:
    """A token request that takes the whole budget: the batch is not posted; NetworkError 'ran out before attempt 1'."""
    clock = FakeClock()

    def handler(request: MockRequest) -> Any:
        if request.url.endswith("/token"):
            clock.advance(10)  # exactly the budget: the token arrives, nothing is left for the batch
            return 200, {"Content-Type": "application/json"}, b'{"access_token":"t","expires_in":3600}'
        return 200

    transport = MockTransport(handler, clock=clock)
    client = Client(WRITE_KEY, host="https://api.example.test", transport=transport, total_timeout=10,
                    oauth_client_id="c", oauth_client_key=private_key_pem, oauth_key_id="k",
                    oauth_auth_server="https://oauth.example.test")
    with pytest.raises(NetworkError) as info:
        client.track("u", "E")
    assert info.value.retryable
    assert info.value.attempts == 1
    assert str(info.value) == "POST https://api.example.test/v1/batch: total_timeout ran out before attempt 1"
    assert [r.url for r in transport.requests] == ["https://oauth.example.test/token"]
    assert clock.waits == []


@pytest.fixture(scope="module")
def private_key_pem() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
# -- the deadline in every phase: several addresses, the TLS handshake, the sockets themselves ----


@contextlib.contextmanager
def black_holes(count: int, *, accept_after: float | None = None) -> Iterator[list[int]]:
    """``count`` loopback ports whose connects hang: each listens with a full backlog and never accepts.

    With ``accept_after``, each starts accepting (and then stays silent) after that many
    seconds, so a connect made meanwhile succeeds on the client's SYN retry (about 1 s):
    a slow TCP connect without leaving loopback.
    """
    listeners: list[socket.socket] = []
    fillers: list[socket.socket] = []
    accepted: list[socket.socket] = []
    stop = threading.Event()
    for _ in range(count):
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        listeners.append(listener)
        for _ in range(3):  # fill the accept queue: further SYNs are dropped, connects hang
            filler = socket.socket()
            filler.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                filler.connect(listener.getsockname())
            fillers.append(filler)

    def accept(listener: socket.socket) -> None:
        stop.wait(accept_after)
        listener.settimeout(0.05)
        while not stop.is_set():
            with contextlib.suppress(OSError):
                accepted.append(listener.accept()[0])

    threads = [threading.Thread(target=accept, args=(listener,), daemon=True) for listener in listeners]
    if accept_after is not None:
        for thread in threads:
            thread.start()
    try:
        time.sleep(0.05)  # the fillers' handshakes complete
        yield [listener.getsockname()[1] for listener in listeners]
    finally:
        stop.set()
        for thread in threads:
            if thread.is_alive():
                thread.join(5)
        for sock in fillers + accepted + listeners:
            sock.close()


def resolving_to(monkeypatch: pytest.MonkeyPatch, name: str, ports: list[int]) -> None:
    """Make the OS resolver (``socket.getaddrinfo``) give ``name`` one loopback address per port, in order."""
    real = socket.getaddrinfo

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host != name:
            return real(host, port, *args, **kwargs)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", p)) for p in ports]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


def test_several_addresses_share_one_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    """A name resolving to 3 black-holed addresses: a 2 s call (timeout=5) ends within 2.5 s, not 3 x 2 s."""
    with black_holes(3) as ports:
        resolving_to(monkeypatch, "segment.test", ports)
        with Client(WRITE_KEY, host="http://segment.test", timeout=5, total_timeout=2, max_retries=0) as client:
            started = time.monotonic()
            with pytest.raises(NetworkError) as info:
                client.track("u", "E")
            elapsed = time.monotonic() - started
    assert elapsed < 2.5, f"the call took {elapsed:.2f}s with total_timeout=2"
    assert info.value.retryable


def test_a_later_address_is_tried_within_the_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    """A black-holed first address uses its connect timeout, then the next address delivers in what is left."""
    with black_holes(1) as ports, FaultServer() as server:
        resolving_to(monkeypatch, "segment.test", [*ports, server.port])
        options: dict[str, Any] = {"timeout": (0.5, 5), "total_timeout": 3, "max_retries": 0}
        with Client(WRITE_KEY, host="http://segment.test", **options) as client:
            assert client.track("u", "E")[0] is True
    assert len(server.requests) == 1


def test_the_tls_handshake_gets_what_the_connect_left() -> None:
    """A TCP connect that takes about 1 s, then a server that never answers the TLS handshake:
    a 2 s call (connect timeout 1.9) ends within 2.5 s: the handshake gets what is left, not 1.9 s more."""
    with black_holes(1, accept_after=0.3) as (port,):
        options: dict[str, Any] = {"timeout": (1.9, 5), "total_timeout": 2, "max_retries": 0}
        with Client(WRITE_KEY, host=f"https://127.0.0.1:{port}", **options) as client:
            started = time.monotonic()
            with pytest.raises(NetworkError):
                client.track("u", "E")
            elapsed = time.monotonic() - started
    assert elapsed < 2.5, f"the call took {elapsed:.2f}s with total_timeout=2"


@pytest.mark.parametrize("part", ["status", "headers", "body"])
def test_sockets_keep_the_deadline_not_their_own_timeout(part: str, quick_client: QuickClient) -> None:
    """timeout=5, total_timeout=1 against an endless drip: the call ends within 1.5 s.

    Every receive gets what is left of the call, not the socket's own (read) timeout:
    with timeout=5 a drip of a byte every 0.1 s never trips a per-receive timeout.
    """
    status = 500 if part == "body" else 200
    behaviour = drip(part, 0.1, status=status, endless=True, limit=ENDLESS)
    result, error, elapsed = call_within_budget(quick_client, [behaviour], total_timeout=1, max_retries=0)
    assert elapsed < 1.5, f"the call took {elapsed:.2f}s with total_timeout=1"
    assert isinstance(error, RetryableError), describe(error) if error else result
