"""cProfile of simple_segment's per-call and batch paths against a local nginx.

    python bench/profile_paths.py [--calls 3000] [--events 50000] [--url http://127.0.0.1:PORT]

Profiles the checkout (not the bench venv's copy).  Without --url it starts its own nginx
(bench/_nginx.py).  Prints the top 25 functions by cumulative and by own (total) time for
each path.  Named profile_paths.py, not profile.py: a bench/profile.py would shadow the
stdlib module ``profile`` that cProfile imports.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import pstats
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
import simple_segment  # noqa: E402
from _nginx import running  # noqa: E402
from _workloads import EVENT, PROPS  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--url", help="a running server answering /v1/batch (default: start nginx)")
    args = parser.parse_args()
    server = contextlib.nullcontext(args.url.rstrip("/")) if args.url else running()
    with server as url:
        client = simple_segment.Client("bench-write-key", host=url)
        for i in range(200):
            client.track(f"user-{i}", EVENT, PROPS)

        def percall() -> None:
            for i in range(args.calls):
                client.track(f"user-{i}", EVENT, PROPS)

        def batch() -> None:
            with client.batch() as b:
                for i in range(args.events):
                    b.track(f"user-{i}", EVENT, PROPS)

        for name, work in (("per-call", percall), ("batch", batch)):
            profiler = cProfile.Profile()
            profiler.runcall(work)
            print(f"\n===== {name} =====")
            stats = pstats.Stats(profiler)
            stats.sort_stats("cumulative").print_stats(25)
            stats.sort_stats("tottime").print_stats(25)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
