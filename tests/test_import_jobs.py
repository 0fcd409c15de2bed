"""``simple-segment import --jobs N [--seed] [--resume]``, run as a subprocess against a FakeSegment.

Every test reads what the server stored: each line's event must be there under one
messageId only, however often the import ran, and a resumed run must not send again
what the last one delivered.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from conftest import WRITE_KEY

from simple_segment._ids import STABLE_IDS_NAMESPACE
from simple_segment.testing import FakeSegment

WAIT = 60.0  # seconds any one import may take


def write_lines(path: Path, count: int, *, bad: tuple[int, ...] = ()) -> Path:
    with path.open("w", encoding="utf-8") as out:
        for i in range(1, count + 1):
            if i in bad:
                out.write("{not json\n")
            else:
                out.write(json.dumps({"type": "track", "userId": f"u{i}", "event": "Backfilled", "properties": {"i": i}}))
                out.write("\n")
    return path


def environment() -> dict[str, str]:
    environ = {k: v for k, v in os.environ.items() if not k.upper().endswith("_PROXY")}
    environ.pop("SEGMENT_WRITE_KEY", None)
    environ.pop("SEGMENT_HOST", None)
    return environ


def command(server: FakeSegment, path: Path, *flags: str) -> list[str]:
    return [
        sys.executable, "-m", "simple_segment", "import", "--write-key", WRITE_KEY, "--host", server.url,
        "--max-retries", "0", str(path), *flags,
    ]


def run_import(server: FakeSegment, path: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command(server, path, *flags), capture_output=True, text=True, env=environment(), timeout=WAIT, check=False
    )


def ids_by_user(messages: list[dict[str, Any]]) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for msg in messages:
        found.setdefault(msg["userId"], set()).add(msg["messageId"])
    return found


def assert_each_line_once(server: FakeSegment, count: int, *, missing: tuple[int, ...] = ()) -> dict[str, set[str]]:
    found = ids_by_user(server.messages)
    assert sorted(found) == sorted(f"u{i}" for i in range(1, count + 1) if i not in missing)
    assert {user: ids for user, ids in found.items() if len(ids) != 1} == {}
    return found


def test_jobs_deliver_each_line_once_and_a_rerun_sends_the_same_ids(fake_segment: FakeSegment, tmp_path: Path) -> None:
    """Two workers deliver every line; a run with three workers over the file sends the same ids again."""
    path = write_lines(tmp_path / "events.jsonl", 6000)
    first = run_import(fake_segment, path, "--jobs", "2")
    assert first.returncode == 0, first.stderr
    assert "delivered 6000 messages" in first.stdout
    assert "with 2 jobs" in first.stdout
    ids = assert_each_line_once(fake_segment, 6000)
    again = run_import(fake_segment, path, "--jobs", "3")
    assert again.returncode == 0, again.stderr
    assert "with 3 jobs" in again.stdout
    assert len(fake_segment.messages) == 12000  # sent twice...
    assert assert_each_line_once(fake_segment, 6000) == ids  # ...under the same ids: Segment keeps one


def test_line_ids_follow_the_seed_and_line_number(fake_segment: FakeSegment, tmp_path: Path) -> None:
    """Line N's id is stable_ids(f"{seed}:{N}")'s first; a line's own messageId wins; bad lines are reported."""
    path = write_lines(tmp_path / "events.jsonl", 40, bad=(7,))
    with path.open("a", encoding="utf-8") as out:
        out.write(json.dumps({"type": "identify", "userId": "own", "messageId": "my-own-id"}) + "\n")
    done = run_import(fake_segment, path, "--jobs", "2", "--seed", "orders-2024")
    assert done.returncode == 2, done.stderr  # a bad line: exit status 2, the rest delivered
    assert "line 7: not valid JSON" in done.stderr
    found = ids_by_user(fake_segment.messages)
    assert found.pop("own") == {"my-own-id"}
    assert found == {
        f"u{n}": {str(uuid.uuid5(STABLE_IDS_NAMESPACE, f"orders-2024:{n}:0"))} for n in range(1, 41) if n != 7
    }


