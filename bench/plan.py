"""Per-call CPU cost of a tracking plan: Client(tracking_plan=<ten rules>) against no plan.

    python bench/plan.py [--calls 500] [--rounds 20]

Needs the plan extra (pip install -e '.[plan]').  A FakeSegment runs in a child process
on 127.0.0.1 (its CPU is not counted); this process makes N delivered calls of the
realistic event of bench/_workloads.py (ten properties, a nested object, a datetime)
with each client, interleaved by round, and reports CPU seconds of this process
(time.process_time) per call.  Also reported: the same with send=False (building and
serializing only, no HTTP), where the check is a far larger share of a much cheaper call,
and the check's own cost (plan minus none, send=False) as a share of a delivered call:
the HTTP timings share two cores with the server and wander by +-10 %, while the check
does the same work whether the call then posts or not.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from _workloads import EVENT, PROPS  # noqa: E402

import simple_segment  # noqa: E402
from simple_segment.plan import TrackingPlan  # noqa: E402

ORDER_SCHEMA = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "type": "object",
    "properties": {
        "userId": {"type": "string"},
        "properties": {
            "type": "object",
            "required": ["plan", "revenue", "seats"],
            "properties": {
                "plan": {"enum": ["free", "pro", "enterprise"]},
                "revenue": {"type": "number", "minimum": 0},
                "seats": {"type": "integer"},
                "trial": {"type": "boolean"},
                "coupon": {"type": "string"},
                "source": {"type": "string"},
                "campaign": {
                    "type": "object",
                    "properties": {"id": {"type": "string"}, "medium": {"type": "string"}, "variant": {"type": "integer"}},
                },
                "signed_up_at": {"type": "string", "format": "date-time"},
                "referrer": {"type": "string", "format": "uri"},
                "items": {"type": "integer", "minimum": 0},
            },
        },
    },
}


def ten_rules() -> TrackingPlan:
    rules = [{"key": EVENT, "type": "TRACK", "version": 1, "jsonSchema": ORDER_SCHEMA}]
    for i in range(8):
        rules.append({
            "key": f"Other Event {i}", "type": "TRACK", "version": 1,
            "jsonSchema": {"properties": {"properties": {"required": ["x"], "properties": {"x": {"type": "string"}}}}},
        })
    rules.append({"type": "COMMON", "version": 1, "jsonSchema": {"properties": {"context": {"type": "object"}}}})
    return TrackingPlan.load({"rules": rules})


def per_call(client: simple_segment.Client, calls: int) -> float:
    for i in range(50):  # warm up: connection, caches
        client.track(f"user-{i}", EVENT, PROPS)
    started = time.process_time()
    for i in range(calls):
        client.track(f"user-{i}", EVENT, PROPS)
    return (time.process_time() - started) / calls


def serve() -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "simple_segment", "serve", "--port", "0", "--json"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    assert proc.stderr is not None
    line = proc.stderr.readline()  # "listening on http://127.0.0.1:PORT"
    return proc, line.split()[-1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    plan = ten_rules()
    assert plan.validate(simple_segment._messages.track("u", EVENT, PROPS)) == []  # noqa: SLF001 - the workload conforms
    proc, url = serve()
    try:
        results: dict[str, list[float]] = {"http none": [], "http plan": [], "build none": [], "build plan": []}
        no_proxy = {"http": "", "https": ""}
        clients = {
            "http none": simple_segment.Client("k", host=url, proxies=no_proxy),
            "http plan": simple_segment.Client("k", host=url, proxies=no_proxy, tracking_plan=plan),
            "build none": simple_segment.Client("k", send=False),
            "build plan": simple_segment.Client("k", send=False, tracking_plan=plan),
        }
        for _ in range(args.rounds):
            for name, client in clients.items():
                results[name].append(per_call(client, args.calls if name.startswith("http") else args.calls * 5))
    finally:
        proc.terminate()
        proc.wait(10)
    median = {name: statistics.median(values) for name, values in results.items()}
    print(f"| client | CPU µs per call (median of {args.rounds}) | overhead |")
    print("|---|---|---|")
    for kind in ("http", "build"):
        base, with_plan = median[f"{kind} none"], median[f"{kind} plan"]
        label = "delivered (HTTP to loopback)" if kind == "http" else "send=False (build + serialize only)"
        print(f"| {label}, no plan | {base * 1e6:.1f} | |")
        print(f"| {label}, ten-rule plan | {with_plan * 1e6:.1f} | +{(with_plan / base - 1) * 100:.1f} % |")
    check = median["build plan"] - median["build none"]
    print(f"\nthe check itself: {check * 1e6:.1f} µs per call = {check / median['http none'] * 100:.1f} % "
          "of a delivered call's CPU (target < 15 %)")


if __name__ == "__main__":
    main()
