"""Interleaved benchmark of simple_segment against the official client and raw HTTP loops.

    bash bench/run.sh [--rounds 5] [--write]        (fresh machine: installs nginx too)
    python bench/run.py [--rounds 5] [--write] [--url http://127.0.0.1:PORT]

Sets up one virtualenv per contender under bench/.venvs (first run only), starts a
throw-away nginx on 127.0.0.1 (bench/_nginx.py) that answers like Segment unless --url
names one already running, then runs every workload in rounds, contenders alternating,
each run in a fresh subprocess of its own venv with a small fixed environment.  Prints
medians and each round's ratio to the reference; --write also writes bench/RESULTS.md.
A contender that cannot run (simple_segment not importable yet, a failed run) is n/a.
"""

from __future__ import annotations

import argparse
import contextlib
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
CONTENDER_VENV = {
    "simple": "simple",
    "official": "official",
    "official_defaultq": "official",
    "requests": "raw",
    "httpclient": "raw",
    "urllib3": "raw",
    "urllib3_timeout": "raw",
    "floor": "raw",
}
# requests (so the official client and the raw requests loop) scans the whole process
# environment for proxy settings on every request: the workloads get this small fixed
# environment so results do not depend on the shell's (--inherit-env to keep it).
MINIMAL_ENV_KEYS = ("PATH", "HOME", "LANG", "TMPDIR")
# Predictions from the issue for the contenders that are not ours: (label, workload,
# contender, reference or None for an absolute number, value).
PREDICTIONS = [
    ("official sync / raw requests loop (calls/s)", "percall", "official", "requests", 0.83),
    ("http.client loop / raw requests loop (calls/s)", "percall", "httpclient", "requests", 4.8),
    ("official async + flush, events/s (default queue, delivered)", "batch", "official_defaultq", None, 5500),
    ("official send=False / stdlib floor (µs)", "build", "official", "floor", 1.65),
]

# workload -> (N, reference contender, contenders, metric, higher is better)
WORKLOADS = {
    "percall": (2000, "requests", ["simple", "official", "requests", "urllib3", "urllib3_timeout", "httpclient"], "per_s", True),
    "batch": (50_000, "official", ["simple", "official", "official_defaultq", "requests", "httpclient"], "per_s", True),
    "build": (20_000, "floor", ["simple", "official", "floor"], "us", False),
    "rss": (1_000_000, None, ["simple"], "ratio", False),
}


def python_of(venv: str) -> Path:
    return VENVS / venv / "bin" / "python"


def pip(venv: str, *args: str) -> bool:
    out = subprocess.run([str(python_of(venv)), "-m", "pip", "install", "-q", *args], capture_output=True, text=True)
    if out.returncode != 0:
        print(f"pip install in {venv} failed:\n{out.stderr[-2000:]}", file=sys.stderr)
    return out.returncode == 0


def ensure_venvs(refresh_simple: bool) -> None:
    """Create missing venvs; reinstall simple_segment from the checkout (its code changes).

    A failed install of the checkout is not fatal: simple then runs from the source tree
    (PYTHONPATH) if it imports, else it is reported n/a.
    """
    for venv, packages in VENV_PACKAGES.items():
        python = python_of(venv)
        fresh = not python.exists()
        if fresh:
            subprocess.run([sys.executable, "-m", "venv", str(VENVS / venv)], check=True)
        if venv != "simple":
            if fresh and not pip(venv, *packages):
                raise SystemExit(f"could not install {packages} into bench/.venvs/{venv}")
            continue
        if fresh or refresh_simple:
            has_project = (ROOT / "pyproject.toml").exists() or (ROOT / "setup.py").exists()
            ok = has_project and (
                pip(venv, *packages) if fresh else pip(venv, "--force-reinstall", "--no-deps", *packages)
            )
            if not ok:
                subprocess.run([str(python), "-m", "pip", "uninstall", "-y", "-q", "simple-segment"], capture_output=True)
                pip(venv, "requests", "urllib3")


SIMPLE_ENV: dict[str, str] = {}  # extra environment for the simple contender (PYTHONPATH fallback)
INHERIT_ENV = False


def child_env(contender: str) -> dict[str, str]:
    env = dict(os.environ) if INHERIT_ENV else {k: os.environ[k] for k in MINIMAL_ENV_KEYS if k in os.environ}
    if contender == "simple":
        env.update(SIMPLE_ENV)
    return env


