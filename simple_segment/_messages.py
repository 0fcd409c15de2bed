"""Build Segment messages from the official library's call arguments.

Each builder takes the arguments of one call and returns a new dict in Segment's
wire shape (SPEC.md section 2) whose values are plain JSON types, validating as it
goes: a bad argument raises :class:`ValidationError` naming the argument (or the
path inside it).  Builders never modify what the caller passed.  They know nothing
of serialization limits, batching or HTTP.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Mapping
from decimal import Decimal
from typing import Any
from uuid import UUID

from ._version import VERSION
from ._wire import format_datetime, now_iso, to_json_value
from .errors import ValidationError

Message = dict[str, Any]
"""A Segment message: a dict of plain JSON values."""

LIBRARY_NAME = "simple_segment"
MAX_MESSAGE_ID_LENGTH = 100
"""A messageId must be shorter than this."""


def new_message_id() -> str:
    """Return a random (version 4) UUID string.

    Same format as ``str(uuid.uuid4())``, made directly from ``os.urandom``, at a
    fraction of its cost.
    """
    raw = bytearray(os.urandom(16))
    raw[6] = (raw[6] & 0x0F) | 0x40
    raw[8] = (raw[8] & 0x3F) | 0x80
    text = raw.hex()
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def _id(value: object, field: str) -> str | None:
    if value is None or type(value) is str:
        return value
    kind = type(value)
    if isinstance(value, bool) or not isinstance(value, (str, int, float, Decimal, UUID)):
        raise ValidationError(field, f"must be a str or a number, not {kind.__name__}")
    if isinstance(value, float) and value - value != 0.0:
        raise ValidationError(field, f"{value!r} is not a valid id")
    return str(value)


def _required_id(value: object, field: str) -> str:
    text = _id(value, field)
    if not text:
        raise ValidationError(field, "is required")
    return text


def _mapping(value: object, field: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValidationError(field, f"must be a dict, not {type(value).__name__}")
    converted: dict[str, Any] = to_json_value(value, field)
    return converted


def _optional_str(value: object, field: str) -> str | None:
    if value is None or isinstance(value, str):
        return value if value is None or type(value) is str else str(value)
    raise ValidationError(field, f"must be a str, not {type(value).__name__}")


def _common(  # noqa: PLR0913 - the fields every call shares
    kind: str,
    user_id: object,
    anonymous_id: object,
    context: object,
    timestamp: object,
    integrations: object,
    message_id: object,
    *,
    need_identity: bool = True,
) -> Message:
    user = _id(user_id, "user_id")
    anonymous = _id(anonymous_id, "anonymous_id")
    if need_identity and not user and not anonymous:
        raise ValidationError("user_id", "user_id or anonymous_id is required")

    if timestamp is None:
        stamp = now_iso()
    elif isinstance(timestamp, dt.datetime):
        stamp = format_datetime(timestamp)
    else:
        raise ValidationError("timestamp", f"must be a datetime, not {type(timestamp).__name__}")

    if message_id is None:
        mid = new_message_id()
    else:
        mid = _required_id(message_id, "message_id")
        if len(mid) >= MAX_MESSAGE_ID_LENGTH:
            raise ValidationError("message_id", f"must be shorter than {MAX_MESSAGE_ID_LENGTH} characters")

    # The caller's context keys win, "library" included; their dict is copied, never modified.
    ctx = {"library": {"name": LIBRARY_NAME, "version": VERSION}}
    if context is not None:
        ctx.update(_mapping(context, "context"))

    msg: Message = {
        "type": kind,
        "messageId": mid,
        "timestamp": stamp,
        "context": ctx,
        "integrations": _mapping(integrations, "integrations"),
    }
    if user is not None:
        msg["userId"] = user
    if anonymous is not None:
        msg["anonymousId"] = anonymous
    return msg


def identify(  # noqa: PLR0913 - the official signature
    user_id: object = None,
    traits: object = None,
    context: object = None,
    timestamp: object = None,
    anonymous_id: object = None,
    integrations: object = None,
    message_id: object = None,
) -> Message:
    """Build an identify message."""
    msg = _common("identify", user_id, anonymous_id, context, timestamp, integrations, message_id)
    msg["traits"] = _mapping(traits, "traits")
    return msg


def track(  # noqa: PLR0913 - the official signature
    user_id: object = None,
    event: object = None,
    properties: object = None,
    context: object = None,
    timestamp: object = None,
    anonymous_id: object = None,
    integrations: object = None,
    message_id: object = None,
) -> Message:
    """Build a track message."""
    name = _optional_str(event, "event")
    if not name:
        raise ValidationError("event", "is required (a non-empty str)")
    msg = _common("track", user_id, anonymous_id, context, timestamp, integrations, message_id)
    msg["event"] = name
    msg["properties"] = _mapping(properties, "properties")
    return msg


def alias(  # noqa: PLR0913 - the official signature
    previous_id: object = None,
    user_id: object = None,
    context: object = None,
    timestamp: object = None,
    integrations: object = None,
    message_id: object = None,
) -> Message:
    """Build an alias message."""
    previous = _required_id(previous_id, "previous_id")
    user = _required_id(user_id, "user_id")
    msg = _common("alias", user, None, context, timestamp, integrations, message_id)
    msg["previousId"] = previous
    return msg


def group(  # noqa: PLR0913 - the official signature
    user_id: object = None,
    group_id: object = None,
    traits: object = None,
    context: object = None,
    timestamp: object = None,
    anonymous_id: object = None,
    integrations: object = None,
    message_id: object = None,
) -> Message:
    """Build a group message."""
    gid = _required_id(group_id, "group_id")
    msg = _common("group", user_id, anonymous_id, context, timestamp, integrations, message_id)
    msg["groupId"] = gid
    msg["traits"] = _mapping(traits, "traits")
    return msg


def page(  # noqa: PLR0913 - the official signature
    user_id: object = None,
    category: object = None,
    name: object = None,
    properties: object = None,
    context: object = None,
    timestamp: object = None,
    anonymous_id: object = None,
    integrations: object = None,
    message_id: object = None,
    *,
    kind: str = "page",
) -> Message:
    """Build a page message (``kind="screen"`` for a screen message)."""
    title = _optional_str(name, "name")
    section = _optional_str(category, "category")
    msg = _common(kind, user_id, anonymous_id, context, timestamp, integrations, message_id)
    msg["properties"] = _mapping(properties, "properties")
    if title is not None:
        msg["name"] = title
    if section is not None:
        msg["category"] = section
    return msg


def with_defaults(msg: Message, context: dict[str, Any] | None, integrations: dict[str, Any] | None) -> Message:
    """Return ``msg`` with batch-level ``context``/``integrations`` merged under its own.

    The merge is one level deep: a key the message sets wins over the same key of the
    defaults, whatever its value.  ``msg`` itself is not modified.
    """
    msg = dict(msg)
    if context:
        msg["context"] = {**context, **msg["context"]}
    if integrations:
        msg["integrations"] = {**integrations, **msg["integrations"]}
    return msg
