"""Values to JSON, one message to bytes, messages to a request body.

This module owns the wire format: the conversion table of SPEC.md section 4, the
compact UTF-8 JSON encoding, the size limits and the ``{"batch": [...], "sentAt": ...,
"writeKey": ...}`` envelope.  It knows nothing of HTTP, retries or Segment's message
fields.

Each message is serialized exactly once; a request body is those bytes joined, so a
retry re-renders only the envelope (a fresh ``sentAt``).
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Callable, Mapping
from decimal import Decimal
from enum import Enum
from typing import Any
from uuid import UUID

from .errors import MessageTooLargeError, ValidationError

MAX_MESSAGE_BYTES = 32_768
"""Largest serialized message Segment accepts."""
MAX_REQUEST_BYTES = 500_000
"""Largest request body we send (Segment's limit is 500 KB)."""
MAX_REQUEST_MESSAGES = 2_500
"""Most messages in one request (over that Segment answers 200 and drops events)."""

_UTC = dt.timezone.utc
_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"), check_circular=False)
_encode: Callable[[Any], str] = _ENCODER.encode


def _make_dict_encoder() -> Callable[[dict[str, Any]], str]:
    # JSONEncoder.encode builds a new C encoder on every call; messages are dicts of
    # plain values, so one C encoder is made here and reused (what json's own one-shot
    # path does).  Falls back to the pure-Python encoder where _json is missing.
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # pragma: no cover - CPython always has it
        return _encode
    iterencode = make(None, None, json.encoder.encode_basestring, None, ":", ",", False, False, False)  # noqa: FBT003

    def encode_dict(value: dict[str, Any]) -> str:
        return "".join(iterencode(value, 0))

    return encode_dict


_encode_dict = _make_dict_encoder()


def now_iso() -> str:
    """Return the current UTC time as ISO-8601 with milliseconds and offset."""
    return dt.datetime.now(_UTC).isoformat(timespec="milliseconds")


def format_datetime(value: dt.datetime) -> str:
    """Format a datetime as ISO-8601 with milliseconds; a naive one is taken as UTC."""
    if value.tzinfo is None or value.utcoffset() is None:
        value = value.replace(tzinfo=_UTC)
    return value.isoformat(timespec="milliseconds")


class _InvalidValueError(Exception):
    """A value with no JSON form; :func:`to_json_value` finds its path afterwards."""

    def __init__(self, reason: str, key: object = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.key = key


def to_json_value(value: Any, path: str) -> Any:  # noqa: ANN401 - any caller value
    """Return ``value`` converted to plain JSON types, as a new object.

    Follows the table of SPEC.md section 4.  Containers are always copied, so the
    caller's are never modified or shared.  Raises :class:`ValidationError` naming the
    path of the first bad value below ``path`` (``properties.items[2].price``).
    """
    try:
        return _convert(value)
    except _InvalidValueError:
        _locate(value, path)
        raise  # pragma: no cover - _locate always raises for a value _convert rejects


def _locate(value: Any, path: str) -> None:  # noqa: ANN401 - any caller value
    # Runs only after a failure: walks down to the first value _convert rejects, so
    # the fast path never builds path strings.
    items: Any = ()
    if type(value) is dict or isinstance(value, Mapping):
        for key in value:
            try:
                if type(key) is not str:
                    _json_key(key, value)
            except _InvalidValueError as bad:  # noqa: PERF203 - runs only to report an error
                raise ValidationError(f"{path}[{key!r}]", bad.reason) from None
        items = ((f"{path}.{key}", item) for key, item in value.items())
    elif isinstance(value, (list, tuple, set, frozenset)) and not isinstance(value, Enum):
        items = ((f"{path}[{index}]", item) for index, item in enumerate(value))
    elif isinstance(value, Enum):
        items = ((path, value.value),)
    for item_path, item in items:
        try:
            _convert(item)
        except _InvalidValueError:  # noqa: PERF203 - runs only to report an error
            _locate(item, item_path)
    try:
        _convert(value)
    except _InvalidValueError as bad:
        raise ValidationError(path, bad.reason) from None


_PLAIN = frozenset({str, int, float, bool, type(None)})
"""Types sent as they are.  Non-finite floats are caught by the encoder (allow_nan=False)."""


def _convert(value: Any) -> Any:  # noqa: ANN401 - any caller value
    # The hot path: leaves of a plain type are taken as they are without a call.
    kind = type(value)
    if kind is dict:
        return {
            (key if type(key) is str else _json_key(key, value)): (item if type(item) in _PLAIN else _convert(item))
            for key, item in value.items()
        }
    if kind in _PLAIN:
        return value
    if kind is list or kind is tuple:
        return [item if type(item) in _PLAIN else _convert(item) for item in value]
    return _convert_other(value)


def _convert_other(value: Any) -> Any:  # noqa: ANN401, C901, PLR0911, PLR0912 - one branch per row of the table
    if isinstance(value, Enum):
        return _convert(value.value)
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, dt.datetime):
        return format_datetime(value)
    if isinstance(value, (dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise _InvalidValueError(f"Decimal {value} is not a finite number")
        return str(value)
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            raise _InvalidValueError("bytes are not valid UTF-8") from None
    if isinstance(value, Mapping):
        return _convert(dict(value))
    if isinstance(value, (set, frozenset, list, tuple)):
        return [_convert(item) for item in value]
    raise _InvalidValueError(f"{type(value).__name__} is not JSON serializable")


def _json_key(key: Any, mapping: Mapping[Any, Any]) -> str:  # noqa: ANN401 - any dict key
    # Keys become strings the way json.dumps writes them, so the wire matches the
    # official library's: 1 -> "1", 1.5 -> "1.5", True -> "true".
    if isinstance(key, str):
        return str(key)
    if isinstance(key, (bool, int, float)) and not isinstance(key, Enum):
        if isinstance(key, float) and not math.isfinite(key):
            raise _InvalidValueError("a dict key must be a finite number")
        text = _encode(key)
    else:
        raise _InvalidValueError(f"dict keys must be str, int, float or bool, not {type(key).__name__}")
    if text in mapping:
        raise _InvalidValueError(f"key {key!r} collides with key {text!r} once made a string")
    return text


def encode_message(message: dict[str, Any]) -> bytes:
    """Serialize one converted message to compact UTF-8 JSON and check its size.

    Raises :class:`MessageTooLargeError` when it is over :data:`MAX_MESSAGE_BYTES`,
    and :class:`ValidationError`, naming the path, for a NaN or infinite number or
    text that cannot be UTF-8 (a lone surrogate).
    """
    try:
        data = _encode_dict(message).encode("utf-8")
    except ValueError as exc:  # UnicodeEncodeError is a ValueError too
        if isinstance(exc, UnicodeEncodeError):
            path, _ = _find(message, "", _not_utf8) or ("message", None)
            raise ValidationError(path, "text is not valid Unicode (lone surrogate)") from exc
        path, value = _find(message, "", _not_finite) or ("message", "a number")
        raise ValidationError(path, f"{value!r} is not a valid JSON number") from exc
    if len(data) > MAX_MESSAGE_BYTES:
        raise MessageTooLargeError(len(data), MAX_MESSAGE_BYTES)
    return data


def decode_messages(encoded: list[bytes]) -> list[dict[str, Any]]:
    """Return the messages serialized by :func:`encode_message`, as dicts again."""
    return [json.loads(data) for data in encoded]


def _not_finite(value: object) -> bool:
    return isinstance(value, float) and not math.isfinite(value)


def _not_utf8(value: object) -> bool:
    if not isinstance(value, str):
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _find(value: Any, path: str, bad: Callable[[Any], bool]) -> tuple[str, Any] | None:  # noqa: ANN401
    """Return the path and value of the first value for which ``bad`` is true."""
    if bad(value):
        return path, value
    children: Any = ()
    if isinstance(value, dict):
        for key in value:
            if bad(key):
                return f"{path}[{key!r}]", key
        children = ((f"{path}.{key}" if path else str(key), item) for key, item in value.items())
    elif isinstance(value, list):
        children = ((f"{path}[{index}]", item) for index, item in enumerate(value))
    for child_path, item in children:
        found = _find(item, child_path, bad)
        if found is not None:
            return found
    return None


class Envelope:
    """Renders request bodies around already-serialized messages.

    ``render(messages)`` returns ``{"batch":[...],"sentAt":"<now>","writeKey":"..."}``
    as bytes, stamping ``sentAt`` at the moment of the call, so each HTTP attempt
    carries its own.
    """

    __slots__ = ("_prefix", "_suffix", "overhead")

    def __init__(self, write_key: str) -> None:
        self._prefix = b'{"batch":['
        self._suffix = b'","writeKey":' + _encode(write_key).encode("utf-8") + b"}"
        self.overhead = len(self._prefix) + len(b'],"sentAt":"') + len(now_iso()) + len(self._suffix)
        """Bytes a body adds around its messages (the separating commas excepted)."""

    def render(self, messages: list[bytes]) -> bytes:
        """Return the request body for ``messages``, with ``sentAt`` stamped now."""
        return b"".join(
            (self._prefix, b",".join(messages), b'],"sentAt":"', now_iso().encode("ascii"), self._suffix),
        )

    def body_size(self, count: int, message_bytes: int) -> int:
        """Return the size of a body holding ``count`` messages of ``message_bytes`` in all."""
        return self.overhead + message_bytes + max(count - 1, 0)
