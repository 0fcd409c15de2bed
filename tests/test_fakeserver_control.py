"""FakeSegment's control endpoints (/_messages, /_requests, /_script, /_clear) and script windows.

Driven over real sockets with requests only, as a test in another process would.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest
import requests
from conftest import track

from simple_segment.testing import FakeSegment

AUTH = ("fake-key", "")
JOIN = 10.0


def send(server: FakeSegment, *messages: dict[str, Any], timeout: float = 5.0) -> requests.Response:
    return requests.post(f"{server.url}/v1/batch", json={"batch": list(messages)}, auth=AUTH, timeout=timeout)


def script(server: FakeSegment, spec: Any) -> requests.Response:
    return requests.post(f"{server.url}/_script", data=json.dumps(spec), timeout=5)


def lines(response: requests.Response) -> list[Any]:
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"] == "application/x-ndjson"
    return [json.loads(line) for line in response.text.splitlines()]


def get_messages(server: FakeSegment, since: int | None = None) -> tuple[int, list[Any]]:
    params = {} if since is None else {"since": since}
    response = requests.get(f"{server.url}/_messages", params=params, timeout=5)
    return int(response.headers["X-Messages-Accepted"]), lines(response)


def poll_messages(server: FakeSegment, n: int, timeout: float = JOIN) -> list[Any]:
    """Poll GET /_messages until ``n`` messages are there (bounded by ``timeout``)."""
    deadline = time.monotonic() + timeout
    while True:
        _, messages = get_messages(server)
        if len(messages) >= n or time.monotonic() > deadline:
            return messages
        time.sleep(0.02)


class FakeClock:
    """Replaces the server's monotonic clock for script windows, so tests need not sleep."""

    def __init__(self, server: FakeSegment) -> None:
        self.now = 1000.0
        server._recorder.clock = lambda: self.now


# -- reading -------------------------------------------------------------------


def test_messages_are_json_lines_oldest_first_and_control_is_not_recorded(fake: FakeSegment) -> None:
    """GET /_messages answers the accepted messages as JSON lines; control requests are not recorded."""
    assert get_messages(fake) == (0, [])
    send(fake, track(1), track(2))
    send(fake, {"type": "track", "userId": "u"})  # rejected: no event
    send(fake, track(3))

    total, messages = get_messages(fake)
    assert total == 3
    assert messages == [track(1), track(2), track(3)]
    assert [r.path for r in fake.requests] == ["/v1/batch"] * 3
    assert fake.wait_for_requests(3, timeout=0) == fake.requests
    assert len(fake.messages) == 3


def test_messages_since_skips_and_counts_forgotten_ones() -> None:
    """?since=N skips the first N accepted since start, counting those forgotten to max_messages."""
    with FakeSegment(max_messages=3) as server:
        send(server, *[track(i) for i in range(5)])
        assert get_messages(server, since=1) == (5, [track(2), track(3), track(4)])
        assert get_messages(server, since=3) == (5, [track(3), track(4)])
        assert get_messages(server, since=5) == (5, [])
        assert get_messages(server, since=99) == (5, [])


def test_polling_with_since_sees_every_message_once(fake: FakeSegment) -> None:
    """A poller passing X-Messages-Accepted back as ?since= sees each message exactly once under concurrent sends."""
    failures: list[BaseException] = []

    def sender(n: int) -> None:
        try:
            with requests.Session() as session:
                for i in range(25):
                    body = {"batch": [track(n * 100 + i), track(n * 100 + i + 50)]}
                    assert session.post(f"{fake.url}/v1/batch", json=body, auth=AUTH, timeout=10).status_code == 200
        except BaseException as exc:  # reported by the main thread
            failures.append(exc)

    threads = [threading.Thread(target=sender, args=(n,), daemon=True) for n in range(4)]
    for thread in threads:
        thread.start()
    seen: list[str] = []
    since = 0
    deadline = time.monotonic() + JOIN
    while len(seen) < 200 and time.monotonic() < deadline:
        since_next, new = get_messages(fake, since)
        assert since_next == since + len(new)
        if not new:
            time.sleep(0.01)
        seen += [m["messageId"] for m in new]
        since = since_next
    for thread in threads:
        thread.join(JOIN)
    assert failures == []
    assert len(seen) == 200
    assert len(set(seen)) == 200


