"""The ``import`` command: a file of JSON lines (one message a line) sent in batches.

A bad line is reported as ``line N: reason`` and the rest still go.  The fields a
line may carry are the wire names of its call's builder parameters (``calls.FIELDS``);
reading a line and making it a call is :mod:`simple_segment._backfill`'s, shared with
``import --jobs`` (:mod:`simple_segment._import_jobs`), Dask and Spark.
"""

from __future__ import annotations

import argparse
import os
import stat
import sys
import time
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, BinaryIO

from simple_segment._backfill import BadRecordError as _BadLineError
from simple_segment._backfill import decode_line as _line_record
from simple_segment._backfill import read_lines as _read_lines
from simple_segment._backfill import record_call as _line_call
from simple_segment._import_jobs import run_import_jobs
from simple_segment.errors import ValidationError

from .common import EXIT_DELIVERY, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, UsageError, make_client

if TYPE_CHECKING:
    from simple_segment._batch import Batch

__all__ = ["add_import_parser", "run_import"]


def add_import_parser(commands: Any, common: argparse.ArgumentParser) -> None:  # noqa: ANN401 - argparse's private subparsers action
    """Add the ``import`` subcommand to ``commands``, with ``common``'s flags."""
    imp = commands.add_parser(
        "import", parents=[common], help="send a file of JSON lines (one message a line) in batches",
        description="Send one message per line, in Segment's wire names (type, userId, anonymousId, event, "
        "properties, traits, context, integrations, timestamp, messageId, previousId, groupId, name, category), "
        "in requests of up to 500 KB / 2,500 messages.  Timestamps are kept.  A bad line is reported as "
        "'line N: reason' and the rest still go.  Exit status: 0 all delivered, 1 a request failed, "
        "2 bad lines.",
    )
    imp.add_argument("file", help="a file of JSON lines, or - for standard input")
    # Any of these four runs the resumable, parallel import (simple_segment/_import_jobs.py).
    imp.add_argument(
        "--jobs", type=int, metavar="N",
        help="worker processes, each reading its own part of the file (0: one per core); lines get stable "
        "messageIds, so running the import again sends no duplicates",
    )
    imp.add_argument("--seed", help="the seed of the stable messageIds (default: from the file's path, size, time)")
    imp.add_argument("--resume", action="store_true", help="send only what the last run did not deliver")
    imp.add_argument("--state", metavar="PATH", help="the run's state file (default: FILE.import-state.json)")
    imp.add_argument("--plan", metavar="PLAN.json", help="refuse lines that break this tracking plan, as bad lines")


def _open_input(path: str) -> BinaryIO:
    if path == "-":
        return sys.stdin.buffer
    try:
        return Path(path).open("rb")
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None


def _input_size(handle: BinaryIO) -> int | None:
    """Return the number of bytes left to read when ``handle`` is a regular file, else None."""
    try:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            return None
        return max(info.st_size - handle.tell(), 0)
    except (OSError, ValueError):
        return None


class _Progress:
    """A progress bar on one line of ``stream``, drawn only when it is a terminal.

    With a known input size it shows a bar and a percentage; always the lines read,
    the messages sent and the rate.  Redrawn at most five times a second.
    """

    _INTERVAL = 0.2
    _WIDTH = 24

    def __init__(self, stream: IO[str], total_bytes: int | None) -> None:
        try:
            self.enabled = stream.isatty()
        except (AttributeError, ValueError):
            self.enabled = False
        self._stream = stream
        self._total = total_bytes or None
        self._next = 0.0
        self._shown = 0

    def update(self, lines: int, read: int, sent: int, started: float, *, force: bool = False) -> None:
        """Redraw, if it is time to (or ``force``)."""
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now < self._next:
            return
        self._next = now + self._INTERVAL
        rate = sent / max(now - started, 1e-9)
        text = f"{lines:,} lines  {sent:,} sent  {rate:,.0f} msg/s"
        if self._total:
            fraction = min(read / self._total, 1.0)
            filled = int(fraction * self._WIDTH)
            text = f"[{'#' * filled}{'-' * (self._WIDTH - filled)}] {fraction:4.0%}  {text}"
        # Spaces rather than an ANSI erase, which not every console understands.
        self._stream.write("\r" + text.ljust(self._shown))
        self._stream.flush()
        self._shown = len(text)

    def clear(self) -> None:
        """Blank the line, so another message can be written; the next update redraws."""
        if self._shown:
            self._stream.write("\r" + " " * self._shown + "\r")
            self._shown = 0
            self._next = 0.0

    def finish(self) -> None:
        """Leave the last drawing on its own line."""
        if self._shown:
            self._stream.write("\n")
            self._stream.flush()
            self._shown = 0


def run_import(args: argparse.Namespace) -> int:
    """Send the lines of ``args.file``; return the exit status."""
    if args.jobs is not None or args.seed is not None or args.resume or args.state is not None:
        return run_import_jobs(args, make_client, _Progress)
    source = _open_input(args.file)
    try:
        return _import(args, source)
    finally:
        if source is not sys.stdin.buffer:
            source.close()


def _import(args: argparse.Namespace, source: BinaryIO) -> int:  # noqa: C901 - one loop, its counters and its ending
    progress = _Progress(sys.stderr, _input_size(source))
    failed = 0

    def report(text: str) -> None:
        progress.clear()
        sys.stderr.write(text + "\n")
        sys.stderr.flush()

    def on_error(exc: Exception, messages: list[Any]) -> None:
        nonlocal failed
        failed += len(messages)
        report(f"error: {len(messages)} messages not delivered: {exc}")

    client = make_client(args, on_error=on_error)
    batch: Batch = client.batch()
    bad = accepted = lines = read = 0
    interrupted = False
    started = time.monotonic()
    try:
        with client, batch:
            for number, line, size in _read_lines(source):
                lines, read = number, read + size
                try:
                    record = _line_record(line, number)
                    if record is None:
                        continue
                    call, kwargs = _line_call(record)
                    getattr(batch, call)(**kwargs)
                except (_BadLineError, ValidationError) as exc:
                    bad += 1
                    report(f"line {number}: {exc}")
                    continue
                accepted += 1
                progress.update(lines, read, accepted if args.dry_run else batch.messages_sent, started)
    except KeyboardInterrupt:
        interrupted = True
    seconds = time.monotonic() - started
    count = accepted if args.dry_run else batch.messages_sent
    progress.update(lines, read, count, started, force=True)
    progress.finish()
    rate = count / max(seconds, 1e-9)
    if args.dry_run:
        summary = (
            f"validated {count} messages from {lines} lines in {seconds:.2f} s ({rate:.0f} messages/s); "
            f"dry run, nothing sent; {bad} bad lines"
        )
    else:
        summary = (
            f"delivered {count} messages in {batch.requests_sent} requests ({batch.bytes_sent} bytes) "
            f"in {seconds:.2f} s ({rate:.0f} messages/s); {bad} bad lines, {failed} failed"
        )
    if interrupted:
        unsent = 0 if args.dry_run else accepted - count - failed
        summary = f"interrupted after line {lines}: {summary}, {unsent} read but not sent"
    sys.stdout.write(summary + "\n")
    if interrupted:
        return EXIT_INTERRUPTED
    if failed:
        return EXIT_DELIVERY
    return EXIT_USAGE if bad else EXIT_OK
