"""Interleaved benchmark of simple_segment against the official client and raw HTTP loops.

    python bench/run.py [--rounds 5] [--write]

Sets up one virtualenv per contender under bench/.venvs (first run only), starts a
throw-away nginx on 127.0.0.1 (bench/_nginx.py) that answers like Segment, then runs
every workload in rounds, contenders alternating, each run in a fresh subprocess of
its own venv.  Prints medians and each round's ratio to the reference; --write also
writes bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
VENVS = HERE / ".venvs"
sys.path.insert(0, str(HERE))
from _nginx import nginx_version, running  # noqa: E402

NOTES_MARKER = "<!-- notes: kept by run.py --write -->"
VENV_PACKAGES = {
    "simple": [str(ROOT)],
    "official": ["segment-analytics-python==2.4.0"],
    "raw": ["requests"],
}
CONTENDER_VENV = {"simple": "simple", "official": "official", "requests": "raw", "httpclient": "raw", "floor": "raw"}

# workload -> (N, reference contender, contenders, metric, higher is better)
WORKLOADS = {
    "percall": (2000, "requests", ["simple", "official", "requests", "httpclient"], "per_s", True),
    "batch": (50_000, "official", ["simple", "official", "requests", "httpclient"], "per_s", True),
    "build": (20_000, "floor", ["simple", "official", "floor"], "us", False),
    "rss": (1_000_000, None, ["simple"], "ratio", False),
}


def python_of(venv: str) -> Path:
    return VENVS / venv / "bin" / "python"


def ensure_venvs(refresh_simple: bool) -> None:
    for venv, packages in VENV_PACKAGES.items():
        python = python_of(venv)
        if not python.exists():
            subprocess.run([sys.executable, "-m", "venv", str(VENVS / venv)], check=True)
            subprocess.run([str(python), "-m", "pip", "install", "-q", *packages], check=True)
        elif venv == "simple" and refresh_simple:
            subprocess.run(
                [str(python), "-m", "pip", "install", "-q", "--force-reinstall", "--no-deps", *packages], check=True
            )


def run_one(contender: str, workload: str, url: str, n: int) -> dict:
    out = subprocess.run(
        [str(python_of(CONTENDER_VENV[contender])), str(HERE / "_workloads.py"), contender, workload, url, str(n)],
        capture_output=True, text=True, check=True, timeout=900, cwd="/",
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def versions() -> dict[str, str]:
    found = {}
    for venv in VENV_PACKAGES:
        out = subprocess.run([str(python_of(venv)), "-m", "pip", "freeze"], capture_output=True, text=True, check=True)
        found[venv] = ", ".join(
            line for line in out.stdout.split() if line.split("==")[0].lower().replace("_", "-")
            in {"simple-segment", "segment-analytics-python", "requests", "urllib3"}
        ) or out.stdout.strip()[:200]
    return found


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--only", nargs="*", choices=list(WORKLOADS), help="run only these workloads")
    parser.add_argument("--write", action="store_true", help="write bench/RESULTS.md")
    parser.add_argument("--no-refresh", action="store_true", help="do not reinstall simple_segment from the checkout")
    args = parser.parse_args()
    ensure_venvs(refresh_simple=not args.no_refresh)
    results: dict[str, dict[str, list[dict]]] = {}
    started = time.time()
    with running() as url:
        for workload in args.only or WORKLOADS:
            n, _, contenders, _, _ = WORKLOADS[workload]
            rounds = 1 if workload == "rss" else args.rounds
            results[workload] = {c: [] for c in contenders}
            for r in range(rounds):
                order = contenders if r % 2 == 0 else list(reversed(contenders))
                for contender in order:
                    results[workload][contender].append(run_one(contender, workload, url, n))
                print(f"{workload}: round {r + 1}/{rounds} done", file=sys.stderr)
    report = render(results, args.rounds, time.time() - started)
    print(report)
    if args.write:
        # Hand-written notes below the marker (profiles, what changed) survive a rerun.
        path = HERE / "RESULTS.md"
        old = path.read_text() if path.exists() else ""
        notes = old[old.index(NOTES_MARKER):] if NOTES_MARKER in old else NOTES_MARKER + "\n"
        path.write_text(report + "\n" + notes)
    return 0


def render(results: dict[str, dict[str, list[dict]]], rounds: int, seconds: float) -> str:
    lines = [
        "# Benchmark results",
        "",
        f"Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} by `python bench/run.py --write` "
        f"({rounds} interleaved rounds, {seconds:.0f} s).",
        "",
        f"Machine: {cpu_model()}, {os.cpu_count()} cores, Linux {platform.release()}, "
        f"Python {platform.python_version()}, nginx {nginx_version()} on 127.0.0.1 (1 worker).",
        "",
    ]
    for venv, text in versions().items():
        lines.append(f"- venv `{venv}`: {text}")
    lines.append("")
    for workload, per in results.items():
        n, reference, _, metric, higher = WORKLOADS[workload]
        unit = {"per_s": "/s", "us": "µs per message", "ratio": ""}[metric]
        lines += [f"## {workload} (N = {n:,})", "", "| contender | median | per-round ratio to reference | extra |",
                  "|---|---|---|---|"]
        for contender, runs in per.items():
            values = [run[metric] for run in runs]
            ratios = ""
            if reference and reference in per:
                refs = [run[metric] for run in per[reference]]
                rs = [v / ref for v, ref in zip(values, refs)]
                ratios = f"median x{statistics.median(rs):.2f} (" + ", ".join(f"{x:.2f}" for x in rs) + ")"
            extra = {k: v for k, v in runs[-1].items() if k != metric}
            shown = ", ".join(f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}" for k, v in extra.items())
            lines.append(f"| {contender} | {statistics.median(values):,.2f} {unit} | {ratios} | {shown} |")
        lines.append("")
    lines += ["## Targets", "", "| target | measured | met |", "|---|---|---|"]

    def med_ratio(workload: str, a: str, b: str, metric: str) -> float | None:
        per = results.get(workload, {})
        if a not in per or b not in per:
            return None
        return statistics.median(x[metric] / y[metric] for x, y in zip(per[a], per[b]))

    checks = [
        ("per-call simple / raw requests >= 1.25", med_ratio("percall", "simple", "requests", "per_s"), 1.25, True),
        ("per-call simple / official sync >= 1.5", med_ratio("percall", "simple", "official", "per_s"), 1.5, True),
        ("batch simple / official async+flush >= 3", med_ratio("batch", "simple", "official", "per_s"), 3.0, True),
        ("send=False simple / stdlib floor <= 1.2", med_ratio("build", "simple", "floor", "us"), 1.2, False),
    ]
    if "rss" in results:
        checks.append(("1M-event batch peak RSS / after import <= 1.5", results["rss"]["simple"][0]["ratio"], 1.5,
                       False))
    for name, value, bound, higher in checks:
        if value is None:
            continue
        met = value >= bound if higher else value <= bound
        lines.append(f"| {name} | {value:.2f} | {'yes' if met else 'NO'} |")
    lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