def test_requests_lines_describe_each_request(fake: FakeSegment) -> None:
    """GET /_requests has one line per request with its method, path, status, headers, key, time and messages."""
    send(fake, track(1))
    send(fake, {"type": "track", "userId": "u"})
    requests.get(f"{fake.url}/v2/nothing", timeout=5)

    response = requests.get(f"{fake.url}/_requests", timeout=5)
    rows = lines(response)
    assert response.headers["X-Requests-Received"] == "3"
    assert [(r["method"], r["path"], r["status"]) for r in rows] == [
        ("POST", "/v1/batch", 200),
        ("POST", "/v1/batch", 400),
        ("GET", "/v2/nothing", 404),
    ]
    first = rows[0]
    assert set(first) == {"method", "path", "status", "headers", "write_key", "received_at", "messages"}
    assert first["write_key"] == "fake-key"
    assert first["headers"]["content-type"] == "application/json"
    assert first["messages"] == [track(1)]
    assert abs(first["received_at"] - time.time()) < 60
    assert rows[1]["messages"] == [{"type": "track", "userId": "u"}]  # as sent, though rejected
    assert rows[2]["messages"] == []
    since = lines(requests.get(f"{fake.url}/_requests?since=2", timeout=5))
    assert [r["path"] for r in since] == ["/v2/nothing"]


# -- scripting over HTTP ---------------------------------------------------------


def test_script_times(fake: FakeSegment) -> None:
    """{"status": 503, "times": 3} answers the next three POSTs with 503; their messages are not stored."""
    response = script(fake, {"status": 503, "times": 3})
    assert response.status_code == 200
    assert response.json() == {"success": True}
    assert fake.pending_responses == 3
    assert [send(fake, track(i)).status_code for i in range(4)] == [503, 503, 503, 200]
    assert get_messages(fake) == (1, [track(3)])


def test_script_time_window(fake: FakeSegment) -> None:
    """{"status": 503, "seconds": S} answers every POST with 503 until S seconds have passed, then normally."""
    clock = FakeClock(fake)
    assert script(fake, {"status": 503, "seconds": 2.5}).status_code == 200
    assert [send(fake, track(i)).status_code for i in range(3)] == [503, 503, 503]
    clock.now += 2.4
    assert send(fake, track(3)).status_code == 503
    clock.now += 0.1
    assert send(fake, track(4)).status_code == 200
    assert fake.messages == [track(4)]
    assert fake.pending_responses == 0


def test_script_headers_and_bodies(fake: FakeSegment) -> None:
    """A script's headers reach the client; a string body is sent as text, an object as JSON."""
    script(fake, {"status": 429, "headers": {"Retry-After": "7"}, "body": "slow down"})
    script(fake, {"status": 400, "body": {"success": False, "message": "nope"}})
    first = send(fake, track())
    assert (first.status_code, first.headers["Retry-After"], first.text) == (429, "7", "slow down")
    assert first.headers["Content-Type"].startswith("text/plain")
    second = send(fake, track())
    assert (second.status_code, second.json()) == (400, {"success": False, "message": "nope"})


def test_script_delay_stores_before_the_late_answer(fake: FakeSegment) -> None:
    """A delayed 2xx stores the messages first: the client times out, yet /_messages already has them."""
    script(fake, {"status": 200, "delay": 2})
    with pytest.raises(requests.exceptions.ReadTimeout):
        send(fake, track(1), timeout=0.3)
    assert poll_messages(fake, 1) == [track(1)]
    assert send(fake, track(2)).status_code == 200


