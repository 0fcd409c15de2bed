"""Backfill throughput: ``import --jobs`` with 1, 2 and all cores, and the Dask path with 1..N workers.

    python bench/backfill.py [--events 200000] [--repeat 2]

Each contender sends the same events to a throw-away nginx on loopback that answers
``/v1/batch`` like Segment (``_nginx.py``), and reports events per second (the best
of ``--repeat`` interleaved rounds) and the ratio to one worker.  ``import`` is timed as the whole
command (process start, reading and splitting the file, spawning workers); the Dask
path is timed from ``send()`` to its summary on an already running LocalCluster of
worker processes (one thread each), the rows made on the workers.  Needs nginx
(``apt-get install -y nginx``) and Dask (``pip install 'simple-segment[dask]'``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import _nginx  # noqa: E402


def make_row(i: int) -> dict:
    return {
        "type": "track",
        "userId": f"user-{i % 5000}",
        "event": "Order Completed",
        "properties": {"order": i, "revenue": 39.99, "items": 3, "sku": f"sku-{i % 97}"},
        "timestamp": "2024-05-06T07:08:09Z",
    }


def write_file(path: Path, events: int) -> None:
    with path.open("w", encoding="utf-8") as out:
        for i in range(events):
            out.write(json.dumps(make_row(i), separators=(",", ":")) + "\n")


def time_import(url: str, path: Path, jobs: int | None, events: int) -> tuple[float, float]:
    """Return events per second of wall time, and CPU microseconds (user + system, all processes) per event."""
    flags = [] if jobs is None else ["--jobs", str(jobs), "--seed", "bench", "--state", str(path) + f".{jobs}.state"]
    env = {k: v for k, v in os.environ.items() if not k.upper().endswith("_PROXY")}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "simple_segment", "import", "--write-key", "bench", "--host", url, str(path), *flags],
        capture_output=True, text=True, env=env, check=False,
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0 or f"delivered {events} messages" not in done.stdout:
        raise RuntimeError(f"import failed ({done.returncode}): {done.stdout} {done.stderr[-500:]}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return events / seconds, cpu / events * 1e6


def time_dask(url: str, workers: int, events: int, repeat: int) -> float:
    import dask.bag as db
    from distributed import Client, LocalCluster

    from simple_segment.integrations.dask import send

    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster):
        bag = db.from_sequence(range(events), npartitions=workers * 4).map(make_row)
        send(db.from_sequence(range(100), npartitions=workers).map(make_row), write_key="bench", host=url, seed="warm")
        best = 0.0
        for run in range(repeat):
            started = time.perf_counter()
            summary = send(bag, write_key="bench", host=url, seed=f"bench-{run}")
            seconds = time.perf_counter() - started
            if summary.messages != events:
                raise RuntimeError(f"dask delivered {summary.messages} of {events}: {summary.failed[:3]}")
            best = max(best, events / seconds)
        return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    counts = sorted({1, min(2, cores), cores})
    results: list[tuple[str, int, float, float | None]] = []
    with _nginx.running() as url, tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "events.jsonl"
        write_file(path, args.events)
        print(f"{args.events:,} events ({path.stat().st_size / 1e6:.1f} MB), {cores} cores, nginx at {url}")
        # Rounds interleave the contenders, so that a burst of load elsewhere hits them alike.
        best: dict[int | None, tuple[float, float]] = {}
        for _ in range(args.repeat):
            for jobs in [None, *counts]:
                best[jobs] = max(best.get(jobs, (0.0, 0.0)), time_import(url, path, jobs, args.events))
        results.append(("import (no --jobs)", 1, *best[None]))
        results.extend(("import --jobs", jobs, *best[jobs]) for jobs in counts)
        for workers in range(1, cores + 1):
            results.append(("dask send", workers, time_dask(url, workers, args.events, args.repeat), None))
    base = {name: rate for name, n, rate, _ in results if n == 1}
    load = os.getloadavg()[0]
    print(f"\nload average at the end: {load:.2f} on {cores} cores")
    print("\n| contender | workers | events/s | vs 1 worker | CPU µs/event |\n|---|---|---|---|---|")
    for name, n, rate, cpu in results:
        shown = f"{cpu:.1f}" if cpu is not None else "n/a"
        print(f"| {name} | {n} | {rate:,.0f} | {rate / base[name]:.2f} × | {shown} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
