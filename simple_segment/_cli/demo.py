"""The ``demo`` command: every call and a batch, sent to an embedded FakeSegment."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from typing import Any

from simple_segment.client import Client

from .common import EXIT_DELIVERY, EXIT_OK, PROG, describe

__all__ = ["add_demo_parser", "run_demo"]


def add_demo_parser(commands: Any, debug: argparse.ArgumentParser) -> None:  # noqa: ANN401 - argparse's private subparsers action
    """Add the ``demo`` subcommand to ``commands``, with ``debug``'s flag."""
    commands.add_parser(
        "demo", parents=[debug], help="send every call and a batch to an embedded local server; no account needed",
        description="Start FakeSegment on loopback, send each call type and a batch through the real client over "
        "real HTTP, and show what the server received and how long each call took.",
    )


def run_demo(_: argparse.Namespace) -> int:
    """Send every call and a batch to an embedded FakeSegment and show it; return the exit status."""
    from simple_segment.testing import FakeSegment  # noqa: PLC0415 - only this command needs the server

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
            shown = describe(received, timestamp=False) if received else "NOT RECEIVED"
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
