"""What every command shares: exit statuses, the parser class, argument types, the client."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import unicodedata
from typing import Any, NoReturn

from simple_segment._backfill import parse_timestamp
from simple_segment._options import OnError, Options
from simple_segment.client import Client

__all__ = [
    "EXIT_DELIVERY",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_TERMINATED",
    "EXIT_USAGE",
    "PROG",
    "Parser",
    "UsageError",
    "add_client_arguments",
    "describe",
    "json_object",
    "make_client",
    "one_line",
    "parse_timestamp",
    "port",
    "positive_seconds",
    "retries",
    "timestamp",
]

EXIT_OK = 0
EXIT_DELIVERY = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # the shell's 128 + SIGINT
EXIT_TERMINATED = 143  # the shell's 128 + SIGTERM

PROG = "simple-segment"


class UsageError(Exception):
    """Bad command-line input: printed as one line, exit status 2."""


class Parser(argparse.ArgumentParser):
    """argparse, with usage errors on one line (exit status 2)."""

    def error(self, message: str) -> NoReturn:
        """Exit with status 2 and ``message`` on one line."""
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def one_line(text: str) -> str:
    r"""Return ``text`` safe to print as one line: control characters escaped.

    What a server (or a client of ``serve``) sent is printed this way, so a newline
    cannot forge a second line of output and an escape sequence cannot restyle or
    clear the terminal: ``\n``, ``\x1b``, ``\u202e`` ... are shown as such.
    """
    return "".join(_escaped(char) if char in _BIDI or unicodedata.category(char) in _CONTROL else char for char in text)


# Cc: C0/C1 controls and DEL; Zl/Zp: line and paragraph separators, which some
# terminals break on; Cs: lone surrogates, which cannot be printed at all.
_CONTROL = frozenset({"Cc", "Zl", "Zp", "Cs"})
# The bidi controls reorder what follows them on the line (other format characters,
# such as the joiners inside emoji, are harmless and kept).
_BIDI = frozenset("\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_SHORT_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escaped(char: str) -> str:
    short = _SHORT_ESCAPES.get(char)
    if short is not None:
        return short
    code = ord(char)
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"  # noqa: PLR2004 - the widths of Python's escapes


# -- argument types ---------------------------------------------------------------


def json_object(text: str) -> dict[str, Any]:
    """Parse a JSON object.

    Raises :class:`argparse.ArgumentTypeError` saying why ``text`` is not one.
    """
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON: {exc}") from None
    except RecursionError:
        raise argparse.ArgumentTypeError("nested too deep to read") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"must be a JSON object ({{...}}), not {type(value).__name__}")
    return value


def timestamp(text: str) -> dt.datetime:
    """Parse ISO-8601 for argparse.

    Raises :class:`argparse.ArgumentTypeError` saying why ``text`` is not one.
    """
    try:
        return parse_timestamp(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def positive_seconds(text: str) -> float:
    """Parse a number of seconds > 0.

    Raises :class:`argparse.ArgumentTypeError` when ``text`` is not one.
    """
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a number of seconds > 0, not {text!r}")
    return value


def retries(text: str) -> int:
    """Parse a whole number >= 0.

    Raises :class:`argparse.ArgumentTypeError` when ``text`` is not one.
    """
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 0, not {text!r}")
    return value


def port(text: str) -> int:
    """Parse a TCP port number (0 picks a free one).

    Raises :class:`argparse.ArgumentTypeError` when ``text`` is not one.
    """
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 65535:  # noqa: PLR2004 - the TCP port range
        raise argparse.ArgumentTypeError(f"must be a port number 0-65535 (0 picks a free one), not {text!r}")
    return value


def add_client_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the flags that configure the client (``--write-key`` ... ``--dry-run``) to ``parser``."""
    parser.add_argument("--write-key", help="the source's write key (default: $SEGMENT_WRITE_KEY)")
    parser.add_argument("--host", help="API host or base URL (default: $SEGMENT_HOST, else https://api.segment.io)")
    parser.add_argument("--gzip", action="store_true", help="gzip request bodies")
    parser.add_argument(
        "--timeout", type=positive_seconds, default=Options.timeout, metavar="SECONDS",
        help=f"timeout of each attempt (default {Options.timeout:g})",
    )
    parser.add_argument(
        "--max-retries", type=retries, default=Options.max_retries, metavar="N",
        help=f"retries after a failed attempt (default {Options.max_retries})",
    )
    parser.add_argument(
        "--dry-run", action="store_true",
        help="send nothing: print the exact request (write key redacted); for import, validate every line",
    )


# -- clients ----------------------------------------------------------------------


def make_client(args: argparse.Namespace, *, on_error: OnError | None = None) -> Client:
    """Make the client the flags in ``args`` describe.

    Raises :class:`UsageError` when there is no write key (and this is no dry run).
    """
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


def describe(msg: dict[str, Any], *, timestamp: bool = True) -> str:
    """Return one readable line for a message: [timestamp] type who what."""
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
    # Ids and names are the sender's text: one_line keeps each message on its own line.
    return one_line(f"{msg.get('timestamp', '')}  {line}" if timestamp else line)
