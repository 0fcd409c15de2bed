"""The simple-segment command line, driven as a subprocess against a FakeSegment."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import WRITE_KEY

import simple_segment
from simple_segment.testing import FakeSegment


def run(*args: str, stdin: str | None = None, env: dict[str, str] | None = None, timeout: float = 120):
    environ = {k: v for k, v in os.environ.items() if not k.upper().endswith("_PROXY")}
    environ.pop("SEGMENT_WRITE_KEY", None)
    environ.pop("SEGMENT_HOST", None)
    environ.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "simple_segment", *args],
        input=stdin, capture_output=True, text=True, env=environ, timeout=timeout, check=False,
    )


def target(server: FakeSegment) -> list[str]:
    return ["--write-key", WRITE_KEY, "--host", server.url]


def test_track_with_every_flag(fake_segment: FakeSegment) -> None:
    """track sends the flags' fields through the library, and exits 0."""
    result = run(
        "track", *target(fake_segment), "--user-id", "u1", "--event", "Signed Up",
        "--properties", '{"plan": "pro"}', "--context", '{"ip": "1.2.3.4"}', "--integrations", '{"All": false}',
        "--timestamp", "2024-01-02T03:04:05Z", "--message-id", "m-1", "--anonymous-id", "a1",
    )
    assert result.returncode == 0, result.stderr
    (msg,) = fake_segment.messages
    assert msg["event"] == "Signed Up"
    assert msg["properties"] == {"plan": "pro"}
    assert msg["context"]["ip"] == "1.2.3.4"
    assert msg["integrations"] == {"All": False}
    assert msg["timestamp"] == "2024-01-02T03:04:05.000+00:00"
    assert (msg["messageId"], msg["userId"], msg["anonymousId"]) == ("m-1", "u1", "a1")
    assert fake_segment.requests[0].write_key == WRITE_KEY


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["identify", "--user-id", "u", "--traits", '{"a": 1}'], {"type": "identify", "traits": {"a": 1}}),
        (["page", "--user-id", "u", "--name", "Home", "--category", "Docs"], {"type": "page", "name": "Home"}),
        (["screen", "--anonymous-id", "a", "--name", "Main"], {"type": "screen", "anonymousId": "a"}),
        (["group", "--user-id", "u", "--group-id", "g", "--traits", "{}"], {"type": "group", "groupId": "g"}),
        (["alias", "--previous-id", "p", "--user-id", "u"], {"type": "alias", "previousId": "p"}),
    ],
)
def test_each_call_type(fake_segment: FakeSegment, args: list[str], expected: dict) -> None:
    """Every call type is a command."""
    result = run(*args, *target(fake_segment))
    assert result.returncode == 0, result.stderr
    (msg,) = fake_segment.messages
    assert msg.items() >= expected.items()


def test_key_and_host_from_environment(fake_segment: FakeSegment) -> None:
    """SEGMENT_WRITE_KEY and SEGMENT_HOST are used when the flags are absent."""
    result = run("track", "--user-id", "u", "--event", "E",
                 env={"SEGMENT_WRITE_KEY": "env-key", "SEGMENT_HOST": fake_segment.url})
    assert result.returncode == 0, result.stderr
    assert fake_segment.requests[0].write_key == "env-key"


def test_missing_write_key_is_a_usage_error() -> None:
    """No write key: exit 2 with one line on stderr."""
    result = run("track", "--user-id", "u", "--event", "E")
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "write key" in result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["track", "--user-id", "u", "--event", "E", "--properties", "{not json"],
        ["track", "--user-id", "u", "--event", "E", "--timestamp", "yesterday"],
        ["track", "--user-id", "u"],
        ["bogus"],
    ],
)
def test_invalid_input_exits_2(fake_segment: FakeSegment, args: list[str]) -> None:
    """Bad JSON, a bad timestamp, a missing field or an unknown command exit 2 and send nothing."""
    result = run(*args, *target(fake_segment))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert fake_segment.requests == []


def test_delivery_failure_exits_1(fake_segment: FakeSegment) -> None:
    """A 400 answer: exit 1, one line on stderr naming the error, no traceback."""
    fake_segment.respond_with(400, body={"success": False, "message": "bad key format"})
    result = run("track", *target(fake_segment), "--user-id", "u", "--event", "E")
    assert result.returncode == 1
    assert "bad key format" in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_debug_shows_traceback(fake_segment: FakeSegment) -> None:
    """--debug adds the traceback."""
    fake_segment.respond_with(400)
    result = run("track", *target(fake_segment), "--user-id", "u", "--event", "E", "--debug")
    assert result.returncode == 1
    assert "Traceback" in result.stderr


