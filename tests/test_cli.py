"""The simple-segment command line, driven as a subprocess against a FakeSegment."""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from conftest import WRITE_KEY

import simple_segment
from simple_segment._cli import main
from simple_segment.testing import FakeSegment

POSIX = sys.platform != "win32"


def environment(extra: dict[str, str] | None = None) -> dict[str, str]:
    environ = {k: v for k, v in os.environ.items() if not k.upper().endswith("_PROXY")}
    environ.pop("SEGMENT_WRITE_KEY", None)
    environ.pop("SEGMENT_HOST", None)
    environ.update(extra or {})
    return environ


def run(*args: str, stdin: str | bytes | None = None, env: dict[str, str] | None = None, timeout: float = 60):
    return subprocess.run(
        [sys.executable, "-m", "simple_segment", *args],
        input=stdin.encode() if isinstance(stdin, str) else stdin,
        capture_output=True, env=environment(env), timeout=timeout, check=False,
    )


class Result:
    """A finished run, with its output decoded."""

    def __init__(self, done: subprocess.CompletedProcess) -> None:
        self.returncode = done.returncode
        self.stdout = done.stdout.decode()
        self.stderr = done.stderr.decode()


def cli(*args: str, **kwargs) -> Result:
    return Result(run(*args, **kwargs))


def target(server: FakeSegment) -> list[str]:
    return ["--write-key", WRITE_KEY, "--host", server.url]


def one_line(text: str) -> bool:
    return len(text.strip().splitlines()) == 1


class Lines:
    """Lines of a child's stream, read on a thread so every wait has a timeout."""

    def __init__(self, stream) -> None:
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, args=(stream,), daemon=True).start()

    def _pump(self, stream) -> None:
        for line in stream:
            self._queue.put(line)
        self._queue.put(None)

    def next(self, timeout: float = 10) -> str:
        line = self._queue.get(timeout=timeout)
        assert line is not None, "the stream ended"
        return line

    def until(self, text: str, timeout: float = 10) -> str:
        deadline = time.monotonic() + timeout
        while True:
            line = self.next(max(deadline - time.monotonic(), 0.01))
            if text in line:
                return line


