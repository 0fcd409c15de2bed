"""Threads and fork: one client shared by threads, and a client made before fork() used on both sides."""

from __future__ import annotations

import os
import threading

import pytest
from conftest import QuickClient

from simple_segment.testing import FakeSegment


def test_threads_share_one_client(fake_segment: FakeSegment, quick_client: QuickClient) -> None:
    """One client used by 8 threads delivers every message exactly once."""
    client = quick_client(fake_segment)
    sent: list[str] = []
    lock = threading.Lock()

    def work(n: int) -> None:
        for i in range(25):
            _, msg = client.track(f"user-{n}", "E", {"i": i})
            with lock:
                sent.append(msg["messageId"])

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    client.close()
    received = [m["messageId"] for m in fake_segment.messages]
    assert len(sent) == 200
    assert sorted(received) == sorted(sent)
    assert len(set(received)) == 200


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_client_survives_fork(fake_segment: FakeSegment, quick_client: QuickClient) -> None:
    """A client made before fork() sends from parent and child over separate connections."""
    client = quick_client(fake_segment)
    client.track("parent", "Before Fork")
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 1
        try:
            client.track("child", "In Child")
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    client.track("parent", "After Fork")
    client.close()
    events = [(m["userId"], m["event"]) for m in fake_segment.messages]
    assert sorted(events) == sorted([("parent", "Before Fork"), ("child", "In Child"), ("parent", "After Fork")])
