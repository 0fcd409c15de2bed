"""The tests' own raw-socket fault server (tests/faults.py) checks itself."""

from __future__ import annotations

import threading

from conftest import QuickClient
from faults import FaultServer, respond
from outcomes import send_one


def test_fault_server_records_and_cleans_up(quick_client: QuickClient) -> None:
    """Self-check of faults.FaultServer: it records requests and joins its threads on exit."""
    before = set(threading.enumerate())
    with FaultServer() as server:
        server.script(respond(503))
        client = quick_client(server.url, max_retries=2)
        ok_, msg = send_one(client)
        client.close()
        requests = server.requests
    assert ok_ is True
    assert [r.message_ids for r in requests] == [[msg["messageId"]]] * 2
    assert requests[0].headers["content-type"] == "application/json"
    assert server.alive_threads() == []
    assert set(threading.enumerate()) <= before
