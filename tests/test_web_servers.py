"""The middlewares on real servers: a Flask app under gunicorn, a Starlette app under uvicorn.

The module starts, as subprocesses: ``python -m simple_segment serve --json`` as the
Segment server, two gunicorns (2 sync workers each; one with ``--max-requests 4``: a
worker is replaced after every 4 requests) serving tests/web_apps/flask_site.py, and
uvicorn serving tests/web_apps/starlette_site.py.  Tests make HTTP requests, script the Segment server
over its control endpoints (``POST /_script``: a slow answer, a 400) and read what it
stored (``GET /_messages``).  Every wait is bounded; every process is ended in teardown.
The two explicit time bounds are the issue's: a response does not wait for a slow
Segment (2 s) with ``defer=True`` (under 1 s), and does without it (2 s or more).
"""

from __future__ import annotations

import json
import os
import re
import socket
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from processes import Process

pytestmark = pytest.mark.realservice  # tox runs these in one env: see tox.ini

APPS = Path(__file__).resolve().parent / "web_apps"
WRITE_KEY = "test-write-key"
WAIT = 20.0  # seconds: the longest any one wait may take
SLOW = 2.0  # seconds the scripted Segment takes to answer
_UNSET = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "all_proxy", "no_proxy",
          "PYTHONPATH", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")


@dataclass
class Servers:
    segment: str
    gunicorn: str
    recycling: str
    uvicorn: str
    gunicorn_process: Process
    recycling_process: Process
    http: requests.Session

    def script(self, **spec: Any) -> None:
        self.http.post(f"{self.segment}/_script", json=spec, timeout=5).raise_for_status()

    def messages(self, user: str) -> list[dict[str, Any]]:
        text = self.http.get(f"{self.segment}/_messages", timeout=5).text
        rows = [json.loads(line) for line in text.splitlines() if line]
        return [m for m in rows if m.get("userId") == user]

    def wait_messages(self, user: str, n: int) -> list[dict[str, Any]]:
        deadline = time.monotonic() + WAIT
        while True:
            found = self.messages(user)
            if len(found) >= n:
                return found
            if time.monotonic() > deadline:
                pytest.fail(f"{len(found)} of {n} messages of {user} arrived within {WAIT} s")
            time.sleep(0.05)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    directory = tmp_path_factory.mktemp("web")
    with ExitStack() as stack:

        def start(name: str, args: list[str], env: dict[str, str] | None = None) -> Process:
            process = Process(name, args, directory, env)
            stack.callback(process.stop)
            return process

        segment = start("segment", [sys.executable, "-m", "simple_segment", "serve", "--port", "0", "--json"])
        segment_url = segment.wait_for(r"listening on (\S+)").group(1)
        env = {name: value for name, value in os.environ.items() if name not in _UNSET}
        env.update(PYTHONPATH=str(APPS), PYTHONDONTWRITEBYTECODE="1", SEGMENT_WRITE_KEY=WRITE_KEY, SEGMENT_HOST=segment_url)
        gunicorn_args = [sys.executable, "-m", "gunicorn", "--workers", "2", "--worker-class", "sync",
                         "--bind", "127.0.0.1:0", "--log-level", "info"]
        # The timed tests use workers that are never replaced, so no request waits for one to boot.
        gunicorn = start("gunicorn", [*gunicorn_args, "flask_site:application"], env)
        recycling = start(
            "gunicorn-recycling",
            [*gunicorn_args, "--max-requests", "4", "--max-requests-jitter", "0", "flask_site:application"],
            env,
        )
        port = _free_port()
        uvicorn = start(
            "uvicorn",
            [sys.executable, "-m", "uvicorn", "starlette_site:app", "--host", "127.0.0.1", "--port", str(port),
             "--no-access-log"],
            env,
        )
        gunicorn_url = gunicorn.wait_for(r"Listening at: (http://\S+)").group(1)
        recycling_url = recycling.wait_for(r"Listening at: (http://\S+)").group(1)
        uvicorn_url = uvicorn.wait_for(r"Uvicorn running on (http://\S+)").group(1)
        for process in (gunicorn, recycling):
            process.wait_for(r"Booting worker with pid(?s:.*)Booting worker with pid")
        http = stack.enter_context(requests.Session())
        http.trust_env = False
        yield Servers(segment_url, gunicorn_url, recycling_url, uvicorn_url, gunicorn, recycling, http)


@pytest.fixture
def user(servers: Servers) -> str:
    """A fresh Segment server (no messages, no scripts) and a user id of this test's own."""
    servers.http.post(f"{servers.segment}/_clear", timeout=5).raise_for_status()
    return f"user-{uuid.uuid4().hex[:8]}"


