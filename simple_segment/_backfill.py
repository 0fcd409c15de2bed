"""Wire-format records to calls: what ``import``, ``import --jobs``, Dask and Spark share.

A record is one message in Segment's wire names (``type``, ``userId``, ``event``,
``properties``, ``timestamp``, ...), as an export holds it: a line of a JSON-lines
file, a dict in a Dask bag, a row of a data-frame.  :func:`record_call` turns one
into the name of a call and its keyword arguments; :func:`decode_line` and
:func:`read_lines` read the lines of a file; :func:`clean_row` makes a data-frame
or Spark row a record (absent values dropped, nested JSON strings decoded).  No I/O
beyond the file handle given, no HTTP, no client.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
from collections.abc import Iterator, Mapping
from typing import Any, BinaryIO

from ._ids import STABLE_IDS_NAMESPACE

__all__ = [
    "CALLS",
    "CALL_ARGS",
    "IGNORED_FIELDS",
    "MAX_LINE_BYTES",
    "WIRE_ARGS",
    "BadRecordError",
    "clean_row",
    "decode_line",
    "parse_timestamp",
    "position_id",
    "read_lines",
    "record_call",
]

CALLS = ("identify", "track", "page", "screen", "group", "alias")
# camelCase wire name -> the call's argument name.
WIRE_ARGS = {
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
IGNORED_FIELDS = frozenset({"writeKey", "sentAt", "receivedAt", "version"})
CALL_ARGS = {
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
CALL_ARGS["screen"] = CALL_ARGS["page"]
_NESTED_FIELDS = ("properties", "traits", "context", "integrations")
_ABSENT_TYPES = frozenset({"NaTType", "NAType"})  # pandas' missing values, named so pandas is not imported

_REPR_HINT = (
    " (a Python dict's repr? Dask turns object columns into strings unless"
    " dask.config.set({'dataframe.convert-string': False}) is set when the frame is made)"
)

MAX_LINE_BYTES = 1 << 20
"""Longest line read (1 MiB): a message is at most 32 KB once serialized, so a
longer line cannot be valid, and reading it whole would let one line fill memory."""


_NAMESPACE_HASH = hashlib.sha1(STABLE_IDS_NAMESPACE.bytes, usedforsecurity=False)
# The variant nibble of an RFC 4122 UUID: its top two bits are 10.
_VARIANT = {f"{n:x}": f"{n & 0x3 | 0x8:x}" for n in range(16)}


def position_id(scope: str, n: int) -> str:
    """Return ``str(uuid.uuid5(STABLE_IDS_NAMESPACE, f"{scope}:{n}"))``: the n-th id of ``stable_ids(scope)``.

    The same value as :mod:`uuid` computes, at a fraction of the cost: a backfill makes one per row.
    """
    digest = _NAMESPACE_HASH.copy()
    digest.update(f"{scope}:{n}".encode())
    h = digest.hexdigest()
    return f"{h[:8]}-{h[8:12]}-5{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:32]}"


class BadRecordError(Exception):
    """A line or record that cannot become a call; its text is the reason."""


def parse_timestamp(text: str) -> dt.datetime:
    """Parse ISO-8601 (a trailing ``Z`` means UTC); raise ValueError saying why not."""
    try:
        return dt.datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text)
    except ValueError:
        raise ValueError(f"not an ISO-8601 timestamp: {text!r}") from None


def read_lines(handle: BinaryIO, *, first: int = 1, end: int | None = None) -> Iterator[tuple[int, bytes | None, int]]:
    """Yield ``(line number, line, bytes read)``, one line at a time.

    Lines are numbered from ``first``; reading stops at EOF or once ``end`` bytes
    (an absolute offset in ``handle``) are read, so a worker can read its own part
    of a file.  A line longer than :data:`MAX_LINE_BYTES` is skipped without being
    held in memory and yielded as None.
    """
    number = first - 1
    position = handle.tell() if end is not None else 0
    while end is None or position < end:
        line = handle.readline(MAX_LINE_BYTES + 1)
        if not line:
            return
        number += 1
        size = len(line)
        if size > MAX_LINE_BYTES and not line.endswith(b"\n"):
            while True:
                rest = handle.readline(MAX_LINE_BYTES)
                size += len(rest)
                if not rest or rest.endswith(b"\n"):
                    break
            position += size
            yield number, None, size
            continue
        position += size
        yield number, line, size


def decode_line(line: bytes | None, number: int) -> dict[str, Any] | None:
    """Decode one line to a JSON object; None for a blank line.

    Raises :class:`BadRecordError` saying why the line is not one.
    """
    if line is None:
        raise BadRecordError(f"longer than {MAX_LINE_BYTES:,} bytes; a message is at most 32 KB")
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRecordError(f"not valid UTF-8 (byte {exc.start + 1})") from None
    if number == 1:
        text = text.removeprefix("\ufeff")
    if not text.strip():
        return None
    try:
        record = json.loads(text)
    except ValueError as exc:
        raise BadRecordError(f"not valid JSON ({exc})") from None
    except RecursionError:
        raise BadRecordError("nested too deep to read") from None
    if not isinstance(record, dict):
        raise BadRecordError(f"not a JSON object but {type(record).__name__}")
    return record


def record_call(record: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """Map one message in wire names to ``(call, keyword arguments)``.

    Raises :class:`BadRecordError` saying why it cannot be a call.
    """
    call = record.get("type")
    if not isinstance(call, str) or call not in CALL_ARGS:
        raise BadRecordError(f"type {call!r} is not one of {', '.join(CALLS)}")
    allowed = CALL_ARGS[call]
    kwargs: dict[str, Any] = {}
    for key, value in record.items():
        if key == "type" or key in IGNORED_FIELDS:
            continue
        name = WIRE_ARGS.get(key)
        if name is None or name not in allowed:
            raise BadRecordError(f"field {key!r} does not belong in a {call} message")
        kwargs[name] = value
    timestamp = kwargs.get("timestamp")
    if isinstance(timestamp, str):
        try:
            kwargs["timestamp"] = parse_timestamp(timestamp)
        except ValueError as exc:
            raise BadRecordError(f"timestamp: {exc}") from None
    return call, kwargs


def _absent(value: object) -> bool:
    """Tell whether a cell is empty: None, a float NaN, pandas' NaT or NA."""
    if value is None:
        return True
    if isinstance(value, float):
        return math.isnan(value)
    return type(value).__name__ in _ABSENT_TYPES


