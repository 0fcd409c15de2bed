"""The ``simple-segment`` command (also ``python -m simple_segment``).

Commands: the six calls (``track`` ...), ``import`` (JSON lines, for backfills),
``serve`` (a local FakeSegment that prints what it receives) and ``demo``.
Exit codes: 0 delivered, 1 delivery failed, 2 usage or invalid input (130 when
interrupted).  Errors are one line on stderr; ``--debug`` adds the traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import io
import json
import logging
import math
import os
import signal
import stat
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, BinaryIO, NoReturn

from ._options import OnError, Options
from ._version import VERSION
from ._wire import encode_message
from .client import Client
from .errors import DeliveryError, SegmentError, ValidationError
from .plan import _cli as plan_cli

if TYPE_CHECKING:
    from ._batch import Batch
    from .testing import FakeSegment, RecordedRequest

__all__ = ["EXIT_DELIVERY", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_USAGE", "main"]

EXIT_OK = 0
EXIT_DELIVERY = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # the shell's 128 + SIGINT

PROG = "simple-segment"

_CALLS = ("identify", "track", "page", "screen", "group", "alias")
# camelCase wire name -> the call's argument name, for `import`.
_WIRE_ARGS = {
    "userId": "user_id",
    "anonymousId": "anonymous_id",
    "event": "event",
    "properties": "properties",
    "traits": "traits",
    "context": "context",
    "integrations": "integrations",
    "timestamp": "timestamp",
    "messageId": "message_id",
    "previousId": "previous_id",
    "groupId": "group_id",
    "name": "name",
    "category": "category",
}
# Fields Segment adds on its side (or on the way): an exported message may carry them;
# they are not arguments of a call and are left out.
_IGNORED_FIELDS = frozenset({"writeKey", "sentAt", "receivedAt", "version"})
_CALL_ARGS = {
    "identify": ("user_id", "anonymous_id", "traits", "context", "integrations", "timestamp", "message_id"),
    "track": (
        "user_id", "anonymous_id", "event", "properties", "context", "integrations", "timestamp", "message_id",
    ),
    "alias": ("previous_id", "user_id", "context", "integrations", "timestamp", "message_id"),
    "group": (
        "user_id", "anonymous_id", "group_id", "traits", "context", "integrations", "timestamp", "message_id",
    ),
    "page": (
        "user_id", "anonymous_id", "name", "category", "properties", "context", "integrations", "timestamp",
        "message_id",
    ),
}
_CALL_ARGS["screen"] = _CALL_ARGS["page"]
_JSON_ARGS = frozenset({"properties", "traits", "context", "integrations"})
_FIELD_HELP = {
    "user_id": "the user's id in your database",
    "anonymous_id": "an id for a user not known yet (a user id or an anonymous id is required)",
    "previous_id": "the id being merged into --user-id",
    "group_id": "the group's (account's, company's) id",
    "event": "the event name, e.g. 'Order Completed'",
    "name": "the page or screen name",
    "category": "the page or screen category",
    "properties": "a JSON object of event properties",
    "traits": "a JSON object of traits",
    "context": "a JSON object merged into the message's context",
    "integrations": 'a JSON object selecting destinations, e.g. \'{"All": false}\'',
    "timestamp": "when it happened, ISO-8601 (e.g. 2024-05-06T07:08:09Z; default now)",
    "message_id": "a unique id; Segment de-duplicates on it (default a new uuid4)",
}

_MAX_LINE_BYTES = 1 << 20
"""Longest import line read (1 MiB): a message is at most 32 KB once serialized, so a
longer line cannot be valid, and reading it whole would let one line fill memory."""
_SERVE_KEEP = 1_000
"""How many messages and requests ``serve`` keeps: it prints them and forgets."""


class UsageError(Exception):
    """Bad command-line input: printed as one line, exit status 2."""


class _BadLineError(Exception):
    """An import line that cannot become a call; its text is the reason."""


class _Parser(argparse.ArgumentParser):
    """argparse, with usage errors on one line (exit status 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


# -- argument types ---------------------------------------------------------------


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON: {exc}") from None
    except RecursionError:
        raise argparse.ArgumentTypeError("nested too deep to read") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"must be a JSON object ({{...}}), not {type(value).__name__}")
    return value


