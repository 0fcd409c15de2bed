"""Segment's Tracking API rules as pure functions: what a request must look like.

No sockets and no state: :func:`evaluate` takes a method, a target, headers and the raw
body, and returns the decoded JSON, the write key and a :class:`Verdict` (the status,
the JSON payload to answer and the messages accepted). :class:`FakeSegment` applies it
to every tracking request; the rules are documented in
:mod:`simple_segment.testing._server`.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import math
import zlib
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, NoReturn
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

__all__ = [
    "BATCH_PATHS",
    "JSON_TYPE",
    "MAX_BATCH_MESSAGES",
    "MAX_MESSAGE_BYTES",
    "MAX_MESSAGE_ID_LENGTH",
    "MAX_REQUEST_BYTES",
    "MAX_STATUS",
    "MAX_WIRE_BYTES",
    "MESSAGE_TYPES",
    "MIN_STATUS",
    "SINGLE_PATHS",
    "Verdict",
    "error",
    "evaluate",
    "is_success",
    "json_bytes",
    "status_code",
    "status_phrase",
]

#: Largest accepted request body, in bytes, after gunzip.
MAX_REQUEST_BYTES = 500_000
#: Largest accepted message, in bytes of compact UTF-8 JSON (as the client measures it).
MAX_MESSAGE_BYTES = 32_768
#: Most messages accepted in one request (stricter than Segment, see the server's docstring).
MAX_BATCH_MESSAGES = 2_500
#: A ``messageId`` must be shorter than this, as the client requires (SPEC: "under 100 characters").
MAX_MESSAGE_ID_LENGTH = 100

MESSAGE_TYPES = frozenset({"identify", "track", "page", "screen", "group", "alias"})

#: The most body bytes the server reads (or a gzipped body inflates to): twice
#: :data:`MAX_REQUEST_BYTES`, so a body just over that limit is still read and answered
#: 400 ``request_too_large`` naming its size, and anything larger is never held in
#: memory: a Content-Length over it answers 413 before the body is read, a chunked body
#: is cut at it, and the connection is closed.
MAX_WIRE_BYTES = 1024 * 1024

BATCH_PATHS = frozenset({"/v1/batch", "/v1/import"})
SINGLE_PATHS = {f"/v1/{type_}": type_ for type_ in MESSAGE_TYPES}
JSON_TYPE = "application/json"
#: The range of statuses a scripted answer may use.
MIN_STATUS = 200
MAX_STATUS = 599


def is_success(status: int) -> bool:
    """Return whether ``status`` is a 2xx."""
    return HTTPStatus.OK <= status < HTTPStatus.MULTIPLE_CHOICES


@dataclasses.dataclass(frozen=True)
class Verdict:
    """What validation says about a request: the answer and accepted messages."""

    status: int
    payload: dict[str, Any]
    messages: tuple[dict[str, Any], ...] = ()


def error(status: int, message: str, code: str) -> Verdict:
    """Return a rejection with Segment's error body."""
    return Verdict(status, {"success": False, "message": message, "code": code})


def json_bytes(value: object) -> bytes:
    """Serialize ``value`` as compact JSON."""
    return json.dumps(value, separators=(",", ":")).encode()


def status_code(status: int) -> str:
    """Return an error code for ``status``, e.g. ``service_unavailable`` for 503."""
    try:
        return HTTPStatus(status).phrase.lower().replace(" ", "_").replace("-", "_")
    except ValueError:
        return f"http_{status}"


def status_phrase(status: int) -> str:
    """Return the reason phrase for ``status``, e.g. ``Service Unavailable``."""
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return f"HTTP {status}"


def _reject_constant(name: str) -> NoReturn:
    msg = f"{name} is not valid JSON"
    raise ValueError(msg)


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        msg = f"{text} overflows a float"
        raise ValueError(msg)
    return value


