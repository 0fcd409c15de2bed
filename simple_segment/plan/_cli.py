"""``simple-segment plan check`` and ``simple-segment plan codegen``.

``check`` validates a file of JSON lines (one message a line, in Segment's wire
names, as ``import`` reads them) and prints ``line N: <path>: <message>`` per
violation, then a summary by rule.  Exit status: 0 no violation, 1 violations, 2 the
plan or the input cannot be read.  ``codegen`` writes the typed module of a plan.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, BinaryIO

from simple_segment.errors import ConfigurationError

from ._codegen import generate
from ._plan import TrackingPlan

__all__ = ["add_parser", "run"]

EXIT_OK = 0
EXIT_VIOLATIONS = 1
EXIT_UNREADABLE = 2

PROG = "simple-segment plan"
_MAX_LINE_BYTES = 1 << 20
"""Longest line read, as ``import``: a message is at most 32 KB."""


def add_parser(subparsers: Any) -> None:  # noqa: ANN401 - argparse's private _SubParsersAction
    """Add the ``plan`` command (``check``, ``codegen``) to the ``simple-segment`` parser."""
    debug = argparse.ArgumentParser(add_help=False)
    debug.add_argument("--debug", action="store_true", help="show tracebacks and debug logging")
    plan = subparsers.add_parser(
        "plan",
        help="check messages against a Segment tracking plan, or generate typed helpers from it",
        description="Work with a Segment tracking plan (Protocols): the JSON of its rules, from the Public API "
        "(List Rules from Tracking Plan) or the Terraform provider's segment_tracking_plan.",
    )
    plan.set_defaults(debug=False)
    commands = plan.add_subparsers(dest="plan_command", required=True, metavar="COMMAND")
    check = commands.add_parser(
        "check",
        parents=[debug],
        help="check a file of JSON lines against the plan",
        description="Print 'line N: <path>: <message>' for each violation, then a summary by rule.  "
        "Exit status: 0 no violation, 1 violations, 2 unreadable plan or input.",
    )
    check.add_argument("--plan", required=True, metavar="PLAN.json", help="the tracking plan's JSON")
    check.add_argument(
        "--unplanned",
        choices=("allow", "reject"),
        default="allow",
        help="a track event the plan does not list: allowed (default) or a violation",
    )
    check.add_argument("file", help="a file of JSON lines (one message a line), or - for standard input")
    codegen = commands.add_parser(
        "codegen",
        parents=[debug],
        help="write a typed Python module with one function per event of the plan",
        description="Write a module with one function per TRACK rule (keyword arguments typed from its "
        "properties) and identify/group helpers; it passes mypy --strict.  Same plan, same bytes.",
    )
    codegen.add_argument("--plan", required=True, metavar="PLAN.json", help="the tracking plan's JSON")
    codegen.add_argument("-o", "--output", default="-", metavar="FILE", help="where to write it (default: stdout)")


def run(args: argparse.Namespace) -> int:
    """Run ``plan check`` or ``plan codegen``; return the exit status."""
    try:
        plan = TrackingPlan.load(args.plan, unplanned=getattr(args, "unplanned", "allow"))
    except ConfigurationError as exc:
        sys.stderr.write(f"{PROG}: error: the plan {args.plan}: {exc}\n")
        return EXIT_UNREADABLE
    if args.plan_command == "codegen":
        return _codegen(plan, args)
    return _check(plan, args.file, sys.stdout)


def _codegen(plan: TrackingPlan, args: argparse.Namespace) -> int:
    module = generate(plan, source=Path(args.plan).name)
    if args.output == "-":
        sys.stdout.write(module)
        return EXIT_OK
    try:
        Path(args.output).write_text(module, encoding="utf-8")
    except OSError as exc:
        sys.stderr.write(f"{PROG}: error: cannot write {args.output}: {exc.strerror or exc}\n")
        return EXIT_UNREADABLE
    sys.stderr.write(f"wrote {args.output}\n")
    return EXIT_OK


def _check(plan: TrackingPlan, path: str, out: IO[str]) -> int:
    try:
        source: BinaryIO = sys.stdin.buffer if path == "-" else Path(path).open("rb")  # noqa: SIM115 - closed below
    except OSError as exc:
        sys.stderr.write(f"{PROG}: error: cannot read {path}: {exc.strerror or exc}\n")
        return EXIT_UNREADABLE
    try:
        by_rule, messages, failing, unreadable = _check_lines(plan, source, out)
    finally:
        if source is not sys.stdin.buffer:
            source.close()
    total = sum(by_rule.values())
    summary = f"{messages} messages, {failing} with violations ({total} violations)"
    if by_rule:
        summary += "; by rule: " + ", ".join(f"{rule}: {count}" for rule, count in sorted(by_rule.items()))
    if unreadable:
        summary += f"; {unreadable} unreadable lines"
    out.write(summary + "\n")
    if unreadable:
        return EXIT_UNREADABLE
    return EXIT_VIOLATIONS if total else EXIT_OK


def _check_lines(plan: TrackingPlan, source: BinaryIO, out: IO[str]) -> tuple[Counter[str], int, int, int]:
    """Check every line; return the violations by rule and the messages, failing and unreadable lines."""
    by_rule: Counter[str] = Counter()
    messages = failing = unreadable = 0
    for number, line in enumerate(_lines(source), start=1):
        message = _message(line)
        if isinstance(message, str):
            if message:
                unreadable += 1
                out.write(f"line {number}: {message}\n")
            continue
        messages += 1
        violations = plan.validate(message)
        failing += bool(violations)
        for violation in violations:
            by_rule[violation.rule] += 1
            out.write(f"line {number}: {violation.path}: {violation.message}\n")
    return by_rule, messages, failing, unreadable


def _lines(source: BinaryIO) -> Iterator[bytes]:
    """Yield each line; one longer than the limit is skipped unread and yielded truncated."""
    while line := source.readline(_MAX_LINE_BYTES + 1):
        if len(line) > _MAX_LINE_BYTES and not line.endswith(b"\n"):
            while (rest := source.readline(_MAX_LINE_BYTES)) and not rest.endswith(b"\n"):
                pass
        yield line


def _message(line: bytes) -> dict[str, Any] | str:
    """Return the line's message, or why it cannot be read ("" for a blank line)."""
    if len(line) > _MAX_LINE_BYTES:
        return f"cannot read: longer than {_MAX_LINE_BYTES:,} bytes"
    if not line.strip():
        return ""
    try:
        value = json.loads(line)
    except (ValueError, RecursionError) as exc:
        return f"cannot read: not JSON ({exc})"
    if not isinstance(value, dict):
        return f"cannot read: not a JSON object but {type(value).__name__}"
    return value
