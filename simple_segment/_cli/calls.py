"""The six call commands (``identify``, ``track`` ...): flags made from the builders' signatures.

:data:`FIELDS` is the one table of message fields: each builder parameter's flag,
argument type, wire name and help.  Which fields a call takes is read from its
builder in ``_messages`` with :func:`inspect.signature`, so a call's flags and the
``import`` command's fields always match the library's signature (a parameter
missing from the table fails ``tests/test_cli_flags.py``).
"""

from __future__ import annotations

import argparse
import inspect
import sys
from collections.abc import Callable
from typing import IO, Any, NamedTuple

from simple_segment import _messages
from simple_segment._wire import encode_message
from simple_segment.client import Client

from .common import EXIT_OK, json_object, make_client, timestamp

__all__ = ["CALLS", "CALL_ARGS", "FIELDS", "Field", "add_call_parsers", "builder_args", "run_call"]

CALLS = ("identify", "track", "page", "screen", "group", "alias")


class Field(NamedTuple):
    """How one builder parameter appears on the command line and on the wire."""

    wire: str
    """Its name in a message (``import`` reads it)."""
    metavar: str
    help: str
    type: Callable[[str], Any] | None = None
    """The argparse type; None keeps the text."""

    @staticmethod
    def flag(name: str) -> str:
        """Return the flag of parameter ``name``: ``user_id`` -> ``--user-id``."""
        return "--" + name.replace("_", "-")


FIELDS: dict[str, Field] = {
    # In the order --help lists them (alias's --previous-id first, as its signature has it).
    "previous_id": Field("previousId", "ID", "the id being merged into --user-id"),
    "user_id": Field("userId", "ID", "the user's id in your database"),
    "anonymous_id": Field(
        "anonymousId", "ID", "an id for a user not known yet (a user id or an anonymous id is required)",
    ),
    "group_id": Field("groupId", "ID", "the group's (account's, company's) id"),
    "event": Field("event", "EVENT", "the event name, e.g. 'Order Completed'"),
    "name": Field("name", "NAME", "the page or screen name"),
    "category": Field("category", "CATEGORY", "the page or screen category"),
    "properties": Field("properties", "JSON", "a JSON object of event properties", json_object),
    "traits": Field("traits", "JSON", "a JSON object of traits", json_object),
    "context": Field("context", "JSON", "a JSON object merged into the message's context", json_object),
    "integrations": Field(
        "integrations", "JSON", 'a JSON object selecting destinations, e.g. \'{"All": false}\'', json_object,
    ),
    "timestamp": Field(
        "timestamp", "ISO-8601", "when it happened, ISO-8601 (e.g. 2024-05-06T07:08:09Z; default now)", timestamp,
    ),
    "message_id": Field("messageId", "ID", "a unique id; Segment de-duplicates on it (default a new uuid4)"),
}


def builder_args(build: Callable[..., Any]) -> tuple[str, ...]:
    """Return the parameter names of the builder ``build``, in :data:`FIELDS` order.

    Raises :class:`KeyError` naming a parameter that has no entry in :data:`FIELDS`.
    """
    names = list(inspect.signature(build).parameters)
    order = list(FIELDS)
    for name in names:
        if name not in FIELDS:
            raise KeyError(f"{build.__name__}() has parameter {name!r}, which the CLI's FIELDS table lacks")
    return tuple(sorted(names, key=order.index))


CALL_ARGS: dict[str, tuple[str, ...]] = {call: builder_args(getattr(_messages, call)) for call in CALLS}
"""Each call's parameter names, from its builder's signature."""

_NEEDS = {
    "identify": "a user id or anonymous id",
    "track": "a user id or anonymous id, and --event",
    "page": "a user id or anonymous id",
    "screen": "a user id or anonymous id",
    "group": "a user id or anonymous id, and --group-id",
    "alias": "--previous-id and --user-id",
}


def add_call_parsers(commands: Any, common: argparse.ArgumentParser) -> None:  # noqa: ANN401 - argparse's private subparsers action
    """Add one subcommand per call to ``commands``, with ``common``'s flags and the call's fields."""
    for call in CALLS:
        description = f"Send one {call} call and wait until Segment has accepted it.  Needs {_NEEDS[call]}."
        sub = commands.add_parser(call, parents=[common], help=f"send one {call} call", description=description)
        fields = sub.add_argument_group("message fields")
        for name in CALL_ARGS[call]:
            field = FIELDS[name]
            fields.add_argument(Field.flag(name), dest=name, type=field.type, metavar=field.metavar, help=field.help)


def run_call(args: argparse.Namespace) -> int:
    """Send (or with ``--dry-run`` print) the one call ``args`` describes; return the exit status."""
    kwargs = {name: getattr(args, name) for name in CALL_ARGS[args.command] if getattr(args, name) is not None}
    with make_client(args) as sender:
        _, msg = getattr(sender, args.command)(**kwargs)
        if args.dry_run:
            print_request(sender, msg, sys.stdout)
        else:
            sys.stdout.write(f"delivered {msg['type']} {msg['messageId']}\n")
    return EXIT_OK


def print_request(sender: Client, msg: dict[str, Any], out: IO[str]) -> None:
    """Print the request ``sender`` would send for ``msg``, with the write key redacted."""
    preview = sender._delivery.preview([encode_message(msg)])  # noqa: SLF001 - the client's own request
    out.write(f"POST {sender.url} HTTP/1.1\n")
    for name, value in preview.headers.items():
        out.write(f"{name}: {value}\n")
    out.write("\n" + preview.body.decode("utf-8") + "\n")
    if sender.gzip:
        out.write(f"(the body is sent gzip-compressed: {preview.headers['Content-Length']} bytes)\n")
