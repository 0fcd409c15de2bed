"""The ``simple-segment`` command (also ``python -m simple_segment``).

Commands: the six calls (``track`` ...), ``import`` (JSON lines, for backfills),
``serve`` (a local FakeSegment that prints what it receives) and ``demo``.
Exit codes: 0 delivered, 1 delivery failed, 2 usage or invalid input.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from ._version import VERSION
from ._wire import Envelope, encode_message
from .client import Client
from .errors import DeliveryError, SegmentError, ValidationError

EXIT_OK = 0
EXIT_DELIVERY = 1
EXIT_USAGE = 2

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
_CALL_ARGS = {
    "identify": {"user_id", "traits", "context", "timestamp", "anonymous_id", "integrations", "message_id"},
    "track": {"user_id", "event", "properties", "context", "timestamp", "anonymous_id", "integrations", "message_id"},
    "alias": {"previous_id", "user_id", "context", "timestamp", "integrations", "message_id"},
    "group": {"user_id", "group_id", "traits", "context", "timestamp", "anonymous_id", "integrations", "message_id"},
    "page": {
        "user_id", "category", "name", "properties", "context", "timestamp", "anonymous_id", "integrations",
        "message_id",
    },
}
_CALL_ARGS["screen"] = _CALL_ARGS["page"]


class UsageError(Exception):
    """Bad command-line input: printed as one line, exit status 2."""


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("must be a JSON object")
    return value


def parse_timestamp(text: str) -> dt.datetime:
    """Parse ISO-8601 (a trailing ``Z`` means UTC)."""
    try:
        return dt.datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO-8601 timestamp: {text!r}") from None


def _timestamp(text: str) -> dt.datetime:
    return parse_timestamp(text)


def _build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--write-key", help="the source's write key (default: $SEGMENT_WRITE_KEY)")
    common.add_argument("--host", help="API host (default: $SEGMENT_HOST or https://api.segment.io)")
    common.add_argument("--gzip", action="store_true", help="gzip request bodies")
    common.add_argument("--timeout", type=float, default=15.0, help="seconds per attempt (default 15)")
    common.add_argument("--max-retries", type=int, default=3, help="retries after the first attempt (default 3)")
    common.add_argument("--dry-run", action="store_true", help="print the request and send nothing")
    common.add_argument("--debug", action="store_true", help="show tracebacks and debug logging")

    parser = argparse.ArgumentParser(
        prog="simple-segment", description="Send events to Segment's HTTP Tracking API, synchronously."
    )
    parser.add_argument("--version", action="version", version=f"simple_segment {VERSION}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    for call in _CALLS:
        sub = commands.add_parser(call, parents=[common], help=f"send one {call} call")
        args = _CALL_ARGS[call]
        for name in ("user_id", "anonymous_id", "previous_id", "group_id", "event", "name", "category"):
            if name in args:
                sub.add_argument("--" + name.replace("_", "-"), dest=name)
        for name in ("properties", "traits", "context", "integrations"):
            if name in args:
                sub.add_argument("--" + name, dest=name, type=_json_object, metavar="JSON")
        sub.add_argument("--timestamp", type=_timestamp, metavar="ISO-8601")
        sub.add_argument("--message-id", dest="message_id")

    imp = commands.add_parser("import", parents=[common], help="send JSON lines (one message a line) in batches")
    imp.add_argument("file", help="a file of JSON lines, or - for standard input")

    serve = commands.add_parser("serve", help="run a local Segment-compatible server and print what it receives")
    serve.add_argument("--bind", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8787, help="port (default 8787; 0 picks a free one)")
    serve.add_argument("--json", action="store_true", help="print each message as one line of JSON")

    commands.add_parser("demo", help="send every call and a batch to an embedded local server; no account needed")
    return parser


def _client(args: argparse.Namespace, *, send: bool = True, on_error: Any = None) -> Client:  # noqa: ANN401
    key = args.write_key or os.environ.get("SEGMENT_WRITE_KEY")
    if not key:
        raise UsageError("no write key: pass --write-key or set SEGMENT_WRITE_KEY")
    host = args.host or os.environ.get("SEGMENT_HOST") or None
    return Client(
        key, host=host, gzip=args.gzip, timeout=args.timeout, max_retries=args.max_retries, send=send,
        on_error=on_error,
    )


def _call_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    return {name: getattr(args, name) for name in _CALL_ARGS[args.command] if getattr(args, name, None) is not None}


def _print_request(client: Client, msg: dict[str, Any], out: IO[str]) -> None:
    body = json.loads(Envelope("***").render([encode_message(msg)]))
    out.write(f"POST {client.url}\n")
    headers = {"Content-Type": "application/json", "User-Agent": f"simple_segment/{VERSION}"}
    headers["Authorization"] = "Basic ***"
    if client.gzip:
        headers["Content-Encoding"] = "gzip"
    for name, value in headers.items():
        out.write(f"{name}: {value}\n")
    out.write("\n" + json.dumps(body, indent=2, ensure_ascii=False) + "\n")


def _run_call(args: argparse.Namespace) -> int:
    client = _client(args, send=not args.dry_run)
    with client:
        _, msg = getattr(client, args.command)(**_call_kwargs(args))
    if args.dry_run:
        _print_request(client, msg, sys.stdout)
    else:
        sys.stdout.write(f"delivered {msg['type']} {msg['messageId']}\n")
    return EXIT_OK


def _lines(path: str) -> Iterator[tuple[int, str]]:
    if path == "-":
        yield from enumerate(sys.stdin, 1)
        return
    try:
        handle = Path(path).open(encoding="utf-8")  # noqa: SIM115 - closed below, after the last line
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None
    with handle:
        yield from enumerate(handle, 1)


def _line_call(line: str) -> tuple[str, dict[str, Any]]:
    """Map one JSON line to (call, keyword arguments); raise ValueError with the reason."""
    try:
        record = json.loads(line)
    except ValueError as exc:
        raise ValueError(f"not valid JSON ({exc})") from None
    if not isinstance(record, dict):
        raise ValueError("not a JSON object")  # noqa: TRY004 - reported as a bad line, not a type error
    call = record.get("type")
    if call not in _CALL_ARGS:
        raise ValueError(f"unknown type {call!r}; expected one of {', '.join(_CALLS)}")
    kwargs: dict[str, Any] = {}
    for key, value in record.items():
        if key in ("type", "writeKey", "sentAt", "receivedAt", "version"):
            continue
        name = _WIRE_ARGS.get(key)
        if name is None or name not in _CALL_ARGS[call]:
            raise ValueError(f"field {key!r} does not belong in a {call} message")
        kwargs[name] = value
    if isinstance(kwargs.get("timestamp"), str):
        try:
            kwargs["timestamp"] = parse_timestamp(kwargs["timestamp"])
        except argparse.ArgumentTypeError as exc:
            raise ValueError(str(exc)) from None
    return call, kwargs


class _Progress:
    """A one-line progress display on stderr, only when stderr is a terminal."""

    def __init__(self) -> None:
        self.enabled = sys.stderr.isatty()
        self._last = 0.0

    def update(self, lines: int, sent: int, started: float) -> None:
        now = time.monotonic()
        if self.enabled and now - self._last >= 0.2:  # noqa: PLR2004 - five refreshes a second
            self._last = now
            rate = sent / max(now - started, 1e-9)
            sys.stderr.write(f"\r{lines:,} lines read, {sent:,} sent ({rate:,.0f} messages/s)")
            sys.stderr.flush()

    def done(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")


def _run_import(args: argparse.Namespace) -> int:
    failed = 0

    def on_error(exc: Exception, messages: list[Any]) -> None:
        nonlocal failed
        failed += len(messages)
        sys.stderr.write(f"error: {len(messages)} messages not delivered: {exc}\n")

    client = _client(args, send=not args.dry_run, on_error=on_error)
    bad = accepted = lines = 0
    progress = _Progress()
    started = time.monotonic()
    with client, client.batch() as batch:
        for number, line in _lines(args.file):
            lines = number
            if not line.strip():
                continue
            try:
                call, kwargs = _line_call(line)
                getattr(batch, call)(**kwargs)
            except (ValueError, TypeError) as exc:
                bad += 1
                sys.stderr.write(f"line {number}: {exc}\n")
                continue
            accepted += 1
            progress.update(lines, batch.messages_sent, started)
    progress.done()
    seconds = time.monotonic() - started
    delivered = batch.messages_sent
    verb = "validated" if args.dry_run else "delivered"
    count = accepted if args.dry_run else delivered
    sys.stdout.write(
        f"{verb} {count} messages in {batch.requests_sent} requests ({batch.bytes_sent:,} bytes) "
        f"in {seconds:.2f} s ({count / max(seconds, 1e-9):,.0f} messages/s); "
        f"{bad} bad lines, {failed} failed\n"
    )
    if failed:
        return EXIT_DELIVERY
    return EXIT_USAGE if bad else EXIT_OK


def _describe(msg: dict[str, Any]) -> str:
    who = msg.get("userId") or f"anon:{msg.get('anonymousId')}"
    what = {
        "track": msg.get("event"),
        "page": msg.get("name"),
        "screen": msg.get("name"),
        "group": msg.get("groupId"),
        "alias": f"{msg.get('previousId')} -> {msg.get('userId')}",
        "identify": json.dumps(msg.get("traits", {}), ensure_ascii=False),
    }.get(str(msg.get("type")), "")
    return f"{msg.get('timestamp', '')}  {msg.get('type', '?'):<8} {who:<16} {what}"


def _run_serve(args: argparse.Namespace) -> int:
    from .testing import FakeSegment  # noqa: PLC0415 - only this command needs the server

    lock = threading.Lock()

    def show(msg: dict[str, Any]) -> None:
        line = json.dumps(msg, ensure_ascii=False) if args.json else _describe(msg)
        with lock:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()

    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:  # noqa: ARG001 - signal handler signature
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    with FakeSegment(args.bind, args.port, max_messages=10_000, max_requests=1_000, on_message=show) as server:
        sys.stdout.write(f"listening on {server.url}\n")
        sys.stdout.flush()
        while not stop.wait(0.5):
            pass
    return EXIT_OK


def _run_demo(_: argparse.Namespace) -> int:
    from .testing import FakeSegment  # noqa: PLC0415 - only this command needs the server

    out = sys.stdout
    with FakeSegment() as server, Client("demo-write-key", host=server.url) as client:
        out.write(f"FakeSegment listening on {server.url}; every call below is a real HTTP POST.\n\n")
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
            out.write(f"{name:<10}{elapsed:>8.2f}  {_describe(received) if received else 'NOT RECEIVED'}\n")
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
    return EXIT_OK if total == 1006 else EXIT_DELIVERY  # noqa: PLR2004 - six calls and the batch


def _fail(message: str, code: int, *, debug: bool) -> int:
    if debug:
        traceback.print_exc()
    sys.stderr.write(f"simple-segment: error: {message}\n")
    return code


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    debug = bool(getattr(args, "debug", False))
    if debug:
        import logging  # noqa: PLC0415 - only for --debug

        logging.basicConfig(level=logging.DEBUG, format="%(levelname)s %(name)s: %(message)s")
    runners: dict[str, Callable[[argparse.Namespace], int]] = {
        "import": _run_import,
        "serve": _run_serve,
        "demo": _run_demo,
    }
    try:
        return runners.get(args.command, _run_call)(args)
    except UsageError as exc:
        return _fail(str(exc), EXIT_USAGE, debug=debug)
    except ValidationError as exc:
        return _fail(f"invalid input: {exc}", EXIT_USAGE, debug=debug)
    except DeliveryError as exc:
        return _fail(f"not delivered: {exc}", EXIT_DELIVERY, debug=debug)
    except SegmentError as exc:
        return _fail(str(exc), EXIT_DELIVERY, debug=debug)
    except KeyboardInterrupt:
        return _fail("interrupted", 130, debug=debug)