def parse_timestamp(text: str) -> dt.datetime:
    """Parse ISO-8601 (a trailing ``Z`` means UTC); raise ValueError saying why not."""
    try:
        return dt.datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text)
    except ValueError:
        raise ValueError(f"not an ISO-8601 timestamp: {text!r}") from None


def _timestamp(text: str) -> dt.datetime:
    try:
        return parse_timestamp(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a number of seconds > 0, not {text!r}")
    return value


def _retries(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 0, not {text!r}")
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 65535:  # noqa: PLR2004 - the TCP port range
        raise argparse.ArgumentTypeError(f"must be a port number 0-65535 (0 picks a free one), not {text!r}")
    return value


# -- the parser -------------------------------------------------------------------


def _build_parser() -> argparse.ArgumentParser:
    debug = _Parser(add_help=False)
    debug.add_argument("--debug", action="store_true", help="show tracebacks and debug logging")

    common = _Parser(add_help=False, parents=[debug])
    common.add_argument("--write-key", help="the source's write key (default: $SEGMENT_WRITE_KEY)")
    common.add_argument("--host", help="API host or base URL (default: $SEGMENT_HOST, else https://api.segment.io)")
    common.add_argument("--gzip", action="store_true", help="gzip request bodies")
    common.add_argument(
        "--timeout", type=_positive_seconds, default=Options.timeout, metavar="SECONDS",
        help=f"timeout of each attempt (default {Options.timeout:g})",
    )
    common.add_argument(
        "--max-retries", type=_retries, default=Options.max_retries, metavar="N",
        help=f"retries after a failed attempt (default {Options.max_retries})",
    )
    common.add_argument(
        "--dry-run", action="store_true",
        help="send nothing: print the exact request (write key redacted); for import, validate every line",
    )

    parser = _Parser(
        prog=PROG,
        description="Send events to Segment's HTTP Tracking API, synchronously: each command returns "
        "once Segment has accepted what it sent.",
        epilog="Exit status: 0 delivered, 1 delivery failed, 2 usage or invalid input. "
        f"Try it with no account: {PROG} demo",
    )
    parser.add_argument("--version", action="version", version=f"simple_segment {VERSION}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    for call in _CALLS:
        sub = commands.add_parser(call, parents=[common], help=f"send one {call} call", description=_call_doc(call))
        fields = sub.add_argument_group("message fields")
        for name in _CALL_ARGS[call]:
            flag = "--" + name.replace("_", "-")
            if name in _JSON_ARGS:
                fields.add_argument(flag, dest=name, type=_json_object, metavar="JSON", help=_FIELD_HELP[name])
            elif name == "timestamp":
                fields.add_argument(flag, dest=name, type=_timestamp, metavar="ISO-8601", help=_FIELD_HELP[name])
            else:
                metavar = "ID" if name.endswith("_id") else name.upper()
                fields.add_argument(flag, dest=name, metavar=metavar, help=_FIELD_HELP[name])

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

    serve = commands.add_parser(
        "serve", parents=[debug], help="run a local Segment-compatible server and print what it receives",
        description="Run FakeSegment, a Segment-compatible server that validates like the real API, and print "
        "each message it accepts as one line.  Point your app's host at the URL it prints.  Tests in other "
        "processes can read and script it over HTTP: GET /_messages, GET /_requests (JSON lines), "
        'POST /_script (e.g. {"status": 503, "times": 3}), POST /_clear.  Stop with Ctrl-C.',
    )
    serve.add_argument(
        "--bind", default="127.0.0.1", metavar="ADDRESS", help="address to listen on (default 127.0.0.1)"
    )
    serve.add_argument("--port", type=_port, default=8787, help="port (default 8787; 0 picks a free one)")
    serve.add_argument(
        "--json", action="store_true",
        help="print only JSON lines on stdout, one per accepted message (for jq); everything else goes to stderr",
    )

    plan_cli.add_parser(commands)
    commands.add_parser(
        "demo", parents=[debug], help="send every call and a batch to an embedded local server; no account needed",
        description="Start FakeSegment on loopback, send each call type and a batch through the real client over "
        "real HTTP, and show what the server received and how long each call took.",
    )
    return parser


def _call_doc(call: str) -> str:
    needs = {
        "identify": "a user id or anonymous id",
        "track": "a user id or anonymous id, and --event",
        "page": "a user id or anonymous id",
        "screen": "a user id or anonymous id",
        "group": "a user id or anonymous id, and --group-id",
        "alias": "--previous-id and --user-id",
    }[call]
    return f"Send one {call} call and wait until Segment has accepted it.  Needs {needs}."


# -- clients ----------------------------------------------------------------------


def _client(args: argparse.Namespace, *, on_error: OnError | None = None) -> Client:
    key = args.write_key or os.environ.get("SEGMENT_WRITE_KEY")
    if not key:
        if not args.dry_run:
            raise UsageError("no write key: pass --write-key or set SEGMENT_WRITE_KEY")
        key = "dry-run"  # never sent, and redacted when printed
    host = args.host or os.environ.get("SEGMENT_HOST") or None
    return Client(
        key,
        host=host,
        gzip=args.gzip,
        timeout=args.timeout,
        max_retries=args.max_retries,
        send=not args.dry_run,
        on_error=on_error,
        tracking_plan=getattr(args, "plan", None),  # import --plan: a violating line raises PlanViolationError
        # Room for every attempt the flags ask for: the library's default budget
        # would cut a long --timeout short.
        total_timeout=max(Options.total_timeout, args.timeout * (args.max_retries + 1)),
    )


# -- the six calls ----------------------------------------------------------------


def _run_call(args: argparse.Namespace) -> int:
    kwargs = {name: getattr(args, name) for name in _CALL_ARGS[args.command] if getattr(args, name) is not None}
    with _client(args) as client:
        _, msg = getattr(client, args.command)(**kwargs)
        if args.dry_run:
            _print_request(client, msg, sys.stdout)
        else:
            sys.stdout.write(f"delivered {msg['type']} {msg['messageId']}\n")
    return EXIT_OK


def _print_request(client: Client, msg: dict[str, Any], out: IO[str]) -> None:
    """Print the request ``client`` would send for ``msg``, with the write key redacted."""
    preview = client._delivery.preview([encode_message(msg)])  # noqa: SLF001 - the client's own request
    out.write(f"POST {client.url} HTTP/1.1\n")
    for name, value in preview.headers.items():
        out.write(f"{name}: {value}\n")
    out.write("\n" + preview.body.decode("utf-8") + "\n")
    if client.gzip:
        out.write(f"(the body is sent gzip-compressed: {preview.headers['Content-Length']} bytes)\n")


# -- import -----------------------------------------------------------------------


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
    if not isinstance(call, str) or call not in _CALL_ARGS:
        raise _BadLineError(f"type {call!r} is not one of {', '.join(_CALLS)}")
    allowed = _CALL_ARGS[call]
    kwargs: dict[str, Any] = {}
    for key, value in record.items():
        if key == "type" or key in _IGNORED_FIELDS:
            continue
        name = _WIRE_ARGS.get(key)
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


def _run_import(args: argparse.Namespace) -> int:
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

    client = _client(args, on_error=on_error)
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


# -- serve ------------------------------------------------------------------------


def _describe(msg: dict[str, Any], *, timestamp: bool = True) -> str:
    """One readable line for a message: [timestamp] type who what."""
    kind = str(msg.get("type", "?"))
    user, anonymous = msg.get("userId"), msg.get("anonymousId")
    who = str(user) if user is not None else f"anon:{anonymous}" if anonymous is not None else "-"
    what: Any = {
        "track": msg.get("event"),
        "page": " / ".join(str(part) for part in (msg.get("category"), msg.get("name")) if part is not None),
        "screen": " / ".join(str(part) for part in (msg.get("category"), msg.get("name")) if part is not None),
        "group": f"group {msg.get('groupId')}",
        "alias": f"{msg.get('previousId')} -> {user}",
        "identify": "",
    }.get(kind, "")
    data = msg.get("properties") if kind in {"track", "page", "screen"} else msg.get("traits")
    if data:
        what = f"{what} {json.dumps(data, ensure_ascii=False, separators=(', ', ': '))}".strip()
    line = f"{kind:<8} {who:<16} {what}".rstrip()
    return f"{msg.get('timestamp', '')}  {line}" if timestamp else line


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


def _run_serve(args: argparse.Namespace) -> int:
    from .testing import FakeSegment  # noqa: PLC0415 - only this command needs the server

    stdout = sys.stdout
    if isinstance(stdout, io.TextIOWrapper):
        stdout.reconfigure(errors="backslashreplace")  # any message prints, whatever the console's encoding
    lock = threading.Lock()
    stop = threading.Event()

    def show(msg: dict[str, Any]) -> None:
        line = json.dumps(msg, separators=(",", ":")) if args.json else _describe(msg)
        with lock:
            try:
                stdout.write(line + "\n")
                stdout.flush()
            except (OSError, ValueError):  # the reader went away (a closed pipe): stop quietly
                stop.set()

    server = FakeSegment(args.bind, args.port, max_messages=_SERVE_KEEP, max_requests=_SERVE_KEEP, on_message=show)
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
                    sys.stderr.write(f"rejected: {request.method} {request.path} {answer}\n")
                    sys.stderr.flush()
    return EXIT_OK


# -- demo -------------------------------------------------------------------------


def _run_demo(_: argparse.Namespace) -> int:
    from .testing import FakeSegment  # noqa: PLC0415 - only this command needs the server

    out = sys.stdout
    # Proxies switched off: a proxy set in the environment must not stand between the
    # client and a server on loopback.
    no_proxy = {"http": "", "https": ""}
    with FakeSegment() as server, Client("demo-write-key", host=server.url, proxies=no_proxy) as client:
        out.write(f"FakeSegment listening on {server.url}; each call below is a real HTTP POST by Client.\n\n")
        out.write(f"{'call':<10}{'ms':>8}  what the server received\n")
        calls: list[tuple[str, Callable[[], Any]]] = [
            ("identify", lambda: client.identify("user-1", {"email": "ada@example.com", "plan": "pro"})),
            ("track", lambda: client.track("user-1", "Order Completed", {"revenue": 39.99, "items": 3})),
            ("page", lambda: client.page("user-1", "Docs", "Install", {"path": "/install"})),
            ("screen", lambda: client.screen("user-1", "Onboarding", "Welcome")),
            ("group", lambda: client.group("user-1", "acme-inc", {"name": "Acme", "seats": 12})),
            ("alias", lambda: client.alias("anon-42", "user-1")),
        ]
        for name, call in calls:
            started = time.perf_counter()
            _, msg = call()
            elapsed = (time.perf_counter() - started) * 1000
            received = server.by_message_id(msg["messageId"])
            shown = _describe(received, timestamp=False) if received else "NOT RECEIVED"
            out.write(f"{name:<10}{elapsed:>8.2f}  {shown}\n")
        started = time.perf_counter()
        with client.batch() as batch:
            for i in range(1000):
                batch.track(f"user-{i % 50}", "Song Played", {"track": i, "seconds": 180 + i % 60})
        elapsed = (time.perf_counter() - started) * 1000
        out.write(
            f"\nbatch of 1,000 track calls: {batch.messages_sent} messages in {batch.requests_sent} request(s), "
            f"{batch.bytes_sent:,} bytes, {elapsed:.1f} ms\n"
        )
        total = len(server.messages)
        out.write(f"server recorded {total} messages in {len(server.requests)} requests\n")
        out.write(f"\nNext: {PROG} serve, then point your app's host at the URL it prints.\n")
    return EXIT_OK if total == 1006 else EXIT_DELIVERY  # noqa: PLR2004 - six calls and the batch


# -- main -------------------------------------------------------------------------


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
        "import": _run_import,
        "serve": _run_serve,
        "demo": _run_demo,
        "plan": plan_cli.run,
    }
    try:
        return runners.get(args.command, _run_call)(args)
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
        sys.stderr.write(f"{PROG}: error: {message}\n")
        return code