def test_script_drop(fake: FakeSegment) -> None:
    """{"drop": true} closes the connection without an answer; the request is recorded with status 0."""
    script(fake, {"drop": True})
    with pytest.raises(requests.exceptions.ConnectionError):
        send(fake, track())
    assert [r.status for r in fake.requests] == [0]
    assert fake.messages == []


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ({"status": 503, "time": 3}, "unknown keys"),
        ({"status": 503, "times": 3, "seconds": 1}, "not both"),
        ({"status": 99}, "status"),
        ({"status": True}, "status"),
        ({"status": "503"}, "status"),
        ({"status": 503.5}, "status"),
        ({"times": 0}, "times"),
        ({"seconds": 0}, "seconds"),
        ({"delay": -1}, "delay"),
        ({"drop": "yes"}, "drop"),
        ({"headers": {"Retry-After": 7}}, "headers"),
        ({"endpoint": "batch"}, "endpoint"),
        ([503], "JSON object"),
        ("not json", "JSON object"),
    ],
)
def test_bad_scripts_are_400(fake: FakeSegment, spec: Any, words: str) -> None:
    """A malformed script answers 400 invalid_control_request naming the problem, and queues nothing."""
    data = spec if isinstance(spec, str) else json.dumps(spec)
    response = requests.post(f"{fake.url}/_script", data=data, timeout=5)
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "invalid_control_request"
    assert words in body["message"]
    assert fake.pending_responses == 0
    assert send(fake, track()).status_code == 200


def test_clear_over_http(fake: FakeSegment) -> None:
    """POST /_clear forgets requests, messages and scripts."""
    send(fake, track())
    script(fake, {"status": 500, "times": 2})
    script(fake, {"status": 500, "seconds": 60})
    response = requests.post(f"{fake.url}/_clear", timeout=5)
    assert (response.status_code, response.json()) == (200, {"success": True})
    assert (fake.requests, fake.messages, fake.pending_responses) == ([], [], 0)
    assert get_messages(fake) == (0, [])
    assert send(fake, track()).status_code == 200


def test_control_routes_and_methods(fake: FakeSegment) -> None:
    """Unknown control paths answer 404 and wrong methods 405; neither is recorded; ?since must be a number."""
    assert requests.get(f"{fake.url}/_nothing", timeout=5).status_code == 404
    assert requests.post(f"{fake.url}/_messages", timeout=5).status_code == 405
    assert requests.get(f"{fake.url}/_clear", timeout=5).status_code == 405
    bad = requests.get(f"{fake.url}/_messages?since=-1", timeout=5)
    assert bad.status_code == 400
    assert "since" in bad.json()["message"]
    assert fake.requests == []


# -- the Python side of time windows ---------------------------------------------------


def test_respond_with_seconds_wins_over_queued_scripts(fake: FakeSegment) -> None:
    """respond_with(seconds=...) answers every POST while open; counted scripts wait for it to close."""
    clock = FakeClock(fake)
    fake.respond_with(500, times=1)
    fake.respond_with(503, seconds=1.0)
    assert fake.pending_responses == 1
    assert [send(fake, track()).status_code for _ in range(2)] == [503, 503]
    clock.now += 1.0
    assert [send(fake, track()).status_code for _ in range(2)] == [500, 200]


def test_a_new_window_replaces_the_open_one(fake: FakeSegment) -> None:
    """A second time window replaces the first, from the moment it is set."""
    clock = FakeClock(fake)
    fake.respond_with(503, seconds=10)
    clock.now += 1
    fake.respond_with(502, seconds=1)
    assert send(fake, track()).status_code == 502
    clock.now += 1
    assert send(fake, track()).status_code == 200


def test_respond_with_checks_times_and_seconds(fake: FakeSegment) -> None:
    """times and seconds exclude each other and must be positive; a huge times costs nothing."""
    for kwargs in ({"times": 2, "seconds": 1.0}, {"seconds": 0.0}, {"seconds": float("inf")}, {"times": -1}):
        with pytest.raises(ValueError, match=r"times|seconds"):
            fake.respond_with(503, **kwargs)
    assert fake.pending_responses == 0
    fake.respond_with(503, times=10**12)
    assert fake.pending_responses == 10**12


# -- paging, and scripts the server could not use ------------------------------