HEADERS = {"User-Agent": "web-tests/1.0", "Accept-Language": "sv-SE,sv;q=0.8", "Referer": "https://ref.example/x"}


def timed_get(servers: Servers, url: str) -> tuple[float, dict[str, Any]]:
    start = time.monotonic()
    response = servers.http.get(url, headers=HEADERS, timeout=WAIT)
    elapsed = time.monotonic() - start
    response.raise_for_status()
    return elapsed, response.json()


def test_gunicorn_context_on_every_message_and_none_lost_across_recycling(servers: Servers, user: str) -> None:
    """30 requests of 3 calls each while workers are replaced every 4 requests: all 90 arrive, each with context."""
    ids: list[str] = []
    pids: set[int] = set()
    path = f"/track?user={user}&n=3"
    for _ in range(30):
        _, answer = timed_get(servers, servers.recycling + path)
        ids.extend(answer["ids"])
        pids.add(answer["pid"])
    messages = servers.wait_messages(user, 90)
    assert sorted(m["messageId"] for m in messages) == sorted(ids)
    assert len(pids) >= 6, f"workers were not recycled: pids {pids}"
    for message in messages:
        context = message["context"]
        assert context["ip"] == "127.0.0.1"
        assert context["userAgent"] == "web-tests/1.0"
        assert context["locale"] == "sv-SE"
        assert context["page"] == {
            "url": servers.recycling + path, "path": "/track", "search": f"?user={user}&n=3",
            "referrer": "https://ref.example/x",
        }
    assert len(re.findall("Autorestarting worker", servers.recycling_process.output())) >= 5


def test_gunicorn_response_does_not_wait_for_a_slow_segment(servers: Servers, user: str) -> None:
    """Segment answers in 2 s: the deferred response comes back in under 1 s, the inline one takes 2 s or more."""
    servers.script(delay=SLOW, times=2)
    deferred, answer = timed_get(servers, f"{servers.gunicorn}/track?user={user}&n=2")
    inline, inline_answer = timed_get(servers, f"{servers.gunicorn}/inline/track?user={user}&n=1")
    assert deferred < 1.0, f"the deferred response took {deferred:.2f} s"
    assert inline >= SLOW, f"the inline response took {inline:.2f} s"
    messages = servers.wait_messages(user, 3)
    assert sorted(m["messageId"] for m in messages) == sorted(answer["ids"] + inline_answer["ids"])
    inline_page = next(m for m in messages if m["messageId"] == inline_answer["ids"][0])["context"]["page"]
    assert inline_page["path"] == "/inline/track"


def test_gunicorn_failure_after_the_response_reaches_the_log_and_on_error(servers: Servers, user: str) -> None:
    """A 400 after the response: ERROR log with the count and messageIds; with on_error, on_error gets them."""
    servers.script(status=400, times=1)
    _, answer = timed_get(servers, f"{servers.gunicorn}/track?user={user}&n=2")
    line = servers.gunicorn_process.wait_for(r"ERROR simple_segment: delivery after the response failed: .*").group(0)
    assert "2 messages not delivered" in line
    assert all(i in line for i in answer["ids"])
    servers.script(status=400, times=1)
    _, answer = timed_get(servers, f"{servers.gunicorn}/on-error/track?user={user}&n=2")
    servers.gunicorn_process.wait_for("ON_ERROR " + " ".join(answer["ids"]))
    assert servers.messages(user) == []


def test_uvicorn_async_handler_and_loop_not_blocked_while_a_delivery_waits(servers: Servers, user: str) -> None:
    """An async handler's response is back in under 1 s while Segment takes 2 s; the loop keeps ticking meanwhile."""
    servers.http.get(f"{servers.uvicorn}/lag", timeout=5).raise_for_status()  # reset the loop watcher
    servers.script(delay=SLOW, times=1)
    path = f"/track?user={user}&n=3"
    elapsed, answer = timed_get(servers, servers.uvicorn + path)
    assert elapsed < 1.0, f"the response took {elapsed:.2f} s"
    lags = []
    deadline = time.monotonic() + SLOW + 0.5
    while time.monotonic() < deadline:  # during and just after the delivery's wait
        took, lag = timed_get(servers, f"{servers.uvicorn}/lag")
        assert took < 1.0
        lags.append(lag["lag"])
        time.sleep(0.2)
    assert max(lags) < 0.5, f"the event loop was blocked: lags {lags}"
    messages = servers.wait_messages(user, 3)
    assert sorted(m["messageId"] for m in messages) == sorted(answer["ids"])
    for message in messages:
        assert message["context"]["ip"] == "127.0.0.1"
        assert message["context"]["page"]["url"] == servers.uvicorn + path
        assert message["context"]["locale"] == "sv-SE"
