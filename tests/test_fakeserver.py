"""FakeSegment, the loopback Segment server, driven by plain HTTP clients.

These tests use requests and http.client only, never simple_segment's own client,
so they check the server against the wire protocol rather than against our client.
"""

from __future__ import annotations

import base64
import gzip
import http.client
import json
import socket
import threading
import time
import tracemalloc
from typing import Any

import pytest
import requests
from conftest import track

from simple_segment.testing import FakeSegment, FakeSegmentTimeoutError, RecordedRequest
from simple_segment.testing._rules import MAX_MESSAGE_BYTES

KEY = "fake-key"
AUTH = (KEY, "")
JOIN = 10.0  # generous bound on every thread join: a hang fails instead of blocking the run


def post(
    server: FakeSegment,
    body: Any = None,
    *,
    path: str = "/v1/batch",
    auth: tuple[str, str] | None = AUTH,
    data: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 5.0,
) -> requests.Response:
    if data is None:
        data = json.dumps(body).encode()
    all_headers = {"Content-Type": "application/json", **(headers or {})}
    return requests.post(server.url + path, data=data, auth=auth, headers=all_headers, timeout=timeout)


def batch(*messages: dict[str, Any]) -> dict[str, Any]:
    return {"batch": list(messages), "sentAt": "2024-01-01T00:00:00.000Z"}


