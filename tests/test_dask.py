"""``simple_segment.integrations.dask.send`` on a real Dask LocalCluster with worker processes.

The module starts ``python -m simple_segment serve --json`` as the Segment server (a
process of its own) and a ``LocalCluster(n_workers=2, processes=True)``; every test
reads what the server stored over its control endpoints.  The promise under test:
each row is stored under one messageId, however often its partition ran (a killed
worker, a lost reply, the whole job run again), and that id is the n-th id of
``stable_ids(f"{seed}:{partition}")``.

Needs Dask (``pip install 'simple-segment[dask]'``, in the test extra): without it
these tests fail, they never skip.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

import simple_segment
from simple_segment._ids import STABLE_IDS_NAMESPACE
from simple_segment.backfill import BackfillSummary, InvalidRow

try:
    import dask
    import dask.bag as db
    import dask.dataframe as dd
    import pandas as pd
    from distributed import Client as DaskClient
    from distributed import LocalCluster

    from simple_segment.integrations.dask import send
except ImportError as exc:  # pragma: no cover - said loudly, never skipped
    pytest.fail(f"these tests need Dask: pip install 'simple-segment[dask]' ({exc})", pytrace=False)

WRITE_KEY = "dask-write-key"
WAIT = 30.0  # seconds: the longest any one wait of these tests may take
_PROXY_VARIABLES = [name for name in os.environ if name.upper().endswith("_PROXY")]


@dataclass
class Setup:
    server_url: str
    http: requests.Session
    dask: DaskClient


def _wait_for_url(log: Path, process: subprocess.Popen[bytes]) -> str:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        text = log.read_text(encoding="utf-8", errors="replace")
        for line in text.splitlines():
            if line.startswith("listening on "):
                return line.split()[2]
        if process.poll() is not None:
            pytest.fail(f"simple-segment serve exited ({process.returncode}):\n{text}")
        time.sleep(0.05)
    pytest.fail(f"simple-segment serve printed no URL within {WAIT} s")


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    directory = tmp_path_factory.mktemp("dask")
    with ExitStack() as stack, pytest.MonkeyPatch.context() as patch:
        for name in _PROXY_VARIABLES:  # the workers inherit this environment: loopback must not go to a proxy
            patch.delenv(name)
        log = directory / "serve.log"
        with log.open("wb") as out:
            server = subprocess.Popen(
                [sys.executable, "-m", "simple_segment", "serve", "--port", "0", "--json"],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=out, start_new_session=True,
            )

        def stop_server() -> None:
            with suppress(ProcessLookupError):
                os.killpg(server.pid, signal.SIGKILL)
            server.wait(5)

        stack.callback(stop_server)
        url = _wait_for_url(log, server)
        cluster = stack.enter_context(
            LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
        )
        client = stack.enter_context(DaskClient(cluster))
        http = stack.enter_context(requests.Session())
        http.trust_env = False
        yield Setup(url, http, client)


@pytest.fixture
def server(setup: Setup) -> Setup:
    """The module's server, with no messages and no scripts."""
    setup.http.post(f"{setup.server_url}/_clear", timeout=5).raise_for_status()
    return setup


def script(setup: Setup, **spec: Any) -> None:
    setup.http.post(f"{setup.server_url}/_script", json=spec, timeout=5).raise_for_status()


def stored(setup: Setup) -> list[dict[str, Any]]:
    """Every message the server stored since the last clear, oldest first (copies included)."""
    answer = setup.http.get(f"{setup.server_url}/_messages", timeout=5)
    answer.raise_for_status()
    messages = [json.loads(line) for line in answer.text.splitlines()]
    assert int(answer.headers["X-Messages-Accepted"]) == len(messages)  # serve forgot none (it keeps 1,000)
    return messages


def requests_received(setup: Setup) -> int:
    answer = setup.http.get(f"{setup.server_url}/_requests", timeout=5)
    answer.raise_for_status()
    return int(answer.headers["X-Requests-Received"])


def stable_id(seed: str, partition: int, n: int) -> str:
    return str(uuid.uuid5(STABLE_IDS_NAMESPACE, f"{seed}:{partition}:{n}"))


def rows(count: int, prefix: str = "u") -> list[dict[str, Any]]:
    return [
        {"type": "track", "userId": f"{prefix}{i}", "event": "Order Completed", "properties": {"i": i},
         "timestamp": "2024-05-06T07:08:09Z"}
        for i in range(count)
    ]


