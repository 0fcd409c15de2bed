"""The ``import`` command: a file of JSON lines (one message a line) sent in batches.

A bad line is reported as ``line N: reason`` and the rest still go.  The fields a
line may carry are the wire names of its call's builder parameters (``calls.FIELDS``).
"""

from __future__ import annotations

import argparse
import json
import os
import stat
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, BinaryIO

from simple_segment.errors import ValidationError

from .calls import CALL_ARGS, CALLS, FIELDS
from .common import EXIT_DELIVERY, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, UsageError, make_client, parse_timestamp

if TYPE_CHECKING:
    from simple_segment._batch import Batch

__all__ = ["add_import_parser", "run_import"]

_WIRE_NAMES = {field.wire: name for name, field in FIELDS.items()}
"""camelCase wire name -> the call's argument name."""
# Fields Segment adds on its side (or on the way): an exported message may carry them;
# they are not arguments of a call and are left out.
_IGNORED_FIELDS = frozenset({"writeKey", "sentAt", "receivedAt", "version"})

_MAX_LINE_BYTES = 1 << 20
"""Longest import line read (1 MiB): a message is at most 32 KB once serialized, so a
longer line cannot be valid, and reading it whole would let one line fill memory."""


class _BadLineError(Exception):
    """An import line that cannot become a call; its text is the reason."""


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


def _read_lines(handle: BinaryIO) -> Iterator[tuple[int, bytes | None, int]]:
    """Yield ``(line number, line, bytes read)``, one line at a time.

    A line longer than :data:`_MAX_LINE_BYTES` is skipped without being held in
    memory and yielded as None.
    """
    number = 0
    while True:
        line = handle.readline(_MAX_LINE_BYTES + 1)
        if not line:
            return
        number += 1
        size = len(line)
        if size > _MAX_LINE_BYTES and not line.endswith(b"\n"):
            while True:
                rest = handle.readline(_MAX_LINE_BYTES)
                size += len(rest)
                if not rest or rest.endswith(b"\n"):
                    break
            yield number, None, size
            continue
        yield number, line, size


def _line_record(line: bytes | None, number: int) -> dict[str, Any] | None:
    """Decode one line to a JSON object; None for a blank line.

    Raises :class:`_BadLineError` saying why the line is not one.
    """
    if line is None:
        raise _BadLineError(f"longer than {_MAX_LINE_BYTES:,} bytes; a message is at most 32 KB")
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _BadLineError(f"not valid UTF-8 (byte {exc.start + 1})") from None
    if number == 1:
        text = text.removeprefix("\ufeff")
    if not text.strip():
        return None
    try:
        record = json.loads(text)
    except ValueError as exc:
        raise _BadLineError(f"not valid JSON ({exc})") from None
    except RecursionError:
        raise _BadLineError("nested too deep to read") from None
    if not isinstance(record, dict):
        raise _BadLineError(f"not a JSON object but {type(record).__name__}")
    return record


def _line_call(record: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Map one message in wire names to ``(call, keyword arguments)``.

    Raises :class:`_BadLineError` saying why it cannot be a call.
    """
    call = record.get("type")
    if not isinstance(call, str) or call not in CALL_ARGS:
        raise _BadLineError(f"type {call!r} is not one of {', '.join(CALLS)}")
    allowed = CALL_ARGS[call]
    kwargs: dict[str, Any] = {}
    for key, value in record.items():
        if key == "type" or key in _IGNORED_FIELDS:
            continue
        name = _WIRE_NAMES.get(key)
        if name is None or name not in allowed:
            raise _BadLineError(f"field {key!r} does not belong in a {call} message")
        kwargs[name] = value
    timestamp = kwargs.get("timestamp")
    if isinstance(timestamp, str):
        try:
            kwargs["timestamp"] = parse_timestamp(timestamp)
        except ValueError as exc:
            raise _BadLineError(f"timestamp: {exc}") from None
    return call, kwargs


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