@contextlib.contextmanager
def serving(*args: str) -> Iterator[tuple[subprocess.Popen, str, Lines, Lines]]:
    """Run `serve --port 0`; yield the process, its URL and its stdout and stderr lines."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "simple_segment", "serve", "--port", "0", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, encoding="utf-8", env=environment(),
    )
    try:
        out, err = Lines(proc.stdout), Lines(proc.stderr)
        first = (err if "--json" in args else out).next(timeout=20)  # --json keeps stdout for messages
        assert first.startswith("listening on http://127.0.0.1:"), first
        yield proc, first.split()[-1], out, err
    finally:
        if proc.poll() is None:
            proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


# -- the six calls ----------------------------------------------------------------


def test_track_with_every_flag(fake_segment: FakeSegment) -> None:
    """track sends every flag's field through the library's client, and exits 0 saying what it delivered."""
    result = cli(
        "track", *target(fake_segment), "--user-id", "u1", "--event", "Signed Up",
        "--properties", '{"plan": "pro"}', "--context", '{"ip": "1.2.3.4"}', "--integrations", '{"All": false}',
        "--timestamp", "2024-01-02T03:04:05Z", "--message-id", "m-1", "--anonymous-id", "a1",
    )
    assert result.returncode == 0, result.stderr
    (msg,) = fake_segment.messages
    assert msg["event"] == "Signed Up"
    assert msg["properties"] == {"plan": "pro"}
    assert msg["context"]["ip"] == "1.2.3.4"
    assert msg["context"]["library"]["name"] == "simple_segment"
    assert msg["integrations"] == {"All": False}
    assert msg["timestamp"] == "2024-01-02T03:04:05.000+00:00"
    assert (msg["messageId"], msg["userId"], msg["anonymousId"]) == ("m-1", "u1", "a1")
    request = fake_segment.requests[0]
    assert request.write_key == WRITE_KEY
    assert request.headers["user-agent"].startswith("simple_segment/")
    assert result.stdout.strip() == "delivered track m-1"
    assert result.stderr == ""


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ["identify", "--user-id", "u", "--traits", '{"a": 1}', "--timestamp", "2021-02-03T04:05:06.789+02:00"],
            {"type": "identify", "userId": "u", "traits": {"a": 1}, "timestamp": "2021-02-03T04:05:06.789+02:00"},
        ),
        (
            ["page", "--user-id", "u", "--name", "Home", "--category", "Docs", "--properties", '{"path": "/"}'],
            {"type": "page", "name": "Home", "category": "Docs", "properties": {"path": "/"}},
        ),
        (["screen", "--anonymous-id", "a", "--name", "Main"], {"type": "screen", "anonymousId": "a", "name": "Main"}),
        (
            ["group", "--user-id", "u", "--group-id", "g", "--traits", '{"seats": 3}'],
            {"type": "group", "groupId": "g", "traits": {"seats": 3}},
        ),
        (
            ["alias", "--previous-id", "p", "--user-id", "u", "--message-id", "alias-1"],
            {"type": "alias", "previousId": "p", "userId": "u", "messageId": "alias-1"},
        ),
    ],
)
def test_each_call_type(fake_segment: FakeSegment, args: list[str], expected: dict) -> None:
    """Every call type is a command whose flags land in the fields of the message the server receives."""
    result = cli(*args, *target(fake_segment))
    assert result.returncode == 0, result.stderr
    (msg,) = fake_segment.messages
    assert msg.items() >= expected.items()


def test_gzip_flag(fake_segment: FakeSegment) -> None:
    """--gzip sends a gzip-compressed body that the server decodes to the message."""
    result = cli("track", *target(fake_segment), "--user-id", "u", "--event", "Zipped", "--gzip")
    assert result.returncode == 0, result.stderr
    (request,) = fake_segment.requests
    assert request.headers["content-encoding"] == "gzip"
    assert json.loads(gzip.decompress(request.body))["batch"][0]["event"] == "Zipped"


def test_key_and_host_from_environment(fake_segment: FakeSegment) -> None:
    """SEGMENT_WRITE_KEY and SEGMENT_HOST are used when the flags are absent."""
    result = cli("track", "--user-id", "u", "--event", "E",
                 env={"SEGMENT_WRITE_KEY": "env-key", "SEGMENT_HOST": fake_segment.url})
    assert result.returncode == 0, result.stderr
    assert fake_segment.requests[0].write_key == "env-key"


def test_flags_win_over_environment(fake_segment: FakeSegment) -> None:
    """--write-key and --host take precedence over the environment variables."""
    result = cli("track", *target(fake_segment), "--user-id", "u", "--event", "E",
                 env={"SEGMENT_WRITE_KEY": "env-key", "SEGMENT_HOST": "http://127.0.0.1:9"})
    assert result.returncode == 0, result.stderr
    assert fake_segment.requests[0].write_key == WRITE_KEY


def test_missing_write_key_is_a_usage_error() -> None:
    """No write key: exit 2 with one line on stderr naming what to do."""
    result = cli("track", "--user-id", "u", "--event", "E")
    assert result.returncode == 2
    assert one_line(result.stderr)
    assert "--write-key" in result.stderr
    assert "SEGMENT_WRITE_KEY" in result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["track", "--user-id", "u", "--event", "E", "--properties", "{not json"],
        ["track", "--user-id", "u", "--event", "E", "--properties", "[1, 2]"],
        ["track", "--user-id", "u", "--event", "E", "--timestamp", "yesterday"],
        ["track", "--user-id", "u", "--event", "E", "--timeout", "0"],
        ["track", "--user-id", "u", "--event", "E", "--max-retries", "-1"],
        ["track", "--user-id", "u", "--event", "E", "--properties", '{"x": NaN}'],
        ["track", "--user-id", "u"],
        ["alias", "--user-id", "u"],
        ["track", "--user-id", "u", "--event", "E", "--host", "ftp://example.com"],
        ["track", "--user-id", "u", "--event", "E", "--nonsense"],
        ["bogus"],
        [],
    ],
)
def test_invalid_input_exits_2(fake_segment: FakeSegment, args: list[str]) -> None:
    """Bad JSON, a bad timestamp or option, a missing field or an unknown command: exit 2, one line, nothing sent."""
    extra = [] if any(arg.startswith("--host") for arg in args) else ["--host", fake_segment.url]
    result = cli(*args, "--write-key", WRITE_KEY, *extra) if args else cli()
    assert result.returncode == 2, result.stderr
    assert one_line(result.stderr), result.stderr
    assert "error" in result.stderr
    assert "Traceback" not in result.stderr
    assert fake_segment.requests == []


def test_delivery_failure_exits_1(fake_segment: FakeSegment) -> None:
    """A 400 answer: exit 1, one line on stderr naming the error, no traceback."""
    fake_segment.respond_with(400, body={"success": False, "message": "bad key format"})
    result = cli("track", *target(fake_segment), "--user-id", "u", "--event", "E")
    assert result.returncode == 1
    assert "bad key format" in result.stderr
    assert "Traceback" not in result.stderr
    assert one_line(result.stderr)


def test_retries_stay_quiet_and_failure_is_one_line(fake_segment: FakeSegment) -> None:
    """--max-retries is used; retry warnings do not add lines: the failure is still one line on stderr."""
    fake_segment.respond_with(503, times=2)
    result = cli("track", *target(fake_segment), "--user-id", "u", "--event", "E", "--max-retries", "1")
    assert result.returncode == 1
    assert len(fake_segment.requests) == 2
    assert one_line(result.stderr), result.stderr
    assert "503" in result.stderr


def test_a_retry_that_succeeds_exits_0(fake_segment: FakeSegment) -> None:
    """A transient 500 followed by success delivers once and prints nothing on stderr."""
    fake_segment.respond_with(500)
    result = cli("track", *target(fake_segment), "--user-id", "u", "--event", "E")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert len(fake_segment.messages) == 1


def test_unreachable_host_exits_1() -> None:
    """Nothing listening: exit 1 with one line, no traceback."""
    result = cli("track", "--write-key", WRITE_KEY, "--host", "http://127.0.0.1:9", "--user-id", "u",
                 "--event", "E", "--max-retries", "0", "--timeout", "2")
    assert result.returncode == 1
    assert one_line(result.stderr)
    assert "not delivered" in result.stderr


def test_debug_shows_traceback(fake_segment: FakeSegment) -> None:
    """--debug adds the traceback (and the one line still ends the output)."""
    fake_segment.respond_with(400)
    result = cli("track", *target(fake_segment), "--user-id", "u", "--event", "E", "--debug")
    assert result.returncode == 1
    assert "Traceback" in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("simple-segment: error: not delivered")


def test_dry_run_prints_redacted_request(fake_segment: FakeSegment) -> None:
    """--dry-run prints the exact request (method, URL, headers, body) with the write key redacted; sends nothing."""
    result = cli("track", *target(fake_segment), "--user-id", "u", "--event", "E", "--message-id", "dry-1",
                 "--dry-run")
    assert result.returncode == 0, result.stderr
    head, body_text = result.stdout.split("\n\n", 1)
    lines = head.splitlines()
    assert lines[0] == f"POST {fake_segment.url}/v1/batch HTTP/1.1"
    headers = dict(line.split(": ", 1) for line in lines[1:])
    assert headers["Authorization"] == "Basic ***"
    assert headers["Content-Type"] == "application/json"
    assert headers["User-Agent"] == f"simple_segment/{simple_segment.VERSION}"
    assert WRITE_KEY not in result.stdout
    body = json.loads(body_text)
    assert set(body) == {"batch", "sentAt", "writeKey"}
    assert body["writeKey"] == "***"
    assert body["batch"][0]["messageId"] == "dry-1"
    assert body["batch"][0]["event"] == "E"
    # The body printed is the compact JSON sent; Content-Length is the real body's (real key, 14 characters).
    assert int(headers["Content-Length"]) == len(body_text.strip().encode()) - len("***") + len(WRITE_KEY)
    assert fake_segment.requests == []


def test_dry_run_needs_no_key_and_still_validates() -> None:
    """--dry-run works without a write key, and still rejects an invalid call with exit 2."""
    ok = cli("identify", "--user-id", "u", "--dry-run", "--gzip")
    assert ok.returncode == 0, ok.stderr
    assert "Content-Encoding: gzip" in ok.stdout
    bad = cli("identify", "--dry-run")
    assert bad.returncode == 2
    assert one_line(bad.stderr)


def test_main_returns_status_instead_of_exiting(capsys: pytest.CaptureFixture[str]) -> None:
    """main() returns the exit status, also for --version and usage errors (what the console script exits with)."""
    assert main(["--version"]) == 0
    assert simple_segment.VERSION in capsys.readouterr().out
    assert main(["track", "--timeout", "x"]) == 2
    assert "--timeout" in capsys.readouterr().err


# -- import -----------------------------------------------------------------------


def test_import_100k_lines(tmp_path: Path) -> None:
    """100,000 lines: each delivered once, in batches within the limits, timestamps kept, summary printed."""
    path = tmp_path / "events.jsonl"
    with path.open("w") as out:
        for i in range(100_000):
            out.write(json.dumps({"type": "track", "userId": f"u{i % 97}", "event": "Backfilled",
                                  "properties": {"i": i}, "timestamp": "2020-05-06T07:08:09.123Z",
                                  "messageId": f"m-{i}"}) + "\n")
    with FakeSegment(max_messages=200_000) as server:
        result = cli("import", str(path), "--write-key", WRITE_KEY, "--host", server.url, timeout=120)
        assert result.returncode == 0, result.stderr
        requests_ = server.requests
        messages = server.messages
    assert len(messages) == 100_000
    assert len({m["messageId"] for m in messages}) == 100_000
    assert all(r.status == 200 for r in requests_)
    assert all(len(r.batch) <= 2500 and len(r.body) <= 500_000 for r in requests_)
    assert len(requests_) >= 40  # 100,000 / 2,500
    assert all(m["timestamp"] == "2020-05-06T07:08:09.123+00:00" for m in messages[::997])
    summary = result.stdout.strip()
    assert summary.startswith(f"delivered 100000 messages in {len(requests_)} requests (")
    assert f"({sum(len(r.body) for r in requests_)} bytes)" in summary
    assert "messages/s" in summary
    assert " s (" in summary
    assert "0 bad lines, 0 failed" in summary
    assert result.stderr == ""  # not a terminal: no progress bar


def test_import_reports_bad_lines_and_sends_the_rest(fake_segment: FakeSegment, tmp_path: Path) -> None:
    """Each kind of bad line is reported as 'line N: reason', the good lines still go, and the exit status is 2."""
    lines = [
        b'{"type": "track", "userId": "u", "event": "Good 1"}',
        b"{not json",
        b'{"type": "track", "userId": "u"}',  # no event: the library's validation
        b'{"type": "teleport", "userId": "u"}',
        b"[1, 2]",
        b"",
        b'{"type": "identify", "anonymousId": "a", "traits": {"x": 1}}',
        b'{"type": "track", "userId": "u", "event": "\xff"}',
        b'{"type": ["track"], "userId": "u"}',
        b'{"type": "track", "userId": "u", "event": "E", "colour": "red"}',
        b'{"type": "track", "userId": "u", "event": "E", "timestamp": "last week"}',
        b'{"type": "track", "userId": "u", "event": "E", "properties": {"x": NaN}}',
        b'{"type": "track", "userId": "u", "event": "E", "properties": {"x": "' + b"y" * 1_100_000 + b'"}}',
        b'{"type": "alias", "previousId": "p", "userId": "u", "timestamp": "2019-01-01T00:00:00Z"}',
    ]
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    result = cli("import", str(path), *target(fake_segment))
    assert result.returncode == 2
    reported = [line.split(":", 1)[0] for line in result.stderr.splitlines()]
    assert reported == [f"line {n}" for n in (2, 3, 4, 5, 8, 9, 10, 11, 12, 13)], result.stderr
    assert "line 3: event" in result.stderr
    assert "'colour'" in result.stderr
    assert "UTF-8" in result.stderr
    assert "Traceback" not in result.stderr
    assert [m["type"] for m in fake_segment.messages] == ["track", "identify", "alias"]
    assert fake_segment.messages[2]["timestamp"] == "2019-01-01T00:00:00.000+00:00"
    assert "delivered 3 messages" in result.stdout
    assert "10 bad lines" in result.stdout


def test_import_from_stdin(fake_segment: FakeSegment) -> None:
    """import - reads standard input (as UTF-8, a leading byte-order mark allowed)."""
    stdin = "\ufeff" + "\n".join(json.dumps({"type": "page", "userId": "u", "name": f"Pâge {i}"}) for i in range(5))
    result = cli("import", "-", *target(fake_segment), stdin=stdin)
    assert result.returncode == 0, result.stderr
    assert [m["name"] for m in fake_segment.messages] == [f"Pâge {i}" for i in range(5)]


def test_import_delivery_failure_keeps_going_and_exits_1(fake_segment: FakeSegment) -> None:
    """A request that fails for good is reported, later requests still go, and import exits 1."""
    fake_segment.respond_with(400)
    stdin = "".join(
        json.dumps({"type": "track", "userId": "u", "event": "E", "messageId": f"m-{i}"}) + "\n" for i in range(3000)
    )
    result = cli("import", "-", *target(fake_segment), stdin=stdin)
    assert result.returncode == 1
    delivered = len(fake_segment.messages)  # the requests after the failed first one
    assert len(fake_segment.requests) >= 2
    assert 0 < delivered < 3000
    assert result.stderr.startswith(f"error: {3000 - delivered} messages not delivered: [Segment]")
    assert "Traceback" not in result.stderr
    assert f"delivered {delivered} messages" in result.stdout
    assert f"{3000 - delivered} failed" in result.stdout


def test_import_dry_run_validates_and_sends_nothing(fake_segment: FakeSegment, tmp_path: Path) -> None:
    """import --dry-run checks every line, reports the bad ones and sends nothing."""
    path = tmp_path / "check.jsonl"
    path.write_text('{"type": "track", "userId": "u", "event": "E"}\n{"type": "track"}\n')
    result = cli("import", str(path), *target(fake_segment), "--dry-run")
    assert result.returncode == 2
    assert result.stderr.startswith("line 2:")
    assert "validated 1 messages from 2 lines" in result.stdout
    assert fake_segment.requests == []


def test_import_missing_file_is_a_usage_error(tmp_path: Path) -> None:
    """A file that cannot be read: exit 2 with one line."""
    result = cli("import", str(tmp_path / "absent.jsonl"), "--write-key", WRITE_KEY)
    assert result.returncode == 2
    assert one_line(result.stderr)
    assert "cannot read" in result.stderr


@pytest.mark.skipif(not POSIX, reason="needs a pseudo-terminal")
def test_import_progress_bar_on_a_terminal(fake_segment: FakeSegment, tmp_path: Path) -> None:
    """When stderr is a terminal, import draws a carriage-return progress bar there, ending at 100%."""
    import pty
    import select

    path = tmp_path / "events.jsonl"
    path.write_text("".join(json.dumps({"type": "track", "userId": "u", "event": f"E{i}"}) + "\n" for i in range(3000)))
    master, terminal = pty.openpty()
    with subprocess.Popen(
        [sys.executable, "-m", "simple_segment", "import", str(path), *target(fake_segment)],
        stdout=subprocess.PIPE, stderr=terminal, env=environment(),
    ) as proc:
        os.close(terminal)
        shown = b""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # Linux: the terminal closed
                    break
                if not chunk:
                    break
                shown += chunk
            elif proc.poll() is not None:
                break
        os.close(master)
        assert proc.wait(timeout=10) == 0
        assert proc.stdout is not None
        assert b"delivered 3000 messages" in proc.stdout.read()
    text = shown.decode()
    assert "\r[" in text
    assert "100%" in text
    assert "3,000 lines" in text


# -- serve and demo ---------------------------------------------------------------


def test_serve_prints_received_messages() -> None:
    """serve --port 0 prints its URL, then one readable line per message; SIGTERM ends it with exit 0."""
    with serving() as (proc, url, out, _):
        with simple_segment.Client(WRITE_KEY, host=url, timeout=5) as client:
            client.track("user-9", "Served Event", {"plan": "pro"})
            client.identify(anonymous_id="anon-3", traits={"email": "a@example.com"})
        line = out.next()
        assert "track" in line
        assert "Served Event" in line
        assert "user-9" in line
        assert '"plan": "pro"' in line
        line = out.next()
        assert "identify" in line
        assert "anon-3" in line
        proc.terminate()
        assert proc.wait(timeout=10) == 0


@pytest.mark.skipif(not POSIX, reason="SIGINT to a child process is POSIX")
def test_serve_json_and_rejections_then_ctrl_c() -> None:
    """serve --json prints each message as JSON, reports a rejected request on stderr, and exits 0 on Ctrl-C."""
    with serving("--json") as (proc, url, out, err):
        with simple_segment.Client(WRITE_KEY, host=url, timeout=5) as client:
            _, sent = client.page("user-1", "Docs", "Install")
        assert json.loads(out.next()) == json.loads(json.dumps(sent))
        answer = requests.post(f"{url}/v1/batch", data=b"{not json", auth=(WRITE_KEY, ""), timeout=5)
        assert answer.status_code == 400
        assert "answered 400" in err.until("rejected:")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0


def test_serve_busy_port_is_one_line(fake_segment: FakeSegment) -> None:
    """serve on a port already in use: exit 2 with one line, no traceback."""
    result = cli("serve", "--port", str(fake_segment.port), timeout=30)
    assert result.returncode == 2
    assert one_line(result.stderr)
    assert "cannot listen" in result.stderr


def test_demo_runs_offline_even_behind_a_proxy() -> None:
    """demo needs no account or network beyond loopback (a proxy in the environment is not used),
    shows each call with its time and what the server received, and the batch summary."""
    result = cli("demo", env={"HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9"})
    assert result.returncode == 0, result.stderr
    rows = {line.split()[0]: line for line in result.stdout.splitlines() if line.strip()}
    for name in ("identify", "track", "page", "screen", "group", "alias"):
        assert name in rows
        assert float(rows[name].split()[1]) >= 0  # the ms column
        assert rows[name].split()[2] == name  # the type the server recorded
    assert "Order Completed" in rows["track"]
    assert "anon-42 -> user-1" in rows["alias"]
    assert "batch of 1,000 track calls: 1000 messages in 1 request(s)" in result.stdout
    assert "server recorded 1006 messages" in result.stdout


# -- serve: JSON lines and control endpoints ------------------------------------------


def rest_of(lines: Lines, timeout: float = 10) -> list[str]:
    """Every line left in a finished child's stream (bounded by ``timeout``)."""
    deadline = time.monotonic() + timeout
    found: list[str] = []
    while (line := lines._queue.get(timeout=max(deadline - time.monotonic(), 0.01))) is not None:
        found.append(line)
    return found


