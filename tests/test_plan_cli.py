"""``simple-segment plan check``, ``plan codegen`` and ``import --plan``, run as real subprocesses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import WRITE_KEY

from simple_segment.testing import FakeSegment

PLAN = str(Path(__file__).resolve().parent.parent / "examples" / "tracking_plan.json")

GOOD = {"type": "track", "event": "Signed Up", "userId": "u1", "properties": {"plan": "pro"}}
BAD_ORDER = {
    "type": "track", "event": "Order Completed", "userId": "u2",
    "properties": {"order_id": "o", "currency": "JPY", "products": [{"sku": "a", "price": 1}, {"sku": "b"}]},
}
BAD_IDENTIFY = {"type": "identify", "userId": "u3", "traits": {"email": "not-an-email"}}
UNPLANNED = {"type": "track", "event": "Mystery", "userId": "u4"}


def lines(*messages: object) -> str:
    return "".join((m if isinstance(m, str) else json.dumps(m)) + "\n" for m in messages)


def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.upper().endswith("_PROXY")}
    return subprocess.run(
        [sys.executable, "-m", "simple_segment", *args],
        input=stdin, capture_output=True, text=True, env=env, timeout=60, check=False,
    )


def test_check_prints_each_violation_by_line_and_a_summary_by_rule(tmp_path: Path) -> None:
    data = tmp_path / "events.jsonl"
    data.write_text(lines(GOOD, BAD_ORDER, "", BAD_IDENTIFY, UNPLANNED))
    done = run("plan", "check", "--plan", PLAN, str(data))
    assert done.returncode == 1, done.stderr
    assert done.stdout.splitlines() == [
        "line 2: properties.total: 'total' is a required property",
        "line 2: properties.currency: 'JPY' is not one of ['USD', 'EUR', 'GBP']",
        "line 2: properties.products[1].price: 'price' is a required property",
        "line 4: traits.email: 'not-an-email' is not a 'email'",
        "4 messages, 2 with violations (4 violations); by rule: IDENTIFY: 1, Order Completed: 3",
    ]


def test_check_reads_standard_input_and_exits_0_when_all_conform() -> None:
    done = run("plan", "check", "--plan", PLAN, "-", stdin=lines(GOOD, GOOD, UNPLANNED))
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout == "3 messages, 0 with violations (0 violations)\n"


def test_check_with_unplanned_reject_reports_unknown_events() -> None:
    done = run("plan", "check", "--plan", PLAN, "--unplanned", "reject", "-", stdin=lines(GOOD, UNPLANNED))
    assert done.returncode == 1
    assert "line 2: event: 'Mystery' is not in the tracking plan" in done.stdout
    assert "by rule: Mystery: 1" in done.stdout


def test_check_exits_2_for_unreadable_input_or_plan(tmp_path: Path) -> None:
    missing = run("plan", "check", "--plan", PLAN, str(tmp_path / "nope.jsonl"))
    assert missing.returncode == 2
    assert "cannot read" in missing.stderr
    garbled = run("plan", "check", "--plan", PLAN, "-", stdin=lines(GOOD, "{not json", "[1]"))
    assert garbled.returncode == 2
    assert "line 2: cannot read: not JSON" in garbled.stdout
    assert "line 3: cannot read: not a JSON object but list" in garbled.stdout
    assert "2 unreadable lines" in garbled.stdout
    bad_plan = tmp_path / "plan.json"
    bad_plan.write_text('{"rules": [{"type": "TRACK"}]}')
    refused = run("plan", "check", "--plan", str(bad_plan), "-", stdin=lines(GOOD))
    assert refused.returncode == 2
    assert "rules[0].key" in refused.stderr


def test_codegen_writes_the_module(tmp_path: Path) -> None:
    out = tmp_path / "tracking.py"
    done = run("plan", "codegen", "--plan", PLAN, "-o", str(out))
    assert done.returncode == 0, done.stderr
    assert "def order_completed(" in out.read_text()
    to_stdout = run("plan", "codegen", "--plan", PLAN)
    assert to_stdout.stdout == out.read_text()


def test_import_with_a_plan_refuses_violating_lines_as_bad_lines(fake_segment: FakeSegment, tmp_path: Path) -> None:
    data = tmp_path / "events.jsonl"
    data.write_text(lines(GOOD, BAD_ORDER, BAD_IDENTIFY, {**GOOD, "userId": "u5"}))
    done = run("import", "--write-key", WRITE_KEY, "--host", fake_segment.url, "--plan", PLAN, str(data))
    assert done.returncode == 2, done.stdout + done.stderr
    assert "line 2: breaks the tracking plan: properties.total" in done.stderr
    assert "line 3: breaks the tracking plan: traits.email" in done.stderr
    assert [m["userId"] for m in fake_segment.messages] == ["u1", "u5"]
    assert "2 bad lines" in done.stdout