def assert_error(response: requests.Response, status: int, code: str, *words: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"] == "application/json"
    body: dict[str, Any] = response.json()
    assert body["success"] is False
    assert body["code"] == code
    for word in words:
        assert word in body["message"]
    return body


def padded(size: int) -> dict[str, Any]:
    """A valid track message whose compact JSON is exactly ``size`` bytes."""
    msg = track(properties={"pad": ""})
    base = len(json.dumps(msg, separators=(",", ":")).encode())
    msg["properties"]["pad"] = "x" * (size - base)
    assert len(json.dumps(msg, separators=(",", ":")).encode()) == size
    return msg


# -- accepting and recording ---------------------------------------------------


def test_accepted_batch_is_recorded_with_helpers(fake: FakeSegment) -> None:
    """A valid batch answers 200 {"success": true} and every lookup helper finds its messages."""
    identify = {"type": "identify", "anonymousId": "a1", "traits": {"x": 1}, "messageId": "id-1"}
    response = post(fake, batch(track(1), identify, track(2, event="Bought")))

    assert response.status_code == 200
    assert response.json() == {"success": True}
    assert response.headers["Content-Type"] == "application/json"
    assert [m["messageId"] for m in fake.messages] == ["m1", "id-1", "m2"]
    assert fake.by_type("identify") == [identify]
    assert [m["messageId"] for m in fake.by_type("track")] == ["m1", "m2"]
    assert fake.by_event("Bought") == [track(2, event="Bought")]
    assert fake.by_message_id("id-1") == identify
    assert fake.by_message_id("missing") is None

    (request,) = fake.requests
    assert isinstance(request, RecordedRequest)
    assert (request.method, request.path, request.status) == ("POST", "/v1/batch", 200)
    assert request.headers["content-type"] == "application/json"
    assert request.json == json.loads(request.body)
    assert request.batch == fake.messages
    assert request.write_key == KEY
    assert abs(request.received_at - time.time()) < 60


def test_basic_auth_user_is_the_write_key(fake: FakeSegment) -> None:
    """HTTP Basic with the key as user name and an empty password authenticates."""
    response = post(fake, batch(track()), auth=("basic-key", ""))
    assert response.status_code == 200
    assert fake.requests[0].write_key == "basic-key"
    assert fake.requests[0].headers["authorization"] == "Basic " + base64.b64encode(b"basic-key:").decode()


def test_body_write_key_authenticates(fake: FakeSegment) -> None:
    """Without Basic auth, a "writeKey" in the body is accepted as the key."""
    response = post(fake, {**batch(track()), "writeKey": "body-key"}, auth=None)
    assert response.status_code == 200
    assert fake.requests[0].write_key == "body-key"
    assert len(fake.messages) == 1


def test_missing_write_key_is_401(fake: FakeSegment) -> None:
    """With neither Basic auth nor a body writeKey the answer is 401 and nothing is accepted."""
    response = post(fake, batch(track()), auth=None)
    assert_error(response, 401, "missing_write_key", "missing write key")
    assert fake.messages == []
    assert fake.requests[0].status == 401
    assert fake.requests[0].write_key is None


def test_gzip_body_is_decompressed(fake: FakeSegment) -> None:
    """A Content-Encoding: gzip body is gunzipped; the raw gzip bytes are kept as received."""
    raw = gzip.compress(json.dumps(batch(track())).encode())
    response = post(fake, data=raw, headers={"Content-Encoding": "gzip"})
    assert response.status_code == 200
    (request,) = fake.requests
    assert request.body == raw
    assert request.json == batch(track())
    assert fake.messages == [track()]


def test_broken_gzip_is_400(fake: FakeSegment) -> None:
    """A body that claims gzip but is not is rejected as an invalid request."""
    response = post(fake, data=b"not gzip", headers={"Content-Encoding": "gzip"})
    assert_error(response, 400, "invalid_request", "gzip")
    assert fake.requests[0].json is None


def test_invalid_json_is_400(fake: FakeSegment) -> None:
    """Unparseable JSON answers 400 "Invalid JSON" with code invalid_request; json is None."""
    response = post(fake, data=b'{"batch": [')
    body = assert_error(response, 400, "invalid_request")
    assert body["message"] == "Invalid JSON"
    assert fake.requests[0].json is None
    assert fake.messages == []


@pytest.mark.parametrize("data", [b'{"batch": [], "x": NaN}', b'{"batch": [], "x": 1e999}'])
def test_non_finite_numbers_are_invalid_json(fake: FakeSegment, data: bytes) -> None:
    """NaN and overflowing numbers are not JSON, so they are rejected like any invalid body."""
    assert_error(post(fake, data=data), 400, "invalid_request", "Invalid JSON")


@pytest.mark.parametrize("body", [[1, 2], {"messages": []}, {"batch": {}}])
def test_body_must_be_an_object_with_a_batch_list(fake: FakeSegment, body: Any) -> None:
    """A JSON body that is not {"batch": [...]} is rejected."""
    assert_error(post(fake, body), 400, "invalid_request")


def test_message_size_limit_is_exact(fake: FakeSegment) -> None:
    """A message of exactly 32,768 compact-JSON bytes is accepted; one byte more answers 400."""
    assert post(fake, batch(padded(MAX_MESSAGE_BYTES))).status_code == 200
    response = post(fake, batch(track(), padded(MAX_MESSAGE_BYTES + 1)))
    assert_error(response, 400, "message_too_large", "message 1", "32768")
    assert len(fake.messages) == 1


def test_oversize_request_is_400(fake: FakeSegment) -> None:
    """A body over 500,000 bytes answers 400 naming the limit, even if every message is small enough."""
    messages = [padded(30_000) for _ in range(17)]
    response = post(fake, batch(*messages))
    assert_error(response, 400, "request_too_large", "500000")
    assert fake.messages == []


def test_oversize_request_is_measured_after_gunzip(fake: FakeSegment) -> None:
    """The 500,000-byte limit applies to the decompressed body, not the compressed one."""
    raw = gzip.compress(json.dumps(batch(*[padded(30_000) for _ in range(17)])).encode())
    assert len(raw) < 500_000
    response = post(fake, data=raw, headers={"Content-Encoding": "gzip"})
    assert_error(response, 400, "request_too_large")


def test_more_than_2500_messages_is_400(fake: FakeSegment) -> None:
    """2,500 messages are accepted; 2,501 answer 400 (where Segment would silently drop them)."""
    small = {"type": "track", "userId": "u", "event": "e"}
    assert post(fake, batch(*[small] * 2500)).status_code == 200
    response = post(fake, batch(*[small] * 2501))
    assert_error(response, 400, "too_many_messages", "2501", "2500")
    assert len(fake.messages) == 2500


@pytest.mark.parametrize(
    ("message", "words"),
    [
        ({"type": "track", "event": "e"}, ['"userId" or "anonymousId"']),
        ({"type": "identify", "userId": "", "anonymousId": None}, ['"userId" or "anonymousId"']),
        ({"type": "track", "userId": "u"}, ['"event"']),
        ({"type": "track", "userId": "u", "event": 5}, ['"event"']),
        ({"type": "alias", "userId": "u"}, ['"previousId"']),
        ({"type": "alias", "previousId": "p"}, ['"userId"']),
        ({"type": "group", "userId": "u"}, ['"groupId"']),
        ({"type": "purchase", "userId": "u"}, ['"type"']),
        ({"userId": "u"}, ['"type"']),
        ({"type": "page", "userId": {"id": 1}}, ['"userId" must be a string']),
        ({"type": "page", "userId": "u", "messageId": "x" * 101}, ['"messageId"']),
        ("not an object", ["JSON object"]),
    ],
)
def test_invalid_message_is_400_naming_problem_and_index(fake: FakeSegment, message: Any, words: list[str]) -> None:
    """A message missing what its type needs answers 400 naming the field and the message's index."""
    response = post(fake, batch(track(), message))
    assert_error(response, 400, "invalid_message", "message 1", *words)
    assert fake.messages == []


def test_message_id_must_be_shorter_than_100_characters(fake: FakeSegment) -> None:
    """A messageId of 99 characters is accepted and one of 100 answers 400, the limit the client enforces."""
    assert post(fake, batch(track(messageId="x" * 99))).status_code == 200
    response = post(fake, batch(track(messageId="x" * 100)))
    assert_error(response, 400, "invalid_message", "message 0", '"messageId"', "shorter than 100")
    assert [len(m["messageId"]) for m in fake.messages] == [99]


@pytest.mark.parametrize(
    "message",
    [
        {"type": "identify", "userId": 0},
        {"type": "page", "anonymousId": "a"},
        {"type": "screen", "userId": "u", "name": "Home"},
        {"type": "group", "userId": "u", "groupId": "g"},
        {"type": "alias", "previousId": "p", "userId": "u"},
    ],
)
def test_every_type_with_its_fields_is_accepted(fake: FakeSegment, message: dict[str, Any]) -> None:
    """Each message type with its required fields is accepted (a numeric id of 0 counts as given)."""
    assert post(fake, batch(message)).status_code == 200
    assert fake.messages == [message]


def test_single_message_endpoint(fake: FakeSegment) -> None:
    """POST /v1/track takes one message; its type comes from the path and writeKey is not kept."""
    response = post(fake, {"userId": "u", "event": "Solo", "writeKey": "k"}, path="/v1/track", auth=None)
    assert response.status_code == 200
    assert fake.messages == [{"userId": "u", "event": "Solo", "type": "track"}]
    assert fake.requests[0].write_key == "k"
    assert_error(post(fake, {"userId": "u"}, path="/v1/group"), 400, "invalid_message", '"groupId"')


def test_unknown_path_and_method(fake: FakeSegment) -> None:
    """Unknown paths answer 404 and other methods 405, and both are recorded."""
    assert_error(post(fake, batch(track()), path="/v2/batch"), 404, "not_found")
    assert_error(requests.get(fake.url + "/v1/batch", timeout=5), 405, "method_not_allowed")
    assert [(r.method, r.status) for r in fake.requests] == [("POST", 404), ("GET", 405)]
    assert fake.messages == []


def test_chunked_body_is_read(fake: FakeSegment) -> None:
    """A Transfer-Encoding: chunked body is reassembled and accepted."""
    payload = json.dumps(batch(track())).encode()
    chunks = iter([payload[:10], payload[10:]])
    response = requests.post(fake.url + "/v1/batch", data=chunks, auth=AUTH, timeout=5)
    assert response.status_code == 200
    assert fake.requests[0].headers["transfer-encoding"] == "chunked"
    assert fake.messages == [track()]


# -- scripted answers ----------------------------------------------------------


def test_scripted_500_then_default_200(fake: FakeSegment) -> None:
    """A scripted 500 is used once and its messages are not kept; the next request is validated normally."""
    fake.respond_with(500)
    assert fake.pending_responses == 1
    first = post(fake, batch(track(1)))
    assert_error(first, 500, "internal_server_error")
    second = post(fake, batch(track(1)))
    assert second.status_code == 200
    assert fake.pending_responses == 0
    assert [r.status for r in fake.requests] == [500, 200]
    assert fake.messages == [track(1)]


def test_scripts_are_used_in_order_and_times_repeats(fake: FakeSegment) -> None:
    """Scripts answer consecutive POSTs in the order queued; times=N repeats one N times."""
    fake.respond_with(503, times=2)
    fake.respond_with(201, body={"custom": True})
    statuses = [post(fake, batch(track())).status_code for _ in range(4)]
    assert statuses == [503, 503, 201, 200]
    assert len(fake.messages) == 2  # the scripted 201 and the default 200


def test_scripted_success_still_requires_a_valid_request(fake: FakeSegment) -> None:
    """A scripted 2xx answers as scripted, but an invalid request's messages are not accepted."""
    fake.respond_with(200)
    response = post(fake, batch({"type": "track", "userId": "u"}))
    assert response.status_code == 200
    assert fake.messages == []


def test_scripted_retry_after_header_and_body(fake: FakeSegment) -> None:
    """Scripted headers such as Retry-After reach the client, with the scripted body and a correct length."""
    fake.respond_with(429, headers={"Retry-After": "7", "X-RateLimit-Reset": "123"}, body="slow down")
    response = post(fake, batch(track()))
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "7"
    assert response.headers["X-RateLimit-Reset"] == "123"
    assert response.headers["Content-Type"].startswith("text/plain")
    assert response.text == "slow down"
    assert fake.messages == []


def test_scripted_delay(fake: FakeSegment) -> None:
    """A scripted delay holds the answer back; a client with a shorter timeout times out."""
    fake.respond_with(delay=0.3)
    started = time.monotonic()
    assert post(fake, batch(track())).status_code == 200
    assert time.monotonic() - started >= 0.3

    fake.respond_with(delay=2.0)
    with pytest.raises(requests.exceptions.ReadTimeout):
        post(fake, batch(track()), timeout=0.2)


def test_dropped_connection_is_a_connection_error(fake: FakeSegment) -> None:
    """drop=True reads the request and closes without answering: the client sees a connection error."""
    fake.respond_with(drop=True)
    with pytest.raises(requests.exceptions.ConnectionError):
        post(fake, batch(track()))
    assert fake.requests[0].status == 0
    assert fake.requests[0].json == batch(track())
    assert fake.messages == []
    assert post(fake, batch(track())).status_code == 200


def test_respond_with_rejects_bad_arguments(fake: FakeSegment) -> None:
    """Out-of-range status, delay or times raise ValueError instead of queueing a broken script."""
    for kwargs in ({"status": 99}, {"status": 600}, {"delay": -1.0}, {"delay": float("nan")}, {"times": 0}):
        with pytest.raises(ValueError, match=r"status|delay|times"):
            fake.respond_with(**kwargs)
    assert fake.pending_responses == 0


def test_clear_forgets_everything(fake: FakeSegment) -> None:
    """clear() forgets requests, messages and pending scripts."""
    post(fake, batch(track()))
    fake.respond_with(500)
    fake.clear()
    assert (fake.requests, fake.messages, fake.pending_responses) == ([], [], 0)
    assert post(fake, batch(track())).status_code == 200


# -- connections, lifecycle and concurrency -------------------------------------


def test_keep_alive_two_requests_on_one_connection(fake: FakeSegment) -> None:
    """Two requests travel over one http.client connection: HTTP/1.1 keep-alive with Content-Length."""
    conn = http.client.HTTPConnection(fake.host, fake.port, timeout=5)
    headers = {"Content-Type": "application/json", "Authorization": "Basic " + base64.b64encode(b"k:").decode()}
    try:
        sockets = []
        for i in range(2):
            conn.request("POST", "/v1/batch", body=json.dumps(batch(track(i))), headers=headers)
            response = conn.getresponse()
            assert response.status == 200
            assert response.version == 11
            assert response.getheader("Content-Length") == str(len(b'{"success":true}'))
            assert response.getheader("Connection") is None
            assert json.loads(response.read()) == {"success": True}
            sockets.append(conn.sock)
        assert sockets[0] is not None
        assert sockets[0] is sockets[1]
    finally:
        conn.close()
    assert [m["messageId"] for m in fake.messages] == ["m0", "m1"]
    assert fake.connections_accepted == 1


def stop_in_thread(server: FakeSegment) -> float:
    """Run server.stop() in a thread bounded by JOIN; return how long it took."""
    started = time.monotonic()
    stopper = threading.Thread(target=server.stop, daemon=True)
    stopper.start()
    stopper.join(JOIN)
    assert not stopper.is_alive(), "stop() did not return"
    return time.monotonic() - started


def test_stop_is_prompt_with_idle_keep_alive_connection() -> None:
    """stop() returns promptly while a client holds an idle keep-alive connection, and closes it."""
    server = FakeSegment().start()
    conn = http.client.HTTPConnection(server.host, server.port, timeout=5)
    try:
        conn.request("POST", "/v1/batch", body=json.dumps(batch(track())), headers={"Authorization": "Basic azo="})
        response = conn.getresponse()
        response.read()
        assert response.status == 200
        stop_in_thread(server)
        with pytest.raises((http.client.HTTPException, OSError)):
            conn.request("POST", "/v1/batch", body=b"{}")
            conn.getresponse()
    finally:
        conn.close()
    server.stop()  # idempotent


def test_stop_interrupts_a_delayed_response() -> None:
    """stop() cuts a scripted delay short: it returns promptly and the waiting client gets an error."""
    server = FakeSegment().start()
    server.respond_with(delay=60)
    outcome: list[BaseException] = []

    def client() -> None:
        try:
            post(server, batch(track()), timeout=30)
        except requests.RequestException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=client, daemon=True)
    thread.start()
    server.wait_for_requests(1)
    assert stop_in_thread(server) < JOIN
    thread.join(JOIN)
    assert not thread.is_alive()
    assert len(outcome) == 1
    assert isinstance(outcome[0], requests.ConnectionError)


