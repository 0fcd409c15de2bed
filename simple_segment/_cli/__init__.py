"""The ``simple-segment`` command (also ``python -m simple_segment``).

Commands: the six calls (``track`` ...), ``import`` (JSON lines, for backfills),
``serve`` (a local FakeSegment that prints what it receives) and ``demo``.
Exit codes: 0 delivered, 1 delivery failed, 2 usage or invalid input (130 when
interrupted, 143 for an import stopped by SIGTERM).  Errors are one line on stderr,
the server's text in them escaped; ``--debug`` adds the traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import traceback
from collections.abc import Callable

from simple_segment._version import VERSION
from simple_segment.errors import DeliveryError, SegmentError, ValidationError
from simple_segment.plan import _cli as plan_cli

from .calls import add_call_parsers, run_call
from .common import (
    EXIT_DELIVERY,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    PROG,
    Parser,
    UsageError,
    add_client_arguments,
    one_line,
    parse_timestamp,
)
from .demo import add_demo_parser, run_demo
from .importing import add_import_parser, run_import
from .serve import add_serve_parser, run_serve

__all__ = ["EXIT_DELIVERY", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_USAGE", "UsageError", "main", "parse_timestamp"]


def _build_parser() -> argparse.ArgumentParser:
    debug = Parser(add_help=False)
    debug.add_argument("--debug", action="store_true", help="show tracebacks and debug logging")

    common = Parser(add_help=False, parents=[debug])
    add_client_arguments(common)

    parser = Parser(
        prog=PROG,
        description="Send events to Segment's HTTP Tracking API, synchronously: each command returns "
        "once Segment has accepted what it sent.",
        epilog="Exit status: 0 delivered, 1 delivery failed, 2 usage or invalid input. "
        f"Try it with no account: {PROG} demo",
    )
    parser.add_argument("--version", action="version", version=f"simple_segment {VERSION}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_call_parsers(commands, common)
    add_import_parser(commands, common)
    add_serve_parser(commands, debug)
    plan_cli.add_parser(commands)
    add_demo_parser(commands, debug)
    return parser


def _explain(exc: BaseException) -> tuple[str, int]:
    """Return the one line that says what went wrong, and the exit status."""
    if isinstance(exc, UsageError):
        return str(exc), EXIT_USAGE
    if isinstance(exc, ValidationError):  # a ConfigurationError too: a bad option
        return f"invalid input: {exc}", EXIT_USAGE
    if isinstance(exc, DeliveryError):
        return f"not delivered: {exc}", EXIT_DELIVERY
    if isinstance(exc, SegmentError):
        return str(exc), EXIT_DELIVERY
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted", EXIT_INTERRUPTED
    return f"unexpected {type(exc).__name__}: {exc}", EXIT_DELIVERY


def _configure_logging(*, debug: bool) -> None:
    if debug:
        logging.basicConfig(level=logging.DEBUG, format="%(levelname)s %(name)s: %(message)s")
        return
    # Retry warnings would make an error more than one line; --debug shows them.
    library = logging.getLogger("simple_segment")
    if not library.handlers:
        library.addHandler(logging.NullHandler())


def main(argv: list[str] | None = None) -> int:
    """Run the command line with ``argv`` (default ``sys.argv[1:]``); return the exit status."""
    try:
        args = _build_parser().parse_args(argv)
    except SystemExit as exc:  # --help, --version and usage errors
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    debug = bool(args.debug)
    _configure_logging(debug=debug)
    runners: dict[str, Callable[[argparse.Namespace], int]] = {
        "import": run_import,
        "serve": run_serve,
        "demo": run_demo,
        "plan": plan_cli.run,
    }
    try:
        return runners.get(args.command, run_call)(args)
    except BrokenPipeError:
        # Our reader went away (`... | head`): there is no one left to tell.
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_DELIVERY
    except (Exception, KeyboardInterrupt) as exc:  # noqa: BLE001 - the promise is one line, not a traceback
        message, code = _explain(exc)
        if debug:
            traceback.print_exc()
        elif not isinstance(exc, (SegmentError, UsageError, KeyboardInterrupt)):
            message += " (--debug shows the traceback)"
        sys.stderr.write(f"{PROG}: error: {one_line(message)}\n")  # the server's text may hold newlines
        return code