def probe_simple() -> str:
    """Return how simple_segment will be run ("installed", "source tree") or why it cannot."""
    reason = ""
    for how, extra in (("installed", {}), ("source tree", {"PYTHONPATH": str(ROOT)})):
        SIMPLE_ENV.clear()
        SIMPLE_ENV.update(extra)
        out = subprocess.run(
            [str(python_of("simple")), str(HERE / "_workloads.py"), "simple", "probe"],
            capture_output=True, text=True, cwd="/", env=child_env("simple"), timeout=120,
        )
        if out.returncode == 0:
            return how
        reason = (out.stdout.strip() or out.stderr.strip()).splitlines()[-1:] or ["?"]
        reason = reason[0]
    SIMPLE_ENV.clear()
    return f"n/a ({reason})"


def run_one(contender: str, workload: str, url: str, n: int) -> dict:
    """One run in a fresh process; {"error": ...} instead of a result if it failed."""
    try:
        out = subprocess.run(
            [str(python_of(CONTENDER_VENV[contender])), str(HERE / "_workloads.py"), contender, workload, url, str(n)],
            capture_output=True, text=True, timeout=900, cwd="/", env=child_env(contender),
        )
    except subprocess.TimeoutExpired:
        return {"error": "timed out after 900 s"}
    lines = out.stdout.strip().splitlines()
    try:
        result = json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        result = {"error": (out.stderr.strip().splitlines() or [f"exit {out.returncode}"])[-1]}
    if out.returncode != 0 and "error" not in result:
        result = {"error": f"exit {out.returncode}"}
    if "error" in result:
        print(f"  {contender} {workload}: n/a: {result['error']}", file=sys.stderr)
    return result


def versions() -> dict[str, str]:
    found = {}
    for venv in VENV_PACKAGES:
        out = subprocess.run([str(python_of(venv)), "-m", "pip", "list", "--format=freeze"],
                             capture_output=True, text=True, check=True)
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
    parser.add_argument("--url", help="use this running server (e.g. the nginx run.sh started) instead of starting one")
    parser.add_argument("--inherit-env", action="store_true", help="give the workloads this shell's environment")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every N (e.g. 0.2 for a quick look)")
    args = parser.parse_args()
    global INHERIT_ENV  # noqa: PLW0603
    INHERIT_ENV = args.inherit_env
    ensure_venvs(refresh_simple=not args.no_refresh)
    simple_how = probe_simple()
    print(f"simple_segment: {simple_how}", file=sys.stderr)
    results: dict[str, dict[str, list[dict]]] = {}
    started = time.time()
    server = contextlib.nullcontext(args.url.rstrip("/")) if args.url else running()
    with server as url:
        for workload in args.only or WORKLOADS:
            n, _, contenders, _, _ = WORKLOADS[workload]
            n = max(1, int(n * args.scale))
            rounds = 1 if workload == "rss" else args.rounds
            results[workload] = {c: [] for c in contenders}
            for r in range(rounds):
                order = contenders if r % 2 == 0 else list(reversed(contenders))
                for contender in order:
                    if contender == "simple" and simple_how.startswith("n/a"):
                        results[workload][contender].append({"error": simple_how})
                        continue
                    results[workload][contender].append(run_one(contender, workload, url, n))
                print(f"{workload}: round {r + 1}/{rounds} done ({time.time() - started:.0f} s)", file=sys.stderr)
    report = render(results, args.rounds, time.time() - started, simple_how, args)
    print(report)
    if args.write:
        # Hand-written notes below the marker (profiles, what changed) survive a rerun.
        path = HERE / "RESULTS.md"
        old = path.read_text() if path.exists() else ""
        notes = old[old.index(NOTES_MARKER):] if NOTES_MARKER in old else NOTES_MARKER + "\n"
        path.write_text(report + "\n" + notes)
    return 0


def _fmt(v: object) -> str:
    return f"{v:,.2f}" if isinstance(v, float) else str(v)


