"""The ``import`` command: a file of JSON lines (one message a line) sent in batches.

A bad line is reported as ``line N: reason`` and the rest still go.  The fields a
line may carry are the wire names of its call's builder parameters (``calls.FIELDS``);
reading a line and making it a call is :mod:`simple_segment._backfill`'s, shared with
``import --jobs`` (:mod:`simple_segment._import_jobs`), Dask and Spark.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import os
import shlex
import signal
import stat
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, BinaryIO

from simple_segment._backfill import BadRecordError as _BadLineError
from simple_segment._backfill import decode_line as _line_record
from simple_segment._backfill import read_lines as _read_lines
from simple_segment._backfill import record_call as _line_call
from simple_segment._import_jobs import run_import_jobs
from simple_segment.errors import ValidationError

from .common import (
    EXIT_DELIVERY,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_TERMINATED,
    EXIT_USAGE,
    PROG,
    UsageError,
    make_client,
    one_line,
)

if TYPE_CHECKING:
    from types import FrameType

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
        "2 bad lines, 130 or 143 stopped by SIGINT (Ctrl-C) or SIGTERM: the summary then tells the messages "
        "delivered, sent with outcome unknown and not sent, and the line to resume from.",
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
        # Around the summary too: after a first signal, a second one must not cut it short.
        with _signals_interrupt():
            try:
                return _import(args, source)
            except _Interrupted as exc:  # outside the loop: making the client, or the final summary
                sys.stderr.write(f"{PROG}: error: interrupted by {signal.Signals(exc.signum).name}\n")
                return _exit_code(exc)
    finally:
        if source is not sys.stdin.buffer:
            source.close()


class _Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived; ``in_flight`` says whether a request had been handed to delivery.

    A KeyboardInterrupt, so that nothing on the way up (which catches ``Exception``)
    swallows it, and a batch block it leaves drops what is pending instead of sending it.
    """

    def __init__(self, signum: int, *, in_flight: bool) -> None:
        super().__init__(signum)
        self.signum = signum
        self.in_flight = in_flight


def _exit_code(interrupted: _Interrupted) -> int:
    """Return the shell's status for the signal: 128 + its number (130 for SIGINT, 143 for SIGTERM)."""
    return EXIT_TERMINATED if interrupted.signum == signal.SIGTERM else EXIT_INTERRUPTED


def _delivering(frame: FrameType | None) -> bool:
    """Return whether ``frame`` is inside a request's delivery (the outbox's flush).

    From the moment the outbox takes a request's messages they are on their way:
    Segment may or may not have them when the signal lands.
    """
    while frame is not None:
        if frame.f_code.co_name == "flush" and frame.f_globals.get("__name__") == "simple_segment._delivery":
            return True
        frame = frame.f_back
    return False


