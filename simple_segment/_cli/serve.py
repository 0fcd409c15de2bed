"""The ``serve`` command: a local FakeSegment that prints each message it accepts."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import signal
import sys
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from .common import EXIT_OK, UsageError, describe, one_line, port

if TYPE_CHECKING:
    from simple_segment.testing import FakeSegment, RecordedRequest

__all__ = ["add_serve_parser", "run_serve"]

_SERVE_KEEP = 1_000
"""How many messages and requests ``serve`` keeps by default: it prints them and forgets older ones."""


def _keep(text: str) -> int:
    """Parse ``--keep``: a whole number >= 1.

    Raises :class:`argparse.ArgumentTypeError` when ``text`` is not one.
    """
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        msg = f"must be a whole number >= 1, not {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return value


def add_serve_parser(commands: Any, debug: argparse.ArgumentParser) -> None:  # noqa: ANN401 - argparse's private subparsers action
    """Add the ``serve`` subcommand to ``commands``, with ``debug``'s flag."""
    serve = commands.add_parser(
        "serve", parents=[debug], help="run a local Segment-compatible server and print what it receives",
        description="Run FakeSegment, a Segment-compatible server that validates like the real API, and print "
        "each message it accepts as one line.  Point your app's host at the URL it prints.  Tests in other "
        "processes can read and script it over HTTP: GET /_messages, GET /_requests (JSON lines), "
        'POST /_script (e.g. {"status": 503, "times": 3}), POST /_clear.  It keeps only the last 1,000 '
        "messages and requests (see --keep); GET /_messages?since=N&limit=M pages through them, and the "
        "X-Next-Since header is the next page's since.  Bodies over 1 MiB are refused (413) unread.  "
        "Stop with Ctrl-C.",
    )
    serve.add_argument(
        "--bind", default="127.0.0.1", metavar="ADDRESS", help="address to listen on (default 127.0.0.1)"
    )
    serve.add_argument("--port", type=port, default=8787, help="port (default 8787; 0 picks a free one)")
    serve.add_argument(
        "--keep", type=_keep, default=_SERVE_KEEP, metavar="N",
        help=f"how many of the newest messages and requests to keep for GET /_messages and /_requests "
        f"(default {_SERVE_KEEP:,}; older ones are forgotten; a request kept holds its body, at most 500 KB)",
    )
    serve.add_argument(
        "--json", action="store_true",
        help="print only JSON lines on stdout, one per accepted message (for jq); everything else goes to stderr",
    )


@contextlib.contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """Make SIGINT (Ctrl-C) and SIGTERM set ``stop``, until the block ends."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return

    def on_signal(signum: int, frame: object) -> None:  # noqa: ARG001 - the handler signature
        stop.set()

    previous = {signum: signal.signal(signum, on_signal) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _new_requests(server: FakeSegment, last: RecordedRequest | None) -> list[RecordedRequest]:
    """Return the requests recorded after ``last`` (all that are kept, when it was forgotten)."""
    requests = server.requests
    if last is not None:
        for index in range(len(requests) - 1, -1, -1):
            if requests[index] is last:
                return requests[index + 1 :]
    return requests


def run_serve(args: argparse.Namespace) -> int:
    """Run FakeSegment until a signal, printing what it receives; return the exit status."""
    from simple_segment.testing import FakeSegment  # noqa: PLC0415 - only this command needs the server

    stdout = sys.stdout
    if isinstance(stdout, io.TextIOWrapper):
        stdout.reconfigure(errors="backslashreplace")  # any message prints, whatever the console's encoding
    lock = threading.Lock()
    stop = threading.Event()

    def show(msg: dict[str, Any]) -> None:
        line = json.dumps(msg, separators=(",", ":")) if args.json else describe(msg)
        with lock:
            try:
                stdout.write(line + "\n")
                stdout.flush()
            except (OSError, ValueError):  # the reader went away (a closed pipe): stop quietly
                stop.set()

    server = FakeSegment(args.bind, args.port, max_messages=args.keep, max_requests=args.keep, on_message=show)
    try:
        server.start()
    except OSError as exc:
        raise UsageError(f"cannot listen on {args.bind}:{args.port}: {exc.strerror or exc}") from None
    with _stop_on_signals(stop), server:
        # With --json, stdout carries nothing but messages, so it can be piped into jq.
        chatter = sys.stderr if args.json else stdout
        chatter.write(f"listening on {server.url}\n")
        chatter.flush()
        sys.stderr.write(f"point your client's host at {server.url} (any write key); Ctrl-C stops\n")
        sys.stderr.flush()
        last: RecordedRequest | None = None
        while not stop.wait(0.2):
            for request in _new_requests(server, last):
                last = request
                if not 200 <= request.status < 300:  # noqa: PLR2004 - the success range
                    answer = f"answered {request.status}" if request.status else "dropped"
                    sys.stderr.write(f"rejected: {one_line(request.method)} {one_line(request.path)} {answer}\n")
                    sys.stderr.flush()
    return EXIT_OK