def test_serve_json_stdout_is_only_messages() -> None:
    """serve --json writes nothing but accepted messages to stdout, one JSON object a line (so it pipes into jq);
    the URL, rejections and control requests stay off stdout."""
    with serving("--json") as (proc, url, out, err):
        with simple_segment.Client(WRITE_KEY, host=url, timeout=5) as client:
            _, first = client.track("user-1", "Served")
            assert requests.post(f"{url}/v1/batch", data=b"{bad", auth=(WRITE_KEY, ""), timeout=5).status_code == 400
            assert requests.get(f"{url}/_messages", timeout=5).status_code == 200
            _, second = client.identify("user-2", {"plan": "pro"})
        assert "answered 400" in err.until("rejected:")
        proc.terminate()
        assert proc.wait(timeout=10) == 0
        printed = rest_of(out)
    assert [json.loads(line) for line in printed] == json.loads(json.dumps([first, second]))


def test_serve_is_scripted_and_read_over_http() -> None:
    """A test in another process scripts serve with POST /_script, reads it with GET /_messages and /_requests,
    and resets it with POST /_clear."""
    with serving("--json") as (_, url, out, _):
        assert requests.post(f"{url}/_script", json={"status": 503, "times": 2}, timeout=5).status_code == 200
        with simple_segment.Client(WRITE_KEY, host=url, timeout=5, backoff_factor=0.01) as client:
            _, sent = client.track("user-1", "Retried")
        assert json.loads(out.next()) == json.loads(json.dumps(sent))
        messages = requests.get(f"{url}/_messages", timeout=5)
        assert messages.headers["Content-Type"] == "application/x-ndjson"
        assert [json.loads(line) for line in messages.text.splitlines()] == json.loads(json.dumps([sent]))
        statuses = [json.loads(line)["status"] for line in requests.get(f"{url}/_requests", timeout=5).text.splitlines()]
        assert statuses == [503, 503, 200]
        assert requests.post(f"{url}/_clear", timeout=5).status_code == 200
        assert requests.get(f"{url}/_messages", timeout=5).text == ""