def render(results: dict[str, dict[str, list[dict]]], rounds: int, seconds: float, simple_how: str,
           args: argparse.Namespace) -> str:
    env = "the shell's environment" if args.inherit_env else "a minimal environment (" + ", ".join(MINIMAL_ENV_KEYS) + ")"
    lines = [
        "# Benchmark results",
        "",
        f"Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} by `bash bench/run.sh --write` "
        f"({rounds} interleaved rounds, {seconds:.0f} s; workloads run with {env}).",
        "",
        f"Machine: {cpu_model()}, {os.cpu_count()} cores, Linux {platform.release()}, "
        f"Python {platform.python_version()}, nginx {nginx_version()} on 127.0.0.1 (1 worker, pinned to the last core).",
        "",
        f"simple_segment ran from: {simple_how}.",
        "",
    ]
    for venv, text in versions().items():
        lines.append(f"- venv `{venv}`: {text}")
    lines.append("")

    def metric_values(workload: str, contender: str) -> list[float | None]:
        metric = WORKLOADS[workload][3]
        return [run.get(metric) for run in results.get(workload, {}).get(contender, [])]

    def ratios(workload: str, a: str, b: str) -> list[float]:
        return [x / y for x, y in zip(metric_values(workload, a), metric_values(workload, b)) if x and y]

    for workload, per in results.items():
        n, reference, _, metric, higher = WORKLOADS[workload]
        n = max(1, int(n * args.scale))
        unit = {"per_s": "/s", "us": "µs per message", "ratio": ""}[metric]
        better = "higher is better" if higher else "lower is better"
        lines += [f"## {workload} (N = {n:,}; {better})", "",
                  "| contender | median | per-round ratio to reference | extra (last good round) |", "|---|---|---|---|"]
        for contender, runs in per.items():
            values = [v for v in metric_values(workload, contender) if v is not None]
            if not values:
                err = next((r["error"] for r in runs if "error" in r), "no result")
                lines.append(f"| {contender} | n/a | | {err} |")
                continue
            shown_ratio = ""
            if reference and reference in per:
                rs = ratios(workload, contender, reference)
                if rs:
                    shown_ratio = f"median x{statistics.median(rs):.2f} (" + ", ".join(f"{x:.2f}" for x in rs) + ")"
            good = [r for r in runs if metric in r]
            extra = {k: v for k, v in good[-1].items() if k != metric}
            shown = ", ".join(f"{k}={_fmt(v)}" for k, v in extra.items())
            failed = len(runs) - len(good)
            if failed:
                shown += f" ({failed} round(s) failed)"
            lines.append(f"| {contender} | {statistics.median(values):,.2f} {unit} | {shown_ratio} | {shown} |")
        lines.append("")

    lines += ["## Targets", "", "Median of the per-round ratios.", "", "| target | measured | met |", "|---|---|---|"]

    def med_ratio(workload: str, a: str, b: str) -> float | None:
        rs = ratios(workload, a, b)
        return statistics.median(rs) if rs else None

    rss = [r["ratio"] for r in results.get("rss", {}).get("simple", []) if "ratio" in r]
    checks = [
        ("per-call simple / raw requests >= 2.2", med_ratio("percall", "simple", "requests"), 2.2, True),
        ("per-call simple / official sync >= 2.6", med_ratio("percall", "simple", "official"), 2.6, True),
        ("batch simple / official async+flush >= 3", med_ratio("batch", "simple", "official"), 3.0, True),
        ("send=False simple / stdlib floor (µs) <= 1.2", med_ratio("build", "simple", "floor"), 1.2, False),
        ("1M-event batch peak RSS / after import <= 1.5", statistics.median(rss) if rss else None, 1.5, False),
    ]
    for name, value, bound, higher in checks:
        if value is None:
            lines.append(f"| {name} | n/a | n/a |")
            continue
        met = value >= bound if higher else value <= bound
        lines.append(f"| {name} | {value:.2f} | {'yes' if met else 'NO'} |")
    lines += ["", "## The other contenders against the issue's predictions", "",
              "| quantity | predicted | measured |", "|---|---|---|"]
    for label, workload, a, b, predicted in PREDICTIONS:
        if b is None:
            vals = [v for v in metric_values(workload, a) if v]
            value = statistics.median(vals) if vals else None
        else:
            value = med_ratio(workload, a, b)
        shown = "n/a" if value is None else (f"{value:,.0f}" if b is None else f"{value:.2f}")
        lines.append(f"| {label} | {predicted:,} | {shown} |")
    lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