def ids_by_user(messages: list[dict[str, Any]]) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for msg in messages:
        found.setdefault(msg.get("userId") or msg.get("anonymousId"), set()).add(msg["messageId"])
    return found


def assert_each_row_once(messages: list[dict[str, Any]], users: list[str]) -> dict[str, set[str]]:
    found = ids_by_user(messages)
    assert sorted(found) == sorted(users)
    assert {user: ids for user, ids in found.items() if len(ids) != 1} == {}
    return found


def expected_ids(seed: str, partitions: list[list[dict[str, Any]]]) -> dict[str, set[str]]:
    return {
        row["userId"]: {stable_id(seed, p, n)} for p, part in enumerate(partitions) for n, row in enumerate(part)
    }


def test_importing_simple_segment_imports_no_dask() -> None:
    """The extra stays optional: a fresh interpreter importing simple_segment loads no Dask."""
    code = "import sys, simple_segment, simple_segment.backfill; print(sorted(m for m in sys.modules if 'dask' in m))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=WAIT, check=True)
    assert done.stdout.strip() == "[]"


def test_every_row_is_delivered_once_under_its_partitions_stable_id(server: Setup) -> None:
    """Six partitions on two worker processes: each row stored once, its id the n-th of seed:partition."""
    data = rows(600)
    data[250] = {"type": "track", "userId": "bad"}  # no event: reported, the others still go
    bag = db.from_sequence(data, npartitions=6)
    partitions = [list(part) for part in dask.compute(*bag.to_delayed(), scheduler="sync")]
    summary = send(bag, write_key=WRITE_KEY, host=server.server_url, seed="orders")
    assert isinstance(summary, BackfillSummary)
    assert (summary.partitions, summary.rows, summary.messages, summary.failed) == (6, 600, 599, ())
    assert summary.requests == 6
    [bad] = summary.invalid
    where = next((p, n) for p, part in enumerate(partitions) for n, row in enumerate(part) if row["userId"] == "bad")
    assert (bad.partition, bad.row) == where
    assert str(bad).startswith(f"partition {where[0]} row {where[1]}: ")
    assert "event" in bad.reason
    messages = stored(server)
    expected = expected_ids("orders", partitions)
    del expected["bad"]
    assert assert_each_row_once(messages, list(expected)) == expected
    assert {m["timestamp"] for m in messages} == {"2024-05-06T07:08:09.000+00:00"}


def test_a_rerun_of_the_whole_job_sends_the_same_ids(server: Setup) -> None:
    """The same job run twice: every row stored twice under one id, so Segment keeps one."""
    bag = db.from_sequence(rows(300), npartitions=4)
    first = send(bag, write_key=WRITE_KEY, host=server.server_url, seed="rerun")
    ids = assert_each_row_once(stored(server), [f"u{i}" for i in range(300)])
    second = send(bag, write_key=WRITE_KEY, host=server.server_url, seed="rerun")
    assert first == second
    messages = stored(server)
    assert len(messages) == 600
    assert assert_each_row_once(messages, [f"u{i}" for i in range(300)]) == ids


def test_a_worker_killed_mid_run_leaves_no_row_under_two_ids(server: Setup) -> None:
    """SIGKILL a worker process while its partition's request is stored but unanswered: Dask runs it again."""
    users = [f"k{i}" for i in range(800)]
    bag = db.from_sequence(rows(800, "k"), npartitions=8)
    script(server, status=200, delay=1.5, times=4)  # the first requests are stored, then answered slowly
    pids = server.dask.run(os.getpid)
    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(
            send, bag, write_key=WRITE_KEY, host=server.server_url, seed="killed", timeout=10, max_retries=0
        )
        deadline = time.monotonic() + WAIT
        while requests_received(server) < 2 and time.monotonic() < deadline:  # both workers are mid-request
            time.sleep(0.05)
        assert requests_received(server) >= 2
        victim = next(iter(pids.values()))
        os.kill(victim, signal.SIGKILL)
        summary = running.result(timeout=WAIT * 2)
    assert (summary.messages, summary.failed, summary.invalid) == (800, (), ())  # each partition's final run once
    messages = stored(server)
    assert len(messages) > 800  # the killed worker's partition was stored, then sent again
    assert_each_row_once(messages, users)


