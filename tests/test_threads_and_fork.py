"""Threads and os.fork(): clients shared by threads and used across fork(); no setting lost; no deadlock or repeated id in a child."""

from __future__ import annotations

import functools
import json
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator

import pytest
from conftest import QuickClient

import simple_segment
from simple_segment import Client, _delivery, _ids, stable_ids
from simple_segment._ids import STABLE_IDS_NAMESPACE, new_message_id
from simple_segment.testing import FakeSegment, capture

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork() is POSIX only")

CHILD_DEADLINE = 10.0


def in_child(work: Callable[[], object]) -> object:
    """Run ``work`` in a forked child and return what it returned (JSON); fail if it hangs."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report and leave at once, whatever happens
        try:
            os.close(read)
            os.write(write, json.dumps({"ok": work()}).encode())
        except BaseException as exc:
            os.write(write, json.dumps({"error": repr(exc)}).encode())
        finally:
            os._exit(0)
    os.close(write)
    deadline = time.monotonic() + CHILD_DEADLINE
    while time.monotonic() < deadline:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        time.sleep(0.01)
    else:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        os.close(read)
        pytest.fail(f"the forked child did not finish within {CHILD_DEADLINE} s (deadlocked?)")
    with os.fdopen(read, "rb") as pipe:
        result = json.loads(pipe.read() or b'{"error": "no report"}')
    assert "error" not in result, result["error"]
    return result["ok"]


def minted(client: Client) -> str:
    """Return the messageId the next track() call gets."""
    return str(client.track("u", "E")[1]["messageId"])


def inner_then_outer(client: Client) -> list[str]:
    """In a child: an id in the inner block, then one after leaving it (as when the inner block ends there)."""
    inner = minted(client)
    scope = _ids._scope.get()
    assert scope is not None
    _ids._scope.set(scope.parent)
    return [inner, minted(client)]


@pytest.fixture
def module_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(simple_segment, "write_key", "key")
    monkeypatch.setattr(simple_segment, "send", False)
    yield
    simple_segment.default_client = None


def held_elsewhere(lock: threading.Lock | threading.RLock) -> tuple[threading.Event, threading.Thread]:
    """Hold ``lock`` in another thread until the returned event is set."""
    taken, release = threading.Event(), threading.Event()

    def hold() -> None:
        with lock:
            taken.set()
            release.wait(30)

    thread = threading.Thread(target=hold, daemon=True)
    thread.start()
    assert taken.wait(10)
    return release, thread


@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_fork_while_another_thread_builds_default_client(module_settings: None) -> None:
    """The child's first module-level call works; it does not wait for a thread that is not there."""
    release, thread = held_elsewhere(simple_segment._building)
    try:
        result = in_child(lambda: simple_segment.track("u", "In child")[0])
    finally:
        release.set()
        thread.join(10)
    assert result is True


@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_fork_while_another_thread_assigns_a_setting(module_settings: None) -> None:
    release, thread = held_elsewhere(simple_segment._building)
    try:
        result = in_child(lambda: [setattr(simple_segment, "debug", False), simple_segment.identify("u")[0]][1])
    finally:
        release.set()
        thread.join(10)
    assert result is True


@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_fork_while_another_thread_starts_a_capture() -> None:
    release, thread = held_elsewhere(_delivery._recorders_lock)

    def child() -> int:
        with capture() as sent:
            Client("key").track("u", "E")
        return len(sent)

    try:
        result = in_child(child)
    finally:
        release.set()
        thread.join(10)
    assert result == 1


def test_random_ids_are_seeded_anew_in_a_child() -> None:
    """Without the re-seed, parent and child would draw the same next ids (Segment keeps one)."""
    child_ids = in_child(lambda: [new_message_id() for _ in range(3)])
    parent_ids = [new_message_id() for _ in range(3)]
    assert isinstance(child_ids, list)
    assert not set(child_ids) & set(parent_ids)


