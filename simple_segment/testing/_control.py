"""The control endpoints under ``/_``: inspect and script :class:`FakeSegment` over HTTP.

They let a test drive a server in another process (``simple-segment serve``,
or a FakeSegment that code in Celery/RQ workers sends to):

- ``GET /_messages[?since=N][&limit=M]``: the accepted messages kept as JSON
  lines (``application/x-ndjson``), oldest first. ``since`` skips the first N of
  all accepted since start or ``/_clear`` (forgotten ones count, so a poller
  never sees one twice); ``limit`` returns at most M (a page). The
  ``X-Messages-Accepted`` header is that total, and ``X-Next-Since`` is the
  ``since`` of the next page (the total, once the last page is read).
- ``GET /_requests[?since=N][&limit=M]``: one JSON line per recorded request:
  ``{"method", "path", "status", "headers", "write_key", "received_at",
  "messages"}``; ``messages`` are the body's messages as sent (also for a
  rejected request). ``X-Requests-Received`` is the total; ``X-Next-Since``
  as above.
- ``POST /_script`` with a JSON object: script answers, as
  :meth:`FakeSegment.respond_with` does. Keys: ``status`` (default 200), ``times``
  or ``seconds`` (a time window), ``headers`` (an object of strings),
  ``body`` (a string is sent as text, anything else as JSON), ``delay``,
  ``drop``, and ``endpoint`` (``"tracking"``, the default, or ``"token"``
  for ``POST /token`` in OAuth mode). A value the server cannot use (an unknown
  key, a wrong type, a status outside 200-599, a delay below 0 or over a day,
  ``times`` < 1, a header that is not one line of Latin-1) answers 400 naming
  the key, and nothing is scripted; so does a script past 1,000 queued ones or
  16 MB of queued bodies (``times`` repeats one script at no cost).
- ``POST /_clear``: forget everything, as :meth:`FakeSegment.clear`.

Answers are JSON (``{"success": true}`` or Segment's error body) except the
two listings. Control requests are never recorded, never consume scripts and
never count as messages. Pure functions over a :class:`Recorder`; no sockets.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import parse_qs, urlsplit

from ._recorder import ENDPOINTS, Endpoint, RecordedRequest, Recorder, make_script
from ._rules import JSON_TYPE, error, json_bytes

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["PREFIX", "ControlReply", "handle"]

#: Paths starting with this are control endpoints.
PREFIX = "/_"
NDJSON_TYPE = "application/x-ndjson"

_SCRIPT_KEYS = frozenset({"status", "times", "seconds", "headers", "body", "delay", "drop", "endpoint"})
_MAX_SCRIPT_BYTES = 1_000_000
# What /_script may queue in all: scripts come over the network, so they are bounded too.
_MAX_QUEUED_SCRIPTS = 1_000
_MAX_QUEUED_SCRIPT_BYTES = 16_000_000


class _InvalidError(Exception):
    """The control request is malformed; its text says how (answered 400)."""


#: Status, headers and body of a control answer.
ControlReply = tuple[int, tuple[tuple[str, str], ...], bytes]


def _json_answer(status: int, payload: object) -> ControlReply:
    return status, (("Content-Type", JSON_TYPE),), json_bytes(payload)


def _problem(status: int, message: str, code: str) -> ControlReply:
    return _json_answer(status, error(status, message, code).payload)


def _count(query: str, name: str) -> int | None:
    """Return the query parameter ``name`` (None when absent); it must be a whole number >= 0."""
    values = parse_qs(query, keep_blank_values=True).get(name)
    if not values:
        return None
    text = values[-1]
    if not (text.isascii() and text.isdigit()):
        msg = f"{name} must be a whole number >= 0, not {text!r}"
        raise _InvalidError(msg)
    return int(text)


def _lines(total_header: str, page: tuple[int, int, list[Any]]) -> ControlReply:
    total, start, rows = page
    body = b"".join(json_bytes(row) + b"\n" for row in rows)
    headers = (("Content-Type", NDJSON_TYPE), (total_header, str(total)), ("X-Next-Since", str(start + len(rows))))
    return 200, headers, body


def _request_row(request: RecordedRequest) -> dict[str, Any]:
    return {
        "method": request.method,
        "path": request.path,
        "status": request.status,
        "headers": request.headers,
        "write_key": request.write_key,
        "received_at": request.received_at,
        "messages": request.batch,
    }


def _get_messages(recorder: Recorder, query: str) -> ControlReply:
    page = recorder.messages_page(_count(query, "since") or 0, _count(query, "limit"))
    return _lines("X-Messages-Accepted", page)


def _get_requests(recorder: Recorder, query: str) -> ControlReply:
    total, start, requests = recorder.requests_page(_count(query, "since") or 0, _count(query, "limit"))
    return _lines("X-Requests-Received", (total, start, [_request_row(r) for r in requests]))


def _json_type(value: object) -> str:
    """Name ``value``'s JSON type, as the sender wrote it."""
    names = {bool: "a boolean", str: "a string", list: "an array", dict: "an object", type(None): "null"}
    return names.get(type(value), "a number")