# -- the request as sent: --gzip, --dry-run, and import's bad lines ----------------


def test_cli_gzip_sends_compressed_bodies(fake_segment: FakeSegment) -> None:
    """--gzip: the request carries Content-Encoding: gzip and a body that inflates to the message."""
    result = run("track", "--write-key", WRITE_KEY, "--host", fake_segment.url, "--gzip", "--user-id", "u",
                  "--event", "Zipped")
    assert result.returncode == 0, result.stderr
    (request,) = fake_segment.requests
    assert request.headers["content-encoding"] == "gzip"
    assert json.loads(gzip.decompress(request.body))["batch"][0]["event"] == "Zipped"


@pytest.mark.parametrize("compressed", [False, True])
def test_dry_run_prints_the_request_as_it_would_be_sent(fake_segment: FakeSegment, compressed: bool) -> None:
    """--dry-run shows the same request line and headers a real run sends (credentials redacted)."""
    flags = ["--gzip"] if compressed else []
    common = ["track", "--write-key", WRITE_KEY, "--user-id", "u", "--event", "E", "--message-id", "m-1", *flags]
    dry = run(*common, "--host", fake_segment.url, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    real = run(*common, "--host", fake_segment.url)
    assert real.returncode == 0, real.stderr
    (request,) = fake_segment.requests
    head, _, body = dry.stdout.decode().partition("\n\n")
    request_line, *header_lines = head.splitlines()
    assert request_line == f"POST {fake_segment.url}/v1/batch HTTP/1.1"
    shown = {name.lower(): value for name, _, value in (line.partition(": ") for line in header_lines)}
    assert shown.pop("authorization") == "Basic ***"
    sent = {k: v for k, v in request.headers.items() if k != "authorization"}
    if compressed:  # the size of compressed bytes depends on the timestamps of the moment
        assert abs(int(shown.pop("content-length")) - int(sent.pop("content-length"))) <= 8
    assert shown == sent
    assert WRITE_KEY not in dry.stdout.decode()
    printed = json.loads(body.splitlines()[0])
    received = request.json
    assert printed["batch"][0]["messageId"] == received["batch"][0]["messageId"] == "m-1"
    assert printed["writeKey"] == "***"
    if compressed:
        assert "gzip-compressed" in body


def test_import_reports_every_bad_line_and_delivers_the_rest(fake_segment: FakeSegment, tmp_path: Path) -> None:
    """import: lines 600 and 100,000 levels deep, invalid UTF-8 and bad JSON are reported; the rest go; exit 2."""
    lines = [
        b'{"type":"track","userId":"u","event":"First"}',
        b'{"type":"track","userId":"u","event":"Deep","properties":' + b'{"a":' * 600 + b"1" + b"}" * 600 + b"}",
        b'{"type":"track","userId":"u","event":"Deeper","properties":' + b'{"a":' * 100_000 + b"1"
        + b"}" * 100_000 + b"}",
        b"[" * 100_000,
        b'{"type":"track","userId":"\xff\xfe","event":"Bad UTF-8"}',
        b'{"type": "track", nope}',
        b'{"type":"track","userId":"u","event":"Last"}',
    ]
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    for source, stdin in ((str(path), None), ("-", path.read_bytes())):
        fake_segment.clear()
        result = run("import", source, "--write-key", WRITE_KEY, "--host", fake_segment.url, stdin=stdin)
        errors = result.stderr.decode()
        assert result.returncode == 2, errors
        for number in (2, 3, 4, 5, 6):
            assert f"line {number}: " in errors
        assert "Traceback" not in errors
        assert [m["event"] for m in fake_segment.messages] == ["First", "Last"]


# -- an interrupted import, and text from the server ------------------------------


@pytest.mark.skipif(not POSIX, reason="signals to a child process are POSIX")
@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_import_interrupted_mid_request_reports_it_and_how_to_resume(
    fake_segment: FakeSegment, tmp_path: Path, signum: signal.Signals, code: int
) -> None:
    """SIGINT or SIGTERM (what systemd and containers send) while a request is in flight: import exits
    130 or 143 with an exact summary (the request in flight is "sent, outcome unknown", not "not sent")
    and says from which line to resume and which lines lack a messageId."""
    fake_segment.respond_with(200)  # the first request (about 2,400 lines: 500 KB) is delivered
    fake_segment.respond_with(200, delay=60)  # the last one (the rest, up to line 2600) hangs until the signal
    path = tmp_path / "events.jsonl"
    with path.open("w") as out:
        for number in range(1, 2601):
            line = {"type": "track", "userId": "u", "event": "E"}
            if number != 2590:
                line["messageId"] = f"m-{number}"
            out.write(json.dumps(line) + "\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "simple_segment", "import", str(path), *target(fake_segment),
         "--timeout", "120", "--max-retries", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=environment(),
    )
    try:
        fake_segment.wait_for_requests(2, timeout=30)  # the second is recorded before its delay
        proc.send_signal(signum)
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)
    out_text, err_text = stdout.decode(), stderr.decode()
    assert proc.returncode == code, (out_text, err_text)
    name = signal.Signals(signum).name
    delivered = len(fake_segment.requests[0].batch)
    assert 2000 < delivered < 2590
    assert out_text.startswith(f"interrupted by {name} at line 2600: delivered {delivered} messages in 1 requests")
    assert f"{2600 - delivered} sent, outcome unknown (the request in flight); 0 read but not sent" in out_text
    assert "Traceback" not in err_text
    assert "every line was read and handed to a request: only the request in flight is in doubt" in err_text
    assert f"the request in flight held lines {delivered + 1}-2600" in err_text
    assert f"to be sure none is lost, send again from line {delivered + 1}" in err_text
    assert "1 of them have no messageId in the file" in err_text