def test_dry_run_prints_redacted_request(fake_segment: FakeSegment) -> None:
    """--dry-run prints the exact request with the write key redacted and sends nothing."""
    result = run("track", *target(fake_segment), "--user-id", "u", "--event", "E", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert f"POST {fake_segment.url}/v1/batch" in result.stdout
    assert "Authorization: Basic ***" in result.stdout
    assert WRITE_KEY not in result.stdout
    body = json.loads(result.stdout.split("\n\n", 1)[1])
    assert body["writeKey"] == "***"
    assert body["batch"][0]["event"] == "E"
    assert fake_segment.requests == []


def test_import_100k_lines(tmp_path: Path) -> None:
    """100,000 lines: each delivered once, in batches within the limits, timestamps kept, summary printed."""
    path = tmp_path / "events.jsonl"
    with path.open("w") as out:
        for i in range(100_000):
            out.write(json.dumps({"type": "track", "userId": f"u{i % 97}", "event": "Backfilled",
                                  "properties": {"i": i}, "timestamp": "2020-05-06T07:08:09.123Z",
                                  "messageId": f"m-{i}"}) + "\n")
    with FakeSegment(max_messages=200_000) as server:
        result = run("import", str(path), "--write-key", WRITE_KEY, "--host", server.url)
        assert result.returncode == 0, result.stderr
        requests = server.requests
        messages = server.messages
    assert len(messages) == 100_000
    assert len({m["messageId"] for m in messages}) == 100_000
    assert all(len(r.batch) <= 2500 and len(r.body) <= 500_000 for r in requests)
    assert messages[0]["timestamp"] == "2020-05-06T07:08:09.123+00:00"
    assert "delivered 100000 messages" in result.stdout


def test_import_reports_bad_lines_and_sends_the_rest(fake_segment: FakeSegment, tmp_path: Path) -> None:
    """Bad lines are reported with their line numbers, the others still go, and the exit status is non-zero."""
    lines = [
        '{"type": "track", "userId": "u", "event": "Good 1"}',
        "{not json",
        '{"type": "track", "userId": "u"}',
        '{"type": "teleport", "userId": "u"}',
        "[1, 2]",
        "",
        '{"type": "identify", "anonymousId": "a", "traits": {"x": 1}}',
    ]
    path = tmp_path / "mixed.jsonl"
    path.write_text("\n".join(lines) + "\n")
    result = run("import", str(path), *target(fake_segment))
    assert result.returncode != 0
    for number in (2, 3, 4, 5):
        assert f"line {number}:" in result.stderr
    assert "line 1:" not in result.stderr
    assert [m["type"] for m in fake_segment.messages] == ["track", "identify"]


def test_import_from_stdin(fake_segment: FakeSegment) -> None:
    """import - reads standard input."""
    stdin = "\n".join(json.dumps({"type": "page", "userId": "u", "name": f"P{i}"}) for i in range(5))
    result = run("import", "-", *target(fake_segment), stdin=stdin)
    assert result.returncode == 0, result.stderr
    assert [m["name"] for m in fake_segment.messages] == [f"P{i}" for i in range(5)]


def test_import_delivery_failure_exits_1(fake_segment: FakeSegment) -> None:
    """A request that fails for good makes import exit 1 and say so."""
    fake_segment.respond_with(400)
    stdin = json.dumps({"type": "track", "userId": "u", "event": "E"})
    result = run("import", "-", *target(fake_segment), stdin=stdin)
    assert result.returncode == 1
    assert "not delivered" in result.stderr


def test_serve_prints_received_messages() -> None:
    """serve --port 0 prints its URL, then one line per message it receives."""
    with subprocess.Popen(
        [sys.executable, "-m", "simple_segment", "serve", "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    ) as proc:
        try:
            assert proc.stdout is not None
            first = proc.stdout.readline()
            assert first.startswith("listening on http://127.0.0.1:")
            url = first.split()[-1]
            with simple_segment.Client(WRITE_KEY, host=url, timeout=5) as client:
                client.track("user-9", "Served Event")
            line = proc.stdout.readline()
            assert "Served Event" in line
            assert "user-9" in line
        finally:
            proc.terminate()
            proc.wait(timeout=10)
    assert proc.returncode == 0


def test_demo_runs_offline() -> None:
    """demo needs no account or network beyond loopback, and shows each call and the batch."""
    result = run("demo", timeout=60)
    assert result.returncode == 0, result.stderr
    for name in ("identify", "track", "page", "screen", "group", "alias", "batch of 1,000"):
        assert name in result.stdout
    assert "server recorded 1006 messages" in result.stdout