def _parse_json(data: bytes) -> tuple[bool, Any]:
    """Return ``(True, value)`` for valid JSON, else ``(False, None)``."""
    try:
        return True, json.loads(
            data,
            parse_constant=_reject_constant,
            parse_float=_finite_float,
        )
    except (ValueError, RecursionError):
        # ValueError covers JSONDecodeError and UnicodeDecodeError.
        return False, None


def _gunzip(data: bytes, limit: int) -> bytes:
    """Gunzip all members of ``data``; ValueError if invalid or over ``limit``."""
    out: list[bytes] = []
    size = 0
    rest = data
    # Each pass consumes one gzip member (at least its header), so ``rest`` shrinks.
    while rest:
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            chunk = inflater.decompress(rest, limit - size + 1)
        except zlib.error as exc:
            msg = f"invalid gzip body: {exc}"
            raise ValueError(msg) from exc
        size += len(chunk)
        if size > limit or inflater.unconsumed_tail:
            msg = f"gzipped body inflates to over {limit} bytes"
            raise ValueError(msg)
        if not inflater.eof:
            msg = "invalid gzip body: truncated"
            raise ValueError(msg)
        out.append(chunk)
        rest = inflater.unused_data
    return b"".join(out)


def _write_key(headers: Mapping[str, str], body: object) -> str | None:
    """Return the Basic auth user name, else the body's ``writeKey``, else None."""
    scheme, _, credentials = headers.get("authorization", "").strip().partition(" ")
    if scheme.lower() == "basic" and credentials:
        try:
            decoded = base64.b64decode(credentials.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            decoded = ""
        user = decoded.partition(":")[0]
        if user:
            return user
    if isinstance(body, dict):
        key = body.get("writeKey")
        if isinstance(key, str) and key:
            return key
    return None


def _missing(value: object) -> bool:
    return value is None or value == ""


def _id_problem(message: Mapping[str, Any], field: str) -> str | None:
    value = message.get(field)
    if _missing(value):
        return f'"{field}" is required'
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        return f'"{field}" must be a string'
    return None


def _ids_problem(message: Mapping[str, Any]) -> str | None:
    if message.get("type") == "alias":
        return _id_problem(message, "previousId") or _id_problem(message, "userId")
    if _missing(message.get("userId")) and _missing(message.get("anonymousId")):
        return '"userId" or "anonymousId" is required'
    field = "anonymousId" if _missing(message.get("userId")) else "userId"
    return _id_problem(message, field)


def _type_problem(message: Mapping[str, Any]) -> str | None:
    type_ = message.get("type")
    if type_ == "track":
        event = message.get("event")
        if not isinstance(event, str) or not event:
            return 'track needs a non-empty string "event"'
    elif type_ == "group":
        return _id_problem(message, "groupId")
    return None


def _message_id_problem(message: Mapping[str, Any]) -> str | None:
    message_id = message.get("messageId")
    if message_id is None or (isinstance(message_id, str) and len(message_id) < MAX_MESSAGE_ID_LENGTH):
        return None
    return f'"messageId" must be a string shorter than {MAX_MESSAGE_ID_LENGTH} characters'


def _message_problem(message: object) -> str | None:
    """Return what is wrong with one message, or None if Segment would take it."""
    if not isinstance(message, dict):
        return "must be a JSON object"
    type_ = message.get("type")
    if type_ not in MESSAGE_TYPES:
        kinds = ", ".join(sorted(MESSAGE_TYPES))
        return f'"type" must be one of {kinds}, not {type_!r}'
    return _ids_problem(message) or _type_problem(message) or _message_id_problem(message)


def _validate_messages(messages: list[Any]) -> Verdict:
    if len(messages) > MAX_BATCH_MESSAGES:
        return error(
            400,
            f"batch has {len(messages)} messages, over the limit of {MAX_BATCH_MESSAGES} per request",
            "too_many_messages",
        )
    for index, message in enumerate(messages):
        # Measured as compact UTF-8 JSON, the bytes a message takes on the wire.
        size = len(json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode("utf-8", "surrogatepass"))
        if size > MAX_MESSAGE_BYTES:
            return error(
                400,
                f"message {index} is {size} bytes, over the limit of {MAX_MESSAGE_BYTES} bytes",
                "message_too_large",
            )
        problem = _message_problem(message)
        if problem:
            return error(400, f"message {index}: {problem}", "invalid_message")
    return Verdict(200, {"success": True}, tuple(messages))


def _decode(headers: Mapping[str, str], body: bytes) -> tuple[bytes, str | None]:
    """Undo Content-Encoding; return the bytes and a problem (or None)."""
    encoding = headers.get("content-encoding", "identity").strip().lower()
    if encoding in {"", "identity"}:
        return body, None
    if encoding in {"gzip", "x-gzip"}:
        try:
            return _gunzip(body, MAX_WIRE_BYTES), None
        except ValueError as exc:
            return b"", str(exc)
    return b"", f"unsupported Content-Encoding: {encoding}"


def _route_problem(method: str, path: str) -> Verdict | None:
    if path not in BATCH_PATHS and path not in SINGLE_PATHS:
        return error(404, f"no such endpoint: {path or '/'}", "not_found")
    if method != "POST":
        return error(405, f"{method} is not allowed; use POST", "method_not_allowed")
    return None


def _body_problem(
    decoded: bytes,
    decode_problem: str | None,
    *,
    valid: bool,
    write_key: str | None,
    need_write_key: bool,
) -> Verdict | None:
    if decode_problem is not None:
        return error(400, decode_problem, "invalid_request")
    if len(decoded) > MAX_REQUEST_BYTES:
        return error(
            400,
            f"request body is {len(decoded)} bytes, over the size limit of {MAX_REQUEST_BYTES} bytes",
            "request_too_large",
        )
    if not valid:
        return error(400, "Invalid JSON", "invalid_request")
    if need_write_key and write_key is None:
        return error(401, "missing write key", "missing_write_key")
    return None


def _validate_body(path: str, value: object) -> Verdict:
    if not isinstance(value, dict):
        return error(400, "body must be a JSON object", "invalid_request")
    if path in BATCH_PATHS:
        batch = value.get("batch")
        if not isinstance(batch, list):
            return error(400, 'body must have a "batch" list', "invalid_request")
        return _validate_messages(batch)
    message = {k: v for k, v in value.items() if k != "writeKey"}
    message["type"] = SINGLE_PATHS[path]
    return _validate_messages([message])


def evaluate(
    method: str,
    target: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    authorize: Callable[[Mapping[str, str]], Verdict | None] | None = None,
) -> tuple[Any, str | None, Verdict]:
    """Decode and validate one request as Segment would.

    Return the decoded JSON (or None), the write key (or None) and the verdict.

    - ``method``: The HTTP method.
    - ``target``: The request target (path and optional query).
    - ``headers``: Request headers with lower-cased names.
    - ``body``: The body as received (gzipped if Content-Encoding says so).
    - ``authorize``: For a source that requires OAuth: checks the credentials instead of
      the write key and returns a rejection or None. It is asked after routing, before
      the body is judged.
    """
    decoded, decode_problem = _decode(headers, body)
    # A body refused for its size is not parsed: its JSON could take ten times its bytes.
    too_large = len(decoded) > MAX_REQUEST_BYTES
    valid, value = (False, None) if decode_problem or too_large else _parse_json(decoded)
    write_key = _write_key(headers, value)
    path = urlsplit(target).path.rstrip("/")
    verdict = (
        _route_problem(method, path)
        or (authorize(headers) if authorize is not None else None)
        or _body_problem(decoded, decode_problem, valid=valid, write_key=write_key, need_write_key=authorize is None)
        or _validate_body(path, value)
    )
    return value, write_key, verdict