def test_messages_and_requests_page_with_since_and_limit() -> None:
    """?limit=M returns at most M; X-Next-Since is the next page's since, skipping forgotten messages."""
    with FakeSegment(max_messages=3, max_requests=3) as server:
        for n in range(5):
            send(server, track(n))
        pages: list[list[Any]] = []
        since = 0
        for _ in range(5):  # bounded: three pages are expected
            response = requests.get(f"{server.url}/_messages", params={"since": since, "limit": 2}, timeout=5)
            page = lines(response)
            assert int(response.headers["X-Messages-Accepted"]) == 5
            since = int(response.headers["X-Next-Since"])
            if not page:
                break
            pages.append(page)
        assert pages == [[track(2), track(3)], [track(4)]]  # messages 0 and 1 were forgotten
        assert since == 5
        response = requests.get(f"{server.url}/_requests", params={"since": 3, "limit": 1}, timeout=5)
        assert [row["messages"] for row in lines(response)] == [[track(3)]]
        assert response.headers["X-Next-Since"] == "4"
        assert int(response.headers["X-Requests-Received"]) == 5
        bad = requests.get(f"{server.url}/_messages", params={"limit": "-1"}, timeout=5)
        assert bad.status_code == 400
        assert "limit" in bad.json()["message"]


@pytest.mark.parametrize(
    ("data", "words"),
    [
        ('{"headers": {"X-A": "a\\r\\nInjected: 1"}}', "headers['X-A']"),
        ('{"headers": {"X-A": "\\u20ac"}}', "headers['X-A']"),
        ('{"headers": {"Bad Name": "x"}}', "'Bad Name' is not a header name"),
        ('{"headers": {"": "x"}}', "is not a header name"),
        ('{"headers": {"X-A": null}}', "headers['X-A']"),
        ('{"headers": ["X-A"]}', "headers must be an object"),
        ('{"body": "\\ud800"}', "body"),
        ('{"delay": 1e300}', "delay"),
        ('{"delay": Infinity}', "delay"),
        ('{"delay": NaN}', "delay"),
        ('{"status": NaN}', "status"),
        ('{"status": 103}', "status"),
        ('{"status": 600}', "status"),
        ('{"times": 2.5}', "times"),
        ('{"seconds": "1"}', "seconds"),
        ('{"endpoint": ["tracking"]}', "endpoint"),
    ],
)
def test_scripts_the_server_cannot_use_are_400_naming_the_field(fake: FakeSegment, data: str, words: str) -> None:
    """A script value the server could not write or wait on (a header with CR/LF or outside Latin-1, a bad
    header name, a body with a lone surrogate, a delay too long for a thread's wait, ...) answers 400 naming
    the field, instead of being queued and breaking the request it answers."""
    response = requests.post(f"{fake.url}/_script", data=data, timeout=5)
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["code"] == "invalid_control_request"
    assert words in body["message"]
    assert fake.pending_responses == 0
    answer = send(fake, track())
    assert answer.status_code == 200
    assert "Injected" not in answer.headers
    assert fake.errors == []


def test_respond_with_refuses_a_header_that_would_split_the_response(fake: FakeSegment) -> None:
    """respond_with checks headers as /_script does: a value with CR/LF is a ValueError naming it."""
    with pytest.raises(ValueError, match="Retry-After"):
        fake.respond_with(429, headers={"Retry-After": "1\r\nX-Evil: 1"})
    with pytest.raises(ValueError, match="delay"):
        fake.respond_with(200, delay=1e12)
    assert fake.pending_responses == 0


def test_scripts_queued_over_http_are_bounded(fake: FakeSegment) -> None:
    """/_script refuses a 1,001st queued script, and bodies past 16 MB in all: a client cannot grow the
    server's memory with scripts (times repeats one at no cost)."""
    with requests.Session() as session:
        for _ in range(1000):
            assert session.post(f"{fake.url}/_script", data='{"status": 503}', timeout=5).status_code == 200
        refused = session.post(f"{fake.url}/_script", data='{"status": 503}', timeout=5)
        assert refused.status_code == 400
        assert "too many scripts queued (1000" in refused.json()["message"]
        assert fake.pending_responses == 1000
        fake.clear()
        big = json.dumps({"status": 500, "body": "x" * 900_000})
        for _ in range(17):
            assert session.post(f"{fake.url}/_script", data=big, timeout=5).status_code == 200
        refused = session.post(f"{fake.url}/_script", data=big, timeout=5)
        assert refused.status_code == 400
        assert "bytes of bodies" in refused.json()["message"]
        fake.clear()
        assert script(fake, {"status": 503, "times": 1_000_000}).status_code == 200
        assert fake.pending_responses == 1_000_000
