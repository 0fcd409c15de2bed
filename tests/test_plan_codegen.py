"""``simple-segment plan codegen``: the generated module type-checks good calls, rejects bad ones, and sends right.

mypy and ruff run for real on the generated code (both are in the ``test`` extra).
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import simple_segment
from simple_segment._cli import main
from simple_segment.plan import TrackingPlan
from simple_segment.plan._codegen import generate, snake_case
from simple_segment.testing import capture

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_PLAN = ROOT / "examples" / "tracking_plan.json"
EXAMPLE_MODULE = ROOT / "examples" / "tracking.py"

EDGE_PLAN = {
    "rules": [
        {
            "key": "Checkout Step Viewed",
            "type": "TRACK",
            "version": 1,
            "jsonSchema": {"properties": {"properties": {"required": ["step"], "properties": {"step": {"type": "integer"}}}}},
        },
        {
            "key": "Checkout Step Viewed",
            "type": "TRACK",
            "version": 2,
            "jsonSchema": {
                "description": 'Shown a step; "quotes" and \\ backslashes and """triple""" are kept safe.',
                "properties": {
                    "properties": {
                        "type": "object",
                        "required": ["step", "Order ID", "class"],
                        "properties": {
                            "step": {"enum": [1, 2, 3], "description": "Which step."},
                            "Order ID": {"type": "string"},
                            "class": {"type": "string"},
                            "id": {"type": ["string", "null"]},
                            "user_id": {"type": "string"},
                            "shipping": {
                                "type": "object",
                                "required": ["Postal Code"],
                                "properties": {"Postal Code": {"type": "string"}, "gift": {"type": "boolean"}},
                            },
                            "meta": {"type": "object"},
                            "tags": {"type": "array", "items": {"type": "string"}},
                            "amount": {"anyOf": [{"type": "number"}, {"type": "string"}]},
                            "anything": {},
                        },
                    },
                },
            },
        },
        {"key": "checkout-step-viewed", "type": "TRACK", "jsonSchema": {}},
        {
            "type": "GROUP",
            "jsonSchema": {"properties": {"traits": {"properties": {"plan": {"enum": ["free", "paid"]}}}}},
        },
    ],
}


def generated(tmp_path: Path, plan: dict[str, Any] | Path, name: str) -> Path:
    module = tmp_path / f"{name}.py"
    module.write_text(generate(TrackingPlan.load(plan), source="plan.json"))
    return module


def load(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tool(name: str) -> list[str]:
    if importlib.util.find_spec(name) is None:
        pytest.fail(f"{name} is needed to check generated code: pip install -e '.[test]'")
    return [sys.executable, "-m", name]


def mypy(tmp_path: Path, *files: Path, version: str = "3.10") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*tool("mypy"), "--strict", "--python-version", version, "--no-color-output", "--cache-dir",
         str(tmp_path / ".mypy_cache"), *map(str, files)],
        capture_output=True, text=True, cwd=tmp_path, timeout=300, check=False,
    )


def test_the_example_module_is_the_generated_one_byte_for_byte(tmp_path: Path) -> None:
    """examples/tracking.py is what `plan codegen` writes for examples/tracking_plan.json, today."""
    out = tmp_path / "tracking.py"
    assert main(["plan", "codegen", "--plan", str(EXAMPLE_PLAN), "-o", str(out)]) == 0
    regenerate = "simple-segment plan codegen --plan examples/tracking_plan.json -o examples/tracking.py"
    assert out.read_bytes() == EXAMPLE_MODULE.read_bytes(), f"regenerate it: {regenerate}"


def test_regenerating_gives_the_same_bytes_in_any_process(tmp_path: Path) -> None:
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps(EDGE_PLAN))
    outputs = []
    for seed in ("1", "2"):
        done = subprocess.run(
            [sys.executable, "-m", "simple_segment", "plan", "codegen", "--plan", str(plan)],
            capture_output=True, env={**os.environ, "PYTHONHASHSEED": seed}, timeout=60, check=False,
        )
        assert done.returncode == 0, done.stderr
        outputs.append(done.stdout)
    assert outputs[0] == outputs[1]
    assert outputs[0].decode() == generate(TrackingPlan.load(EDGE_PLAN), source="plan.json")


GOOD_CALLS = """
from __future__ import annotations

import datetime

import simple_segment
import tracking
import edge

client = simple_segment.Client("k", send=False)
ok, msg = tracking.order_completed(
    user_id="u", order_id="o-1", total=9.5, currency="EUR",
    products=[{"sku": "a", "price": 1.0}, {"sku": "b", "price": 2, "quantity": 3}],
)
tracking.order_completed(anonymous_id="a", order_id="o", total=1, currency="USD", client=client)
tracking.signed_up(user_id="u", plan="pro", referrer="https://example.com")
tracking.identify(user_id="u", email="ada@example.com", context={"ip": "1.2.3.4"})
tracking.identify(user_id="u", created_at=datetime.datetime.now(datetime.timezone.utc))
tracking.identify(user_id="u", created_at="2024-05-06T07:08:09Z")
edge.checkout_step_viewed(
    user_id="u", step=2, order_id="o", class_="c", id_=None, user_id_="x",
    shipping={"Postal Code": "12345", "gift": True}, meta={"a": 1}, tags=["t"], amount="1.5", anything=[1],
)
edge.checkout_step_viewed_2(user_id="u")
edge.group(group_id="g", user_id="u", plan="paid")
"""

BAD_CALLS = """
from __future__ import annotations

