"""One message to bytes, messages to request bodies.

This module owns the wire format: the compact UTF-8 JSON encoding, the size
limits, the ``{"batch": [...], "sentAt": ..., "writeKey": ...}`` envelope and the
accumulation of messages into requests that stay within those limits (values are
converted before, by :mod:`._values`).  It knows nothing of HTTP, retries or Segment's message
fields.

Each message is serialized exactly once; a request body is those bytes joined, so a
retry re-renders only the envelope (a fresh ``sentAt``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from ._values import MAX_DEPTH, _InvalidValueError, describe, locate, now_iso
from .errors import MessageTooLargeError, ValidationError

__all__ = [
    "MAX_DEPTH",
    "MAX_MESSAGE_BYTES",
    "MAX_REQUEST_BYTES",
    "MAX_REQUEST_MESSAGES",
    "Envelope",
    "RequestBuffer",
    "decode_messages",
    "describe",
    "encode_message",
    "now_iso",
]

MAX_MESSAGE_BYTES = 32_768
"""Largest serialized message Segment accepts."""
MAX_REQUEST_BYTES = 500_000
"""Largest request body we send (Segment's limit is 500 KB)."""
MAX_REQUEST_MESSAGES = 2_500
"""Most messages in one request (over that Segment answers 200 and drops events)."""

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


# -- encoding -----------------------------------------------------------------------


def encode_message(message: dict[str, Any]) -> bytes:
    """Serialize one converted message to compact UTF-8 JSON and check its size.

    Raises :class:`MessageTooLargeError` when it is over :data:`MAX_MESSAGE_BYTES`,
    and :class:`ValidationError`, naming the path, for a NaN or infinite number, an
    int too long to print or text that cannot be UTF-8 (a lone surrogate).
    """
    try:
        data = _encode_dict(message).encode("utf-8")
    except (ValueError, RecursionError):  # UnicodeEncodeError is a ValueError too
        found, problem = locate(message, "", _encoding_problem, _encoding_key_problem)
        raise ValidationError(found or "message", problem.reason) from problem.__cause__
    if len(data) > MAX_MESSAGE_BYTES:
        raise MessageTooLargeError(len(data), MAX_MESSAGE_BYTES)
    return data


def decode_messages(encoded: list[bytes]) -> list[dict[str, Any]]:
    """Return the messages serialized by :func:`encode_message`, as dicts again."""
    return [json.loads(data) for data in encoded]


def _encoding_problem(value: object, _depth: int = 0) -> _InvalidValueError | None:
    try:
        _encode(value).encode("utf-8")
    except (ValueError, RecursionError) as exc:
        if isinstance(value, float):
            problem = _InvalidValueError(f"{value!r} is not a valid JSON number")
        elif isinstance(value, int):
            problem = _InvalidValueError(f"an int of {value.bit_length()} bits has too many digits to send")
        elif isinstance(value, str):
            problem = _InvalidValueError("text is not valid Unicode (lone surrogate)")
        else:
            problem = _InvalidValueError(describe(exc))
        problem.__cause__ = exc
        return problem
    return None


def _encoding_key_problem(key: object, _: Mapping[Any, Any]) -> _InvalidValueError | None:
    return _encoding_problem(key)


# -- request bodies ---------------------------------------------------------------------


class Envelope:
    """Renders request bodies around already-serialized messages.

    ``render(messages)`` returns ``{"batch":[...],"sentAt":"<now>","writeKey":"..."}``
    as bytes, stamping ``sentAt`` at the moment of the call, so each HTTP attempt
    carries its own.  Its ``repr`` never shows the write key.
    """

    __slots__ = ("_prefix", "_suffix", "overhead")

    def __init__(self, write_key: str) -> None:
        self._prefix = b'{"batch":['
        self._suffix = b'","writeKey":' + _encode(write_key).encode("utf-8") + b"}"
        self.overhead = len(self._prefix) + len(b'],"sentAt":"') + len(now_iso()) + len(self._suffix)
        """Bytes a body adds around its messages (the separating commas excepted)."""

    def __repr__(self) -> str:
        return "<Envelope>"

    def render(self, messages: list[bytes]) -> bytes:
        """Return the request body for ``messages``, with ``sentAt`` stamped now."""
        return b"".join(
            (self._prefix, b",".join(messages), b'],"sentAt":"', now_iso().encode("ascii"), self._suffix),
        )

    def buffer(self) -> RequestBuffer:
        """Return an empty :class:`RequestBuffer` for bodies of this envelope."""
        return RequestBuffer(self.overhead)


class RequestBuffer:
    """Serialized messages waiting to go out as one request, within Segment's limits.

    :meth:`fits` says whether one more message keeps the body at or below
    :data:`MAX_REQUEST_BYTES` and :data:`MAX_REQUEST_MESSAGES`; only the bytes are
    kept, so memory holds about one request.
    """

    __slots__ = ("_overhead", "_size", "encoded")

    def __init__(self, overhead: int) -> None:
        self._overhead = overhead
        self._size = 0
        self.encoded: list[bytes] = []

    def __len__(self) -> int:
        return len(self.encoded)

    def fits(self, data: bytes) -> bool:
        """Whether ``data`` can join the pending request (always, when it is empty)."""
        count = len(self.encoded)
        return not count or (
            count < MAX_REQUEST_MESSAGES
            and self._overhead + self._size + len(data) + count <= MAX_REQUEST_BYTES
        )

    def add(self, data: bytes) -> None:
        """Add one serialized message."""
        self.encoded.append(data)
        self._size += len(data)

    def take(self) -> list[bytes]:
        """Return the pending messages and empty the buffer."""
        encoded, self.encoded, self._size = self.encoded, [], 0
        return encoded