@pytest.mark.skipif(not POSIX, reason="signals to a child process are POSIX")
def test_import_terminated_before_sending_counts_read_but_not_sent(fake_segment: FakeSegment) -> None:
    """SIGTERM while import waits for more input: the lines read are "read but not sent" (no request was
    in flight), nothing reaches the server, and the resume line is the first of them."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "simple_segment", "import", "-", *target(fake_segment)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=environment(),
    )
    try:
        assert proc.stdin is not None
        proc.stdin.write(b'{"type": "track", "userId": "u", "event": "E"}\nnot json\n')
        proc.stdin.flush()
        # The bad line's report proves both lines were read; stdin stays open.
        assert proc.stderr is not None
        assert proc.stderr.readline().startswith(b"line 2: not valid JSON")
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)
    assert proc.returncode == 143
    text = stdout.decode()
    assert text.startswith("interrupted by SIGTERM at line 2: delivered 0 messages in 0 requests"), text
    assert "1 bad lines, 0 failed; 0 sent, outcome unknown (the request in flight); 1 read but not sent" in text
    assert "send the input again from line 1" in stderr.decode()
    assert fake_segment.requests == []


HOSTILE = {"success": False, "message": "bad\nforged line \x1b[31mred\u202e", "code": "invalid_request"}


def test_server_text_is_one_line_with_controls_escaped(fake_segment: FakeSegment) -> None:
    """A 400 whose message holds a newline, an ANSI escape and a bidi override is printed on one line,
    each of them escaped (so the server can neither forge a line nor restyle the terminal)."""
    fake_segment.respond_with(400, body=HOSTILE)
    result = cli("track", "--user-id", "u", "--event", "E", *target(fake_segment))
    assert result.returncode == 1
    assert one_line(result.stderr), result.stderr
    assert "\x1b" not in result.stderr
    assert "\u202e" not in result.stderr
    assert "bad\\nforged line \\x1b[31mred\\u202e" in result.stderr


def test_import_error_reports_escape_server_text(fake_segment: FakeSegment) -> None:
    """import's report of a failed request escapes the server's text the same way."""
    fake_segment.respond_with(400, body=HOSTILE)
    result = cli("import", "-", *target(fake_segment), stdin='{"type": "track", "userId": "u", "event": "E"}\n')
    assert result.returncode == 1
    assert one_line(result.stderr), result.stderr
    assert "\x1b" not in result.stderr
    assert "bad\\nforged line \\x1b[31mred\\u202e" in result.stderr


def test_serve_keeps_the_newest_n_and_says_so() -> None:
    """serve --help states the 1,000-message retention and --keep; --keep 2 keeps the newest two, which
    GET /_messages pages through; a message's text is printed on one line with controls escaped."""
    help_text = cli("serve", "--help").stdout
    assert "last 1,000" in help_text
    assert "--keep N" in help_text
    assert cli("serve", "--keep", "0").returncode == 2
    with serving("--keep", "2") as (proc, url, out, _):
        with simple_segment.Client(WRITE_KEY, host=url, timeout=5) as client:
            for n in range(3):
                client.track("user-1", f"Event {n}\n\x1b[2Jforged")
        printed = [out.until(f"Event {n}") for n in range(3)]
        assert all("\\n\\x1b[2Jforged" in line and "\x1b" not in line for line in printed)
        first = requests.get(f"{url}/_messages", params={"limit": 1}, timeout=5)
        assert first.headers["X-Messages-Accepted"] == "3"
        assert [json.loads(line)["event"] for line in first.text.splitlines()] == ["Event 1\n\x1b[2Jforged"]
        rest = requests.get(f"{url}/_messages", params={"since": first.headers["X-Next-Since"]}, timeout=5)
        assert [json.loads(line)["event"] for line in rest.text.splitlines()] == ["Event 2\n\x1b[2Jforged"]
        proc.terminate()
        assert proc.wait(timeout=10) == 0


