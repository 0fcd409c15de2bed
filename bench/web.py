"""Web requests and Segment: added response time and events lost, inline vs deferred vs the official client.

Run:  python bench/web.py            (needs the test extra: flask, gunicorn, segment-analytics-python)

One Flask app (this file, imported by gunicorn as ``web:app``; BENCH_MODE picks the
mode) whose view makes 2 track calls, served by gunicorn sync workers, against
``simple-segment serve`` scripted to answer every request in 50 ms:

- ``none``: no Segment calls (the baseline response time);
- ``inline``: simple_segment calls, each delivered before it returns;
- ``deferred``: simple_segment with ``init_app(app)``: delivered in the response's close();
- ``official``: segment-analytics-python 2.4.0, its default background thread.

Measured: response time (median, p95) of requests 100 ms apart with 2 workers (what
a user waits), and back-to-back with 1 worker (the deferred delivery keeps the worker
busy after the response: the capacity it costs); events lost when workers are
recycled (``--max-requests 10``) and when the worker that answered is killed with
SIGKILL right after its answer or 100 ms after it.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DELAY = 0.05
CALLS = 2

if __name__ != "__main__":  # imported by gunicorn: the app
    from flask import Flask

    mode = os.environ["BENCH_MODE"]
    app = Flask(__name__)
    if mode == "official":
        import segment.analytics as analytics

        analytics.write_key = os.environ["SEGMENT_WRITE_KEY"]
        analytics.host = os.environ["SEGMENT_HOST"]
    else:
        import simple_segment as analytics

        analytics.write_key = os.environ["SEGMENT_WRITE_KEY"]
        analytics.host = os.environ["SEGMENT_HOST"]
        if mode == "deferred":
            from simple_segment.integrations.flask import init_app

            init_app(app)

    @app.get("/")
    def index():
        from flask import request

        if mode != "none":
            for i in range(CALLS):
                analytics.track(request.args.get("u", "warm-up"), "Bench", {"i": i})
        return {"pid": os.getpid()}


def start(args, env=None, log=None):
    return subprocess.Popen(args, env=env, stdout=log, stderr=log, start_new_session=True, cwd=HERE)


def stop(process):
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(10)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(5)


def wait_line(path, needle, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in path.read_text(errors="replace").splitlines():
            if needle in line:
                return line
        time.sleep(0.05)
    raise SystemExit(f"no {needle!r} in {path}:\n{path.read_text()[-2000:]}")


def main():
    import requests

    tmp = Path(os.environ.get("TMPDIR", "/tmp")) / f"bench-web-{os.getpid()}"
    tmp.mkdir(parents=True, exist_ok=True)
    http = requests.Session()
    http.trust_env = False
    server_log = (tmp / "segment.log").open("wb")
    server = start([sys.executable, "-m", "simple_segment", "serve", "--port", "0", "--json"], log=server_log)
    results = {}
    try:
        url = wait_line(tmp / "segment.log", "listening on").split("listening on ")[1].split()[0]

        def reset():
            http.post(f"{url}/_clear", timeout=5).raise_for_status()
            http.post(f"{url}/_script", json={"delay": DELAY, "seconds": 100000}, timeout=5).raise_for_status()

        def received(user):
            lines = http.get(f"{url}/_messages", timeout=5).text.splitlines()
            return sum(1 for line in lines if line and json.loads(line).get("userId") == user)

        def settle(user, expected, timeout=8.0):
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and received(user) < expected:
                time.sleep(0.1)
            time.sleep(1.0)  # anything late
            return received(user)

        def gunicorn(mode, workers, extra=()):
            env = dict(os.environ, BENCH_MODE=mode, SEGMENT_WRITE_KEY="bench", SEGMENT_HOST=url, PYTHONPATH=str(HERE))
            path = tmp / f"gunicorn-{mode}-{workers}-{len(extra)}.log"
            log = path.open("wb")
            process = start(
                [sys.executable, "-m", "gunicorn", "--workers", str(workers), "--bind", "127.0.0.1:0", *extra, "web:app"],
                env, log,
            )
            address = wait_line(path, "Listening at: ").split("Listening at: ")[1].split()[0]
            for _ in range(workers * 3):  # every worker booted and warm
                http.get(address, timeout=10)
            return process, address

        for mode in ("none", "inline", "deferred", "official"):
            row = results[mode] = {}
            # (name, workers, requests, seconds between request starts)
            for name, workers, n, spacing in (("spaced", 2, 100, 0.1), ("back_to_back_1_worker", 1, 100, 0.0)):
                reset()
                process, address = gunicorn(mode, workers)
                times = []
                try:
                    for _ in range(n):
                        start_time = time.perf_counter()
                        http.get(f"{address}/?u={name}", timeout=10).raise_for_status()
                        times.append(time.perf_counter() - start_time)
                        time.sleep(max(0.0, spacing - (time.perf_counter() - start_time)))
                finally:
                    stop(process)
                times.sort()
                row[f"{name}_median_ms"] = round(statistics.median(times) * 1000, 1)
                row[f"{name}_p95_ms"] = round(times[int(0.95 * len(times))] * 1000, 1)
            if mode == "none":
                continue
            # Recycling: 100 requests, workers replaced every 10.
            reset()
            process, address = gunicorn(mode, 2, ("--max-requests", "10", "--max-requests-jitter", "0"))
            try:
                for _ in range(100):
                    http.get(f"{address}/?u=recycled", timeout=10).raise_for_status()
                time.sleep(0.5)
            finally:
                stop(process)
            row["recycled_lost"] = f"{100 * CALLS - settle('recycled', 100 * CALLS)} of {100 * CALLS}"
            # SIGKILL of the worker that answered, right after the answer and 100 ms after it, 20 times each.
            for after in (0.0, 0.1):
                user = f"killed-{after}"
                reset()
                process, address = gunicorn(mode, 2)
                try:
                    for _ in range(20):
                        pid = http.get(f"{address}/?u={user}", timeout=10).json()["pid"]
                        time.sleep(after)
                        os.kill(pid, signal.SIGKILL)
                        time.sleep(0.7)  # the master boots a new worker
                finally:
                    stop(process)
                row[f"killed_after_{int(after * 1000)}ms_lost"] = f"{20 * CALLS - settle(user, 20 * CALLS)} of {20 * CALLS}"
    finally:
        stop(server)
    base = results["none"]
    for row in results.values():
        for name in ("spaced", "back_to_back_1_worker"):
            row[f"added_{name}_median_ms"] = round(row[f"{name}_median_ms"] - base[f"{name}_median_ms"], 1)
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