@contextlib.contextmanager
def _signals_interrupt() -> Iterator[None]:
    """Turn SIGINT and SIGTERM into :class:`_Interrupted` inside the block (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_signal(signum: int, frame: FrameType | None) -> None:
        for other in _SIGNALS:  # until the block ends: the summary is written in it
            signal.signal(other, signal.SIG_IGN)
        raise _Interrupted(signum, in_flight=_delivering(frame))

    previous = {signum: signal.signal(signum, on_signal) for signum in _SIGNALS}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class _Tally:
    """Which line each message not yet known delivered (or failed) came from, in order.

    Requests go out in the order of the lines, so the messages still open are the
    newest ones: after an interruption the first of them names the line to resume at.
    """

    def __init__(self) -> None:
        self.open: collections.deque[tuple[int, bool]] = collections.deque()  # (line, has a messageId)
        self.line = 0  # the line being read or handled
        self.done = 0  # the last line handled to the end
        self.eof = False  # every line was read

    def accept(self, line: int, *, has_id: bool) -> None:
        self.open.append((line, has_id))

    def settle(self, still_open: int) -> None:
        """Forget the oldest messages, keeping ``still_open`` (delivered or failed ones are settled)."""
        while len(self.open) > max(still_open, 0):
            self.open.popleft()


def _import(args: argparse.Namespace, source: BinaryIO) -> int:  # noqa: C901, PLR0915 - one loop, its counters and its ending
    progress = _Progress(sys.stderr, _input_size(source))
    failed = 0

    def report(text: str) -> None:
        progress.clear()
        sys.stderr.write(text + "\n")
        sys.stderr.flush()

    def on_error(exc: Exception, messages: list[Any]) -> None:
        nonlocal failed
        failed += len(messages)
        report(f"error: {len(messages)} messages not delivered: {one_line(str(exc))}")

    client = make_client(args, on_error=on_error)
    batch: Batch = client.batch()
    tally = _Tally()
    bad = accepted = lines = read = 0
    interrupted: _Interrupted | None = None
    started = time.monotonic()
    try:
        with client, batch:
            for number, line, size in _read_lines(source):
                lines, read, tally.line = number, read + size, number
                try:
                    record = _line_record(line, number)
                    if record is None:
                        tally.done = number
                        continue
                    call, kwargs = _line_call(record)
                    getattr(batch, call)(**kwargs)
                except (_BadLineError, ValidationError) as exc:
                    bad += 1
                    report(f"line {number}: {exc}")
                    tally.done = number
                    continue
                accepted += 1
                if not args.dry_run:
                    tally.accept(number, has_id="messageId" in record)
                    tally.settle(accepted - batch.messages_sent - failed)
                tally.done = number
                progress.update(lines, read, accepted if args.dry_run else batch.messages_sent, started)
            tally.eof = True  # what is left is the block's end: sending the last request
    except _Interrupted as exc:
        interrupted = exc
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
    if interrupted is None:
        sys.stdout.write(summary + "\n")
        if failed:
            return EXIT_DELIVERY
        return EXIT_USAGE if bad else EXIT_OK
    if not args.dry_run:
        tally.settle(accepted - count - failed)  # a request may have ended between the last line and the signal
    return _interrupted_summary(args, interrupted, summary, tally, failed=failed)


def _interrupted_summary(
    args: argparse.Namespace, interrupted: _Interrupted, summary: str, tally: _Tally, *, failed: int
) -> int:
    """Print what an interruption left where (stdout) and how to resume (stderr); return 130 or 143."""
    name = signal.Signals(interrupted.signum).name
    code = _exit_code(interrupted)
    at = max(tally.done, tally.line)
    if args.dry_run:
        sys.stdout.write(f"interrupted by {name} at line {at}: {summary}\n")
        return code
    unknown = len(tally.open) if interrupted.in_flight else 0
    unsent = len(tally.open) - unknown
    sys.stdout.write(
        f"interrupted by {name} at line {at}: {summary}; "
        f"{unknown} sent, outcome unknown (the request in flight); {unsent} read but not sent\n"
    )
    sys.stdout.flush()
    pending = list(tally.open)
    resume = pending[unknown][0] if unsent else tally.done + 1
    if tally.eof and not unsent:
        doubt = "only the request in flight is in doubt" if unknown else "nothing is left to resume"
        advice = [f"every line was read and handed to a request: {doubt}"]
    elif args.file == "-":
        advice = [f"to resume, send the input again from line {resume}"]
    else:
        name = one_line(shlex.quote(args.file))
        advice = [f"to resume, send {name} again from line {resume} (tail -n +{resume} {name} | {PROG} import - ...)"]
    if unknown:
        first, last = pending[0][0], pending[unknown - 1][0]
        without_id = sum(1 for _, has_id in pending[:unknown] if not has_id)
        advice.append(
            f"the request in flight held lines {first}-{last}: Segment may or may not have them; "
            f"to be sure none is lost, send again from line {first}"
        )
        if without_id:
            advice.append(
                f"{without_id} of them have no messageId in the file, and import gives such a line a new random "
                "messageId on every run, so Segment cannot de-duplicate them if they are sent twice"
            )
        else:
            advice.append("they all carry a messageId, so Segment de-duplicates any that arrived twice")
    advice.append(
        "a messageId on every line makes any re-run safe (Segment de-duplicates on it); "
        "in code, simple_segment.stable_ids(seed) gives the same ids on every run"
    )
    if failed:
        advice.append(f"the {failed} messages reported failed above are not resent by resuming")
    sys.stderr.write("".join(f"{PROG}: {line}\n" for line in advice))
    return code