@pytest.mark.skipif(not POSIX, reason="signals to a child process are POSIX")
def test_import_terminated_while_the_first_request_is_in_flight(fake_segment: FakeSegment, tmp_path: Path) -> None:
    """SIGTERM while the first full request is in flight (lines still to read): its lines are "sent,
    outcome unknown", the line being read when it was sent is where to resume, with a tail command."""
    fake_segment.respond_with(200, delay=60)
    path = tmp_path / "with ids.jsonl"
    path.write_text("".join(
        json.dumps({"type": "track", "userId": "u", "event": "E", "messageId": f"m-{n}"}) + "\n" for n in range(5000)
    ))
    proc = subprocess.Popen(
        [sys.executable, "-m", "simple_segment", "import", str(path), *target(fake_segment), "--timeout", "120"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=environment(),
    )
    try:
        fake_segment.wait_for_requests(1, timeout=30)
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)
    assert proc.returncode == 143
    in_flight = len(fake_segment.requests[0].batch)
    resume = in_flight + 1
    out_text, err_text = stdout.decode(), stderr.decode()
    assert out_text.startswith(f"interrupted by SIGTERM at line {resume}: delivered 0 messages in 0 requests")
    assert f"{in_flight} sent, outcome unknown (the request in flight); 0 read but not sent" in out_text
    quoted = f"'{path}'"
    assert f"send {quoted} again from line {resume} (tail -n +{resume} {quoted} | simple-segment import -" in err_text
    assert f"the request in flight held lines 1-{in_flight}" in err_text
    assert "they all carry a messageId, so Segment de-duplicates any that arrived twice" in err_text