def test_a_failed_run_resumes_where_it_stopped(fake_segment: FakeSegment, tmp_path: Path) -> None:
    """A request refused (400) stops its worker; --resume sends only the rest, under the same ids."""
    path = write_lines(tmp_path / "events.jsonl", 10000)
    state = tmp_path / "state.json"
    fake_segment.respond_with(200, times=2)  # two requests go through, the third is refused
    fake_segment.respond_with(400, times=1)
    first = run_import(fake_segment, path, "--jobs", "2", "--state", str(state))
    assert first.returncode == 1, first.stderr
    assert "run again with --resume" in first.stdout
    stored_first = len(fake_segment.messages)
    assert 0 < stored_first < 10000
    resumed = run_import(fake_segment, path, "--jobs", "2", "--resume", "--state", str(state))
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed," in resumed.stdout
    assert_each_line_once(fake_segment, 10000)
    sent_again = len(fake_segment.messages) - stored_first
    assert sent_again < 10000  # what the first run delivered was skipped
    assert len(fake_segment.messages) - 10000 < 2500  # at most the refused request's worth twice
    nothing = run_import(fake_segment, path, "--resume", "--state", str(state))
    assert nothing.returncode == 0, nothing.stderr
    assert "nothing left to send" in nothing.stdout


@pytest.mark.skipif(sys.platform == "win32", reason="process groups, SIGINT and SIGTERM are POSIX")
@pytest.mark.parametrize(("signum", "group", "status"), [(signal.SIGINT, True, 130), (signal.SIGTERM, False, 143)])
def test_an_interrupted_run_resumes_without_duplicates(
    fake_segment: FakeSegment, tmp_path: Path, signum: int, group: bool, status: int
) -> None:
    """Ctrl-C (SIGINT to the group), or SIGTERM to the command alone, mid-run saves the state; --resume completes."""
    path = write_lines(tmp_path / "events.jsonl", 12000)
    fake_segment.respond_with(200, delay=1.0, times=6)  # slow answers: the run is still going when stopped
    process = subprocess.Popen(
        command(fake_segment, path, "--jobs", "2"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment(), start_new_session=True,
    )
    try:
        deadline = time.monotonic() + WAIT
        while len(fake_segment.messages) < 2500 and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.05)
        time.sleep(1.5)  # the first request's answer arrives: something is delivered before the stop
        if group:
            os.killpg(process.pid, signum)
        else:
            process.send_signal(signum)  # the workers are told by the command
        out, err = process.communicate(timeout=WAIT)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(5)
    assert process.returncode == status, (out, err)
    assert "not finished: run again with --resume" in out
    stored_first = len(fake_segment.messages)
    assert 2500 <= stored_first < 12000
    resumed = run_import(fake_segment, path, "--jobs", "2", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    skipped = int(resumed.stdout.split("resumed, ")[1].split(" lines")[0])
    assert skipped >= 2500
    assert_each_line_once(fake_segment, 12000)  # both runs together: every line, under one id
    # The resumed run sent what was not delivered: at most the requests in flight at the stop came twice.
    assert len(fake_segment.messages) - stored_first == 12000 - skipped
    assert len(fake_segment.messages) <= 12000 + 2 * 2500


def test_resume_refuses_a_changed_file(fake_segment: FakeSegment, tmp_path: Path) -> None:
    """Another file (or the same one changed) under the state's name is refused: its lines are other events."""
    path = write_lines(tmp_path / "events.jsonl", 10)
    assert run_import(fake_segment, path, "--jobs", "1").returncode == 0
    write_lines(path, 11)
    refused = run_import(fake_segment, path, "--resume")
    assert refused.returncode == 2
    assert "is not the file the state file" in refused.stderr
    assert len(fake_segment.messages) == 10


def test_jobs_need_a_file(fake_segment: FakeSegment, tmp_path: Path) -> None:
    """Standard input cannot be split or resumed; --jobs below 0 is refused."""
    for flags in (["-", "--jobs", "2"], [str(tmp_path / "x"), "--jobs", "-1"]):
        done = subprocess.run(
            [sys.executable, "-m", "simple_segment", "import", "--write-key", "k", "--host", fake_segment.url, *flags],
            capture_output=True, text=True, env=environment(), timeout=WAIT, check=False, input="",
        )
        assert done.returncode == 2, done.stderr
        assert "error:" in done.stderr


def test_position_id_is_uuid5_of_the_scope_and_position() -> None:
    """The fast id is exactly what uuid.uuid5 (and so stable_ids) gives."""
    from simple_segment._backfill import position_id

    for scope, n in [("a", 0), ("file-0123:12", 5), ("é ü", 99), ("x" * 300, 10**12)]:
        assert position_id(scope, n) == str(uuid.uuid5(STABLE_IDS_NAMESPACE, f"{scope}:{n}"))


def test_backfill_public_surface() -> None:
    """The engine-neutral names import from simple_segment.backfill and say so."""
    from simple_segment import backfill

    assert sorted(backfill.__all__) == ["BackfillSummary", "InvalidRow", "PartitionSummary", "send_partition"]
    for name in backfill.__all__:
        assert getattr(backfill, name).__module__ == "simple_segment.backfill"
        assert "Since: 0.2.0" in (getattr(backfill, name).__doc__ or "")


def test_send_partition_reports_instead_of_raising(fake_segment: FakeSegment) -> None:
    """A refused request's rows are in .failed and a bad row in .invalid; nothing raises; ids follow positions."""
    from simple_segment.backfill import send_partition

    fake_segment.respond_with(400, times=1)
    rows = [{"type": "track", "userId": f"p{i}", "event": "E"} for i in range(3)] + [{"type": "track"}]
    summary = send_partition(rows, write_key=WRITE_KEY, host=fake_segment.url, seed="s", partition=7, max_retries=0)
    expected = [str(uuid.uuid5(STABLE_IDS_NAMESPACE, f"s:7:{n}")) for n in range(3)]
    assert (summary.partition, summary.rows, summary.messages) == (7, 4, 0)
    assert list(summary.failed) == expected
    assert [str(bad) for bad in summary.invalid] == ["partition 7 row 3: " + summary.invalid[0].reason]
    again = send_partition(rows[:3], write_key=WRITE_KEY, host=fake_segment.url, seed="s", partition=7)
    assert again.messages == 3
    assert [m["messageId"] for m in fake_segment.messages] == expected


def test_split_cuts_at_line_starts_and_numbers_lines(tmp_path: Path) -> None:
    """The parts cover the file without gap or overlap, start at line starts and know their first line."""
    import itertools
    import random

    from simple_segment._import_jobs import _Piece, _split

    generator = random.Random(7)
    for case in range(60):
        lines = [b"x" * generator.randrange(0, 40) for _ in range(generator.randrange(0, 30))]
        data = b"\n".join(lines) + (b"\n" if generator.random() < 0.5 else b"")
        path = tmp_path / f"f{case}"
        path.write_bytes(data)
        starts = {0} | {i + 1 for i, byte in enumerate(data) if byte == 10}
        for jobs in (1, 2, 3, 7):
            with path.open("rb") as handle:
                shares = _split(handle, [_Piece(0, len(data), 1)], jobs)
            pieces = [piece for share in shares for piece in share]
            assert len(shares) <= jobs
            assert [p.start for p in pieces] == sorted(p.start for p in pieces)
            assert (pieces[0].start if pieces else 0, pieces[-1].end if pieces else len(data)) == (0, len(data))
            for before, after in itertools.pairwise(pieces):
                assert before.end == after.start
            for piece in pieces:
                assert piece.start in starts
                assert piece.first == data[: piece.start].count(b"\n") + 1


def test_the_backfill_tables_match_the_builders() -> None:
    """_backfill's call and wire tables (shared by import, Dask, Spark) are the CLI's, read from the builders."""
    from simple_segment import _backfill
    from simple_segment._cli.calls import CALL_ARGS, FIELDS

    assert {call: set(names) for call, names in _backfill.CALL_ARGS.items()} == {
        call: set(names) for call, names in CALL_ARGS.items()
    }
    assert {field.wire: name for name, field in FIELDS.items()} == _backfill.WIRE_ARGS