def _plain(value: Any) -> Any:  # noqa: ANN401 - any cell
    """Return a NumPy scalar as its Python value, a pandas Timestamp as a datetime; anything else unchanged."""
    kind = type(value)
    if kind.__module__ == "numpy" and hasattr(value, "item"):
        return value.item()
    if isinstance(value, dt.datetime) and kind is not dt.datetime and hasattr(value, "to_pydatetime"):
        return value.to_pydatetime()
    return value


def clean_row(row: object) -> dict[str, Any]:
    """Make a data-frame or Spark row a record.

    ``row`` is a mapping, or an object with ``asDict()`` (a PySpark ``Row``).  Absent
    cells (None, NaN, NaT) are left out; a nested field (``properties``, ``traits``,
    ``context``, ``integrations``) given as a JSON string is decoded; NumPy scalars
    and pandas Timestamps become Python values.  Raises :class:`BadRecordError` for
    a row that is neither, or a nested field that is not a JSON object.
    """
    if not isinstance(row, Mapping):
        as_dict = getattr(row, "asDict", None)
        if as_dict is None:
            raise BadRecordError(f"not a mapping of wire-format fields but {type(row).__name__}")
        row = as_dict(recursive=True)
        if not isinstance(row, Mapping):
            raise BadRecordError(f"asDict() returned {type(row).__name__}, not a mapping")
    record: dict[str, Any] = {}
    for key, value in row.items():
        if _absent(value):
            continue
        if key in _NESTED_FIELDS and isinstance(value, str):
            try:
                decoded = json.loads(value)
            except (ValueError, RecursionError):
                hint = _REPR_HINT if value.startswith("{'") else ""
                raise BadRecordError(f"{key}: not valid JSON{hint}") from None
            if not isinstance(decoded, dict):
                raise BadRecordError(f"{key}: not a JSON object but {type(decoded).__name__}")
            value = decoded  # noqa: PLW2901 - the decoded form replaces the text
        record[key] = _plain(value)
    return record