def _number(spec: dict[str, Any], key: str) -> float | None:
    value = spec.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        msg = f"{key} must be a number, not {_json_type(value)}"
        raise _InvalidError(msg)
    return float(value)


def _whole(spec: dict[str, Any], key: str) -> int | None:
    value = _number(spec, key)
    if value is not None and not value.is_integer():
        msg = f"{key} must be a whole number, not {spec[key]!r}"
        raise _InvalidError(msg)
    return None if value is None else int(value)


def _headers(value: object) -> dict[str, str] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        msg = f"headers must be an object of strings, not {_json_type(value)}"
        raise _InvalidError(msg)
    for name, item in value.items():
        if not isinstance(item, str):
            msg = f"headers[{name!r}] must be a string, not {_json_type(item)}"
            raise _InvalidError(msg)
    return cast("dict[str, str]", value)


def _endpoint(value: object) -> Endpoint:
    if value is None:
        return "tracking"
    if value not in ENDPOINTS:
        msg = f"endpoint must be one of {', '.join(ENDPOINTS)}, not {value!r}"
        raise _InvalidError(msg)
    return value


def _post_script(recorder: Recorder, body: bytes) -> ControlReply:
    if len(body) > _MAX_SCRIPT_BYTES:
        msg = f"a script is at most {_MAX_SCRIPT_BYTES} bytes"
        raise _InvalidError(msg)
    try:
        spec = json.loads(body)
    except ValueError:  # also UnicodeDecodeError
        spec = None
    if not isinstance(spec, dict):
        msg = 'the body must be a JSON object such as {"status": 503, "times": 3}'
        raise _InvalidError(msg)
    unknown = sorted(set(spec) - _SCRIPT_KEYS)
    if unknown:
        msg = f"unknown keys {unknown}; use {sorted(_SCRIPT_KEYS)}"
        raise _InvalidError(msg)
    drop = spec.get("drop", False)
    if not isinstance(drop, bool):
        msg = f"drop must be true or false, not {drop!r}"
        raise _InvalidError(msg)
    status = _whole(spec, "status")
    script = make_script(
        200 if status is None else status,
        headers=_headers(spec.get("headers")),
        body=spec.get("body"),
        delay=_number(spec, "delay") or 0.0,
        drop=drop,
    )
    queued, queued_bytes = recorder.queued_scripts()
    if queued >= _MAX_QUEUED_SCRIPTS or queued_bytes + len(script.body or b"") > _MAX_QUEUED_SCRIPT_BYTES:
        msg = (
            f"too many scripts queued ({queued}, {queued_bytes} bytes of bodies; at most {_MAX_QUEUED_SCRIPTS} "
            f"and {_MAX_QUEUED_SCRIPT_BYTES} bytes): use times, or POST /_clear"
        )
        raise _InvalidError(msg)
    recorder.add_script(
        script,
        times=_whole(spec, "times"),
        seconds=_number(spec, "seconds"),
        endpoint=_endpoint(spec.get("endpoint")),
    )
    return _json_answer(200, {"success": True})


_ROUTES = {"/_messages": "GET", "/_requests": "GET", "/_script": "POST", "/_clear": "POST"}


def _act(path: str, recorder: Recorder, query: str, body: bytes, clear: Callable[[], None]) -> ControlReply:
    if path == "/_messages":
        return _get_messages(recorder, query)
    if path == "/_requests":
        return _get_requests(recorder, query)
    if path == "/_script":
        return _post_script(recorder, body)
    clear()
    return _json_answer(200, {"success": True})


def handle(recorder: Recorder, method: str, target: str, body: bytes, clear: Callable[[], None]) -> ControlReply:
    """Answer one control request (its path starts with :data:`PREFIX`); ``clear`` forgets everything."""
    parts = urlsplit(target)
    path = parts.path.rstrip("/")
    allowed = _ROUTES.get(path)
    if allowed is None:
        return _problem(404, f"no such control endpoint: {path}; use {', '.join(_ROUTES)}", "not_found")
    if method != allowed:
        return _problem(405, f"{method} is not allowed; use {allowed}", "method_not_allowed")
    try:
        return _act(path, recorder, parts.query, body, clear)
    except (_InvalidError, ValueError, TypeError) as exc:  # ValueError, TypeError: make_script's and add_script's
        return _problem(400, str(exc), "invalid_control_request")