def test_a_lost_reply_leaves_no_row_under_two_ids(server: Setup) -> None:
    """The server stores a request and answers after the client gave up: reported failed; a re-run fixes it."""
    users = [f"l{i}" for i in range(400)]
    bag = db.from_sequence(rows(400, "l"), npartitions=4)
    script(server, status=200, delay=3, times=1)
    options = {"write_key": WRITE_KEY, "host": server.server_url, "seed": "lost", "timeout": 0.5, "max_retries": 0}
    first = send(bag, **options)
    assert len(first.failed) == 100  # one partition's request, reported rather than raised
    assert first.messages == 300
    assert len(stored(server)) == 400  # ...although the server had stored it
    second = send(bag, **options)
    assert (second.messages, second.failed) == (400, ())
    found = assert_each_row_once(stored(server), users)
    assert set(first.failed) <= {next(iter(ids)) for ids in found.values()}


def test_a_dataframe_with_json_strings_nan_and_nat(server: Setup) -> None:
    """Columns in wire names; NaN/NaT are absent; JSON strings and dicts are objects; datetimes kept."""
    frame = pd.DataFrame({
        "type": ["track", "identify", "track", "page", None],
        "userId": ["d0", "d1", None, "d3", "d4"],
        "anonymousId": [None, None, "d2", None, None],
        "event": ["Played", None, "Paused", None, None],
        "name": [None, None, None, "Home", None],
        "properties": ['{"song": "a"}', None, '{"song": "b"}', None, None],
        "traits": [None, '{"plan": "pro"}', None, None, None],
        "timestamp": pd.to_datetime(["2024-01-02T03:04:05Z", None, "2024-01-02T03:04:06Z", None, None], utc=True),
    })
    summary = send(dd.from_pandas(frame, npartitions=2), write_key=WRITE_KEY, host=server.server_url, seed="frame")
    assert (summary.rows, summary.messages, summary.failed) == (5, 4, ())
    assert [bad.reason for bad in summary.invalid] == ["type None is not one of identify, track, page, screen, group, alias"]
    found = {m.get("userId") or m["anonymousId"]: m for m in stored(server)}
    assert sorted(found) == ["d0", "d1", "d2", "d3"]
    assert found["d0"]["properties"] == {"song": "a"}
    assert found["d0"]["timestamp"] == "2024-01-02T03:04:05.000+00:00"
    assert "anonymousId" not in found["d0"]
    assert found["d1"]["traits"] == {"plan": "pro"}
    assert found["d1"]["timestamp"] != "NaT"
    assert found["d2"]["anonymousId"] == "d2"
    assert "userId" not in found["d2"]
    assert found["d3"]["name"] == "Home"
    assert found["d3"]["properties"] == {}


def test_a_dataframe_of_dicts(server: Setup) -> None:
    """Nested fields as dicts work where Dask keeps object columns as objects."""
    with dask.config.set({"dataframe.convert-string": False}):
        frame = dd.from_pandas(
            pd.DataFrame({"type": ["track"] * 3, "userId": ["o0", "o1", "o2"], "event": ["E"] * 3,
                          "properties": [{"n": 0}, {"n": 1}, {"n": 2}]}),
            npartitions=2,
        )
        summary = send(frame, write_key=WRITE_KEY, host=server.server_url, seed="dicts")
    assert (summary.messages, summary.invalid) == (3, ())
    assert sorted(m["properties"]["n"] for m in stored(server)) == [0, 1, 2]


@pytest.mark.parametrize("scheduler", ["sync", "threads", "processes"])
def test_local_schedulers(server: Setup, scheduler: str) -> None:
    """Without the cluster: the same ids from Dask's local schedulers."""
    bag = db.from_sequence(rows(30), npartitions=3)
    with dask.config.set(scheduler=scheduler):
        summary = send(bag, write_key=WRITE_KEY, host=server.server_url, seed="local")
    assert (summary.partitions, summary.messages) == (3, 30)
    partitions = [list(part) for part in dask.compute(*bag.to_delayed(), scheduler="sync")]
    assert ids_by_user(stored(server)) == expected_ids("local", partitions)


def test_bad_options_raise_before_anything_runs(server: Setup) -> None:
    """A bad client option is the caller's to fix: raised once, at the call, nothing sent."""
    with pytest.raises(simple_segment.ConfigurationError):
        send(db.from_sequence(rows(3)), write_key=WRITE_KEY, host=server.server_url, seed="x", timeout=-1)
    with pytest.raises(TypeError, match=r"dask\.bag\.Bag"):
        send(rows(3), write_key=WRITE_KEY, seed="x")
    assert stored(server) == []


def test_invalid_row_reads_like_an_import_report() -> None:
    assert str(InvalidRow(3, 17, "no event")) == "partition 3 row 17: no event"
