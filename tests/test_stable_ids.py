"""messageIds: random by default, deterministic inside stable_ids(); every documented rule."""

from __future__ import annotations

import asyncio
import contextvars
import threading
import uuid

import pytest

import simple_segment
from simple_segment import Client, ValidationError, stable_ids
from simple_segment._ids import STABLE_IDS_NAMESPACE


def stable(seed: str, n: int) -> str:
    return str(uuid.uuid5(STABLE_IDS_NAMESPACE, f"{seed}:{n}"))


@pytest.fixture
def client() -> Client:
    return Client("key", send=False)


def track(client: Client, **kwargs: object) -> str:
    return str(client.track("u", "Event", **kwargs)[1]["messageId"])  # type: ignore[arg-type]


def test_ids_outside_a_block_are_random_version_4(client: Client) -> None:
    ids = {track(client) for _ in range(50)}
    assert len(ids) == 50
    assert {uuid.UUID(i).version for i in ids} == {4}


def test_the_nth_id_of_a_block_is_uuid5_of_seed_and_n(client: Client) -> None:
    with stable_ids("task-1"):
        ids = [track(client) for _ in range(3)]
    assert ids == [stable("task-1", 0), stable("task-1", 1), stable("task-1", 2)]
    assert {uuid.UUID(i).version for i in ids} == {5}


@pytest.mark.parametrize(("seed", "text"), [(7, "7"), (uuid.UUID(int=1), str(uuid.UUID(int=1)))])
def test_int_and_uuid_seeds_are_their_text(client: Client, seed: int | uuid.UUID, text: str) -> None:
    with stable_ids(seed):
        assert track(client) == stable(text, 0)


def test_the_same_calls_in_the_same_order_repeat_their_ids(client: Client) -> None:
    runs = []
    for _ in range(2):
        with stable_ids("job-9"):
            runs.append([track(client), str(client.identify("u", {"a": 1})[1]["messageId"])])
    assert runs[0] == runs[1]


def test_an_explicit_message_id_wins_and_does_not_advance_the_count(client: Client) -> None:
    with stable_ids("s"):
        first = track(client)
        explicit = track(client, message_id="mine")
        second = track(client)
    assert (first, explicit, second) == (stable("s", 0), "mine", stable("s", 1))


def test_a_nested_block_with_another_seed_counts_alone_and_the_outer_resumes(client: Client) -> None:
    with stable_ids("outer"):
        a = track(client)
        with stable_ids("inner"):
            b, c = track(client), track(client)
        d = track(client)
    assert [a, b, c, d] == [stable("outer", 0), stable("inner", 0), stable("inner", 1), stable("outer", 1)]


def test_a_nested_block_with_the_same_seed_continues_the_count(client: Client) -> None:
    """An RQ job function calling another with the same job id: two events never share an id."""
    with stable_ids("job"):
        a = track(client)
        with stable_ids("job"):
            b = track(client)
        c = track(client)
    assert [a, b, c] == [stable("job", 0), stable("job", 1), stable("job", 2)]


def test_the_same_seed_further_out_is_found_through_other_blocks(client: Client) -> None:
    with stable_ids("a"):
        first = track(client)
        with stable_ids("b"), stable_ids("a"):
            inner = track(client)
        last = track(client)
    assert [first, inner, last] == [stable("a", 0), stable("a", 1), stable("a", 2)]
    assert len({first, inner, last}) == 3


def test_outside_the_block_ids_are_random_again(client: Client) -> None:
    with stable_ids("s"):
        track(client)
    assert uuid.UUID(track(client)).version == 4


def test_threads_started_inside_a_block_do_not_inherit_it(client: Client) -> None:
    seen: list[str] = []
    with stable_ids("s"):
        thread = threading.Thread(target=lambda: seen.append(track(client)))
        thread.start()
        thread.join(10)
    assert len(seen) == 1
    assert uuid.UUID(seen[0]).version == 4


def test_a_thread_run_in_a_copy_of_the_context_shares_the_count(client: Client) -> None:
    seen: list[str] = []
    with stable_ids("s"):
        context = contextvars.copy_context()
        thread = threading.Thread(target=context.run, args=(lambda: seen.extend(track(client) for _ in range(2)),))
        thread.start()
        thread.join(10)
        after = track(client)
    assert sorted([*seen, after]) == sorted(stable("s", n) for n in range(3))


def test_threads_sharing_a_block_get_distinct_ids(client: Client) -> None:
    seen: list[str] = []
    lock = threading.Lock()

    def work() -> None:
        for _ in range(200):
            message_id = track(client)
            with lock:
                seen.append(message_id)

    with stable_ids("s"):
        threads = [threading.Thread(target=contextvars.copy_context().run, args=(work,)) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    assert sorted(seen) == sorted(stable("s", n) for n in range(800))


def test_asyncio_tasks_created_inside_a_block_share_its_count(client: Client) -> None:
    async def main() -> list[str]:
        with stable_ids("s"):
            first = track(client)
            second = await asyncio.create_task(_one())
            return [first, second]

    async def _one() -> str:
        return track(client)

    assert asyncio.run(main()) == [stable("s", 0), stable("s", 1)]


@pytest.mark.parametrize("seed", ["", None, True, 1.5, b"x", ["a"]])
def test_a_bad_seed_is_a_validation_error_naming_the_rule(seed: object) -> None:
    with pytest.raises(ValidationError, match=r"stable_ids\(seed\): must be a non-empty str, an int or a UUID"):
        with stable_ids(seed):  # type: ignore[arg-type]
            pass


def test_a_seed_whose_repr_raises_still_gets_the_library_error() -> None:
    class Hostile:
        def __repr__(self) -> str:
            raise RuntimeError

    with pytest.raises(ValidationError, match="not a Hostile"):
        with stable_ids(Hostile()):  # type: ignore[arg-type]
            pass


def test_module_functions_use_the_block_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(simple_segment, "write_key", "k")
    monkeypatch.setattr(simple_segment, "send", False)
    with stable_ids("m"):
        _, msg = simple_segment.track("u", "E")
    assert msg["messageId"] == stable("m", 0)