def test_a_fork_inside_stable_ids_gives_the_child_ids_of_its_own() -> None:
    client = Client("key", send=False)

    def ids(count: int) -> list[str]:
        return [str(client.track("u", "E")[1]["messageId"]) for _ in range(count)]

    with stable_ids("task"):
        before = ids(2)
        child = in_child(lambda: ids(3))
        parent = ids(3)
        second_child = in_child(lambda: ids(1))
    assert isinstance(child, list)
    assert isinstance(second_child, list)
    assert not set(child) & set(parent)
    assert not set(child) & set(before)
    assert not set(second_child) & set(child)
    # Deterministic: the block's k-th fork goes on under f"{seed}:fork{k}", so a re-run repeats them.
    assert child == [str(uuid.uuid5(STABLE_IDS_NAMESPACE, f"task:fork0:{n}")) for n in range(3)]
    assert second_child == [str(uuid.uuid5(STABLE_IDS_NAMESPACE, "task:fork1:0"))]
    assert parent == [str(uuid.uuid5(STABLE_IDS_NAMESPACE, f"task:{n}")) for n in range(2, 5)]


def test_a_fork_inside_a_nested_block_reseeds_the_outer_block_in_the_child_too() -> None:
    client = Client("key", send=False)
    one = functools.partial(minted, client)
    child_work = functools.partial(inner_then_outer, client)

    with stable_ids("outer"):
        with stable_ids("inner"):
            child = in_child(child_work)
            parent_inner = one()
        parent_outer = one()
    assert isinstance(child, list)
    assert child[0] != parent_inner
    assert child[1] != parent_outer
    assert child[1] == str(uuid.uuid5(STABLE_IDS_NAMESPACE, "outer:fork0:0"))


class SlowProxies(dict[str, str]):
    """A proxies setting whose reading blocks until released: the client is built meanwhile."""

    def __init__(self) -> None:
        super().__init__()
        self.reading = threading.Event()
        self.release = threading.Event()

    def items(self):  # type: ignore[no-untyped-def, override]
        self.reading.set()
        self.release.wait(10)
        return super().items()


def test_a_setting_assigned_while_default_client_is_built_is_not_lost(module_settings: None) -> None:
    proxies = SlowProxies()
    simple_segment.proxies = proxies
    simple_segment.default_client = None
    builder = threading.Thread(target=lambda: simple_segment.track("u", "E"))
    builder.start()
    assert proxies.reading.wait(10)  # the builder has read write_key and waits inside Client()
    assigner = threading.Thread(target=setattr, args=(simple_segment, "write_key", "new-key"))
    assigner.start()
    time.sleep(0.2)  # let the assignment reach the module (it waits for the builder with the fix)
    proxies.release.set()
    builder.join(10)
    assigner.join(10)
    assert not builder.is_alive()
    assert not assigner.is_alive()
    simple_segment.track("u", "E")  # the settings are unchanged since: this call uses (or builds) the current client
    client = simple_segment.default_client
    assert client is not None
    assert client.write_key == "new-key"
    simple_segment.proxies = None


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


def test_a_fork_inside_a_nested_block_of_the_same_seed_keeps_one_count_in_the_child() -> None:
    """The inner and outer block share a count; in the child they still do (no id minted twice)."""
    child_work = functools.partial(inner_then_outer, Client("key", send=False))

    with stable_ids("A"), stable_ids("A"):
        child = in_child(child_work)
    assert isinstance(child, list)
    assert len(set(child)) == 2


def test_forks_from_two_inner_blocks_give_the_outer_block_two_seeds() -> None:
    """Each fork draws its number from every block around it: two children never share the outer block's ids."""
    client = Client("key", send=False)

    def outer_id() -> list[str]:
        scope = _ids._scope.get()
        assert scope is not None
        _ids._scope.set(scope.parent)  # leave the inner block, as its end would
        return [str(client.track("u", "E")[1]["messageId"])]

    with stable_ids("A"):
        with stable_ids("B1"):
            first = in_child(outer_id)
        with stable_ids("B2"):
            second = in_child(outer_id)
    assert isinstance(first, list)
    assert isinstance(second, list)
    assert first != second
    assert first == [str(uuid.uuid5(STABLE_IDS_NAMESPACE, "A:fork0:0"))]
    assert second == [str(uuid.uuid5(STABLE_IDS_NAMESPACE, "A:fork1:0"))]