import tracking
import edge

tracking.order_completed(user_id="u", order_id="o", currency="EUR")  # error: missing total
tracking.order_completed(user_id="u", order_id="o", total=1, currency="JPY")  # error: outside the enum
tracking.order_completed(user_id="u", order_id="o", total=1, currency="EUR", products=[{"sku": "a"}])  # error
tracking.signed_up(user_id="u", plan="pro", referrer=5)  # error: wrong type
tracking.order_completed("u", order_id="o", total=1, currency="EUR")  # error: keyword-only
edge.checkout_step_viewed(user_id="u", step=4, order_id="o", class_="c")  # error: outside the enum
edge.checkout_step_viewed(user_id="u", step=1, order_id="o", class_="c", shipping={"gift": True})  # error
edge.group(user_id="u", plan="paid")  # error: group_id missing
tracking.identify(user_id="u", created_at=5)  # error: neither text nor a datetime
"""


def test_generated_modules_type_check_good_calls_and_reject_bad_ones(tmp_path: Path) -> None:
    shutil.copy(EXAMPLE_MODULE, tmp_path / "tracking.py")
    generated(tmp_path, EDGE_PLAN, "edge")
    (tmp_path / "good.py").write_text(GOOD_CALLS)
    (tmp_path / "bad.py").write_text(BAD_CALLS)
    for version in ("3.10", "3.13"):
        done = mypy(tmp_path, tmp_path / "good.py", tmp_path / "tracking.py", tmp_path / "edge.py", version=version)
        assert done.returncode == 0, done.stdout + done.stderr
    done = mypy(tmp_path, tmp_path / "bad.py")
    assert done.returncode == 1, done.stdout + done.stderr
    flagged = {int(line.split(":")[1]) for line in done.stdout.splitlines() if line.startswith("bad.py:")}
    expected = {number for number, line in enumerate(BAD_CALLS.splitlines(), start=1) if "# error" in line}
    assert flagged == expected, done.stdout


def test_generated_modules_pass_ruff_with_every_rule(tmp_path: Path) -> None:
    shutil.copy(EXAMPLE_MODULE, tmp_path / "tracking.py")
    generated(tmp_path, EDGE_PLAN, "edge")
    (tmp_path / "ruff.toml").write_text(
        'target-version = "py310"\nline-length = 120\n[lint]\nselect = ["ALL"]\n'
        'ignore = ["D203", "D213", "COM812", "ISC001", "CPY001", "INP001"]\n'
    )
    done = subprocess.run(
        [*tool("ruff"), "check", "--no-cache", "tracking.py", "edge.py"],
        capture_output=True, text=True, cwd=tmp_path, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_generated_functions_send_the_planned_message(tmp_path: Path) -> None:
    """Keyword names map back to the plan's keys; None leaves a property out; a versioned event names its version."""
    edge = load(generated(tmp_path, EDGE_PLAN, "edge_runtime"))
    tracking = load(EXAMPLE_MODULE)
    plan = TrackingPlan.load(EDGE_PLAN)
    client = simple_segment.Client("k", send=False, tracking_plan=plan)
    with capture() as sent:
        edge.checkout_step_viewed(user_id="u", step=3, order_id="o-1", class_="c", user_id_="x", client=client)
        tracking.order_completed(user_id="u", order_id="o", total=1, currency="EUR",
                                 client=simple_segment.Client("k", tracking_plan=EXAMPLE_PLAN))
        edge.group(group_id="g", anonymous_id="a", plan="free", client=client)
        tracking.identify(user_id="u", created_at=dt.datetime(2024, 1, 2, tzinfo=dt.timezone.utc),
                          client=simple_segment.Client("k", tracking_plan=EXAMPLE_PLAN))
    first, second, third, fourth = sent.messages
    assert first["event"] == "Checkout Step Viewed"
    assert first["properties"] == {"step": 3, "Order ID": "o-1", "class": "c", "user_id": "x"}
    assert first["context"]["protocols"] == {"event_version": 2}
    assert second["properties"] == {"order_id": "o", "total": 1, "currency": "EUR"}
    assert "protocols" not in second["context"]
    assert (third["type"], third["groupId"], third["anonymousId"], third["traits"]) == ("group", "g", "a", {"plan": "free"})
    assert fourth["traits"] == {"created_at": "2024-01-02T00:00:00.000+00:00"}
    plan.check_all([first, third])
    TrackingPlan.load(EXAMPLE_PLAN).check_all([second, fourth])


def test_function_names_are_snake_case() -> None:
    assert snake_case("Order Completed") == "order_completed"
    assert snake_case("checkoutStepViewed") == "checkout_step_viewed"
    assert snake_case("HTTPRequest sent!") == "http_request_sent"
    assert snake_case("3D Secure") == "n_3d_secure"