def test_lifecycle_rules() -> None:
    """url needs start(); start() twice is harmless; a stopped server cannot restart; close() stops."""
    server = FakeSegment()
    with pytest.raises(RuntimeError):
        _ = server.url
    assert server.start() is server.start()
    assert server.url == f"http://127.0.0.1:{server.port}"
    assert server.port != 0
    server.close()
    server.stop()
    with pytest.raises(RuntimeError):
        server.start()


def test_ipv6_loopback() -> None:
    """An IPv6 host binds an IPv6 socket and the URL brackets the address."""
    if not socket.has_ipv6:
        pytest.skip("no IPv6 support")
    try:
        server = FakeSegment("::1").start()
    except OSError:
        pytest.skip("::1 cannot be bound here")
    with server:
        assert server.url == f"http://[::1]:{server.port}"
        assert post(server, batch(track())).status_code == 200


def test_thread_safety_8_threads_x_50_requests(fake: FakeSegment) -> None:
    """8 threads each send 50 requests over their own keep-alive session; every one is recorded."""
    failures: list[BaseException] = []

    def sender(n: int) -> None:
        try:
            with requests.Session() as session:
                for i in range(50):
                    body = batch(track(n * 1000 + i), track(n * 1000 + i + 500))
                    response = session.post(fake.url + "/v1/batch", json=body, auth=AUTH, timeout=10)
                    assert response.status_code == 200
        except BaseException as exc:  # reported by the main thread
            failures.append(exc)

    threads = [threading.Thread(target=sender, args=(n,), daemon=True) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not any(thread.is_alive() for thread in threads)
    assert failures == []
    assert len(fake.requests) == 400
    assert all(r.status == 200 for r in fake.requests)
    ids = {m["messageId"] for m in fake.messages}
    assert len(fake.messages) == 800
    assert ids == {f"m{n * 1000 + i + extra}" for n in range(8) for i in range(50) for extra in (0, 500)}


def test_wait_for_messages(fake: FakeSegment) -> None:
    """wait_for_messages returns once enough arrive from another thread, and raises when they do not."""
    sender = threading.Timer(0.2, lambda: post(fake, batch(track(1), track(2), track(3))))
    sender.start()
    try:
        assert len(fake.wait_for_messages(3, timeout=JOIN)) == 3
    finally:
        sender.join(JOIN)
    with pytest.raises(FakeSegmentTimeoutError, match="4 messages") as info:
        fake.wait_for_messages(4, timeout=0.1)
    assert isinstance(info.value, AssertionError)
    assert isinstance(info.value, TimeoutError)


def test_on_message_callback_and_its_errors() -> None:
    """on_message sees each accepted message; an exception it raises is kept in .errors, not sent to the client."""
    seen: list[dict[str, Any]] = []

    def callback(message: dict[str, Any]) -> None:
        seen.append(message)
        if message["messageId"] == "m2":
            msg = "boom"
            raise RuntimeError(msg)

    with FakeSegment(on_message=callback) as server:
        assert post(server, batch(track(1), track(2))).status_code == 200
        server.respond_with(500)
        post(server, batch(track(3)))
        assert [m["messageId"] for m in seen] == ["m1", "m2"]
        assert [str(e) for e in server.errors] == ["boom"]


def test_max_messages_keeps_the_newest_and_counts_dropped() -> None:
    """With max_messages set, the oldest messages are forgotten and counted in dropped_messages."""
    with FakeSegment(max_messages=3) as server:
        post(server, batch(*[track(i) for i in range(5)]))
        assert [m["messageId"] for m in server.messages] == ["m2", "m3", "m4"]
        assert server.dropped_messages == 2
        assert len(server.wait_for_messages(5, timeout=1)) == 3


def test_server_logs_nothing(fake: FakeSegment, capsys: pytest.CaptureFixture[str]) -> None:
    """Requests are not logged to stderr (the http.server default)."""
    post(fake, batch(track()))
    post(fake, data=b"nope")
    captured = capsys.readouterr()
    assert captured.err == ""
    assert captured.out == ""


# -- bounded memory whatever clients send -------------------------------------------

HUGE = 15_000_000  # a body far over anything Segment takes


def exchange(server: FakeSegment, head: bytes, parts: int = 0, part: bytes = b"") -> bytes:
    """Send ``head`` then ``parts`` copies of ``part`` on a raw socket; return all that is answered.

    The server may close while the body is still going: send errors are expected then.
    """
    answer = b""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        try:
            sock.sendall(head)
            for _ in range(parts):
                sock.sendall(part)
        except OSError:
            pass
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except OSError:
            pass
    return answer


def test_a_body_over_the_read_limit_is_refused_before_it_is_sent(fake: FakeSegment) -> None:
    """Content-Length over the limit (or one chunk claiming that much) answers 413 at once and closes:
    the server does not wait for (or hold) a body it would refuse."""
    head = f"POST /v1/batch HTTP/1.1\r\nHost: x\r\nContent-Length: {HUGE}\r\n\r\n".encode()
    answer = exchange(fake, head)  # no body sent: the answer must not wait for one
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
    assert b"Connection: close" in answer
    chunked = b"POST /v1/batch HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + f"{HUGE:x}\r\n".encode()
    assert exchange(fake, chunked).startswith(b"HTTP/1.1 413 ")
    assert [(r.status, r.body) for r in fake.requests] == [(413, b""), (413, b"")]


def test_refused_15_mb_bodies_keep_memory_flat() -> None:
    """Several 15 MB bodies, with Content-Length and chunked, are refused without being buffered: the
    server's peak Python allocation stays a small multiple of its 1 MiB read limit."""
    part = b"x" * 250_000
    parts = HUGE // len(part)
    tracemalloc.start()
    try:
        with FakeSegment() as server:
            tracemalloc.reset_peak()
            for _ in range(3):
                head = f"POST /v1/batch HTTP/1.1\r\nHost: x\r\nContent-Length: {HUGE}\r\n\r\n".encode()
                exchange(server, head, parts, part)
            chunk = f"{len(part):x}\r\n".encode() + part + b"\r\n"
            for _ in range(3):
                exchange(server, b"POST /v1/batch HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n", parts, chunk)
            server.wait_for_requests(6, timeout=JOIN)
            _, peak = tracemalloc.get_traced_memory()
            # Bodies just under the read limit are read and refused for their size (400), but not kept.
            near_limit = b"[" + b"{}," * 340_000 + b"{}]"
            for _ in range(20):
                assert post(server, data=near_limit).status_code == 400
            held, _ = tracemalloc.get_traced_memory()
            statuses = [r.status for r in server.requests]
            bodies = sum(len(r.body) for r in server.requests)
    finally:
        tracemalloc.stop()
    assert statuses == [413] * 6 + [400] * 20
    assert peak < 8_000_000, f"peak Python allocation {peak / 1e6:.1f} MB for refused bodies"
    assert bodies == 0
    assert held < 4_000_000, f"{held / 1e6:.1f} MB held after 20 refused bodies of 1 MB"
