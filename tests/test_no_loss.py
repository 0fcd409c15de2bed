"""Reconciliation: against a randomly failing server, no message is ever lost.

A FakeSegment is scripted, request by request, from a seeded random generator: 200,
slow 200, 500, 503, 429 (with and without Retry-After), 400 and dropped connections.
A few hundred messages go through single calls and batches, with a client that
raises and with one that reports through ``on_error``, with few retries and short
backoff.  At the end every message the caller produced is either stored by the
server (at least once) or was handed back to the caller (``.messages``, ``.unsent``
or ``on_error``); a call that returned ``(True, msg)`` was stored; a single call
handed back with a permanent error was not stored; and each message kept one
messageId through every attempt.

Messages are identified by a ``seq`` property the test sets, so a message lost
without a trace is still noticed.  The seed is fixed and printed.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from simple_segment import BatchDeliveryError, Client, DeliveryError, RetryableError
from simple_segment.testing import FakeSegment

SEED = 20_240_611
"""Fixed, so a failure can be replayed; printed by the test."""

SINGLE_CALLS = 200
BATCHES = 10
BATCH_SIZE = 15
FLUSH_EVERY = 4
"""A batch posts every few messages, so one batch makes several requests."""
SCRIPTED_ANSWERS = 3_000
"""More than the run can use: answers left over are simply never used."""

ANSWERS: list[tuple[int, dict[str, Any]]] = [
    (40, {"status": 200}),
    (10, {"status": 200, "delay": "slow"}),
    (8, {"status": 500}),
    (12, {"status": 503}),
    (5, {"status": 429, "headers": {"Retry-After": "0"}}),
    (4, {"status": 429}),
    (5, {"status": 400}),
    (10, {"drop": True}),
]
"""(weight, FakeSegment.respond_with arguments) for each scripted answer."""


@dataclass
class Ledger:
    """What the caller saw, per message seq."""

    produced: list[str] = field(default_factory=list)
    returned_ok: set[str] = field(default_factory=set)
    handed_back: dict[str, list[bool]] = field(default_factory=lambda: defaultdict(list))
    """seq -> one entry per hand-back: True when the error was permanent (not retryable)."""
    single: set[str] = field(default_factory=set)
    ids: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    """seq -> every messageId seen for it (returned, handed back or stored)."""

    def saw(self, msg: dict[str, Any]) -> str:
        seq = msg["properties"]["seq"]
        self.ids[seq].add(msg["messageId"])
        return seq

    def hand_back(self, error: BaseException, messages: list[dict[str, Any]]) -> None:
        permanent = not isinstance(error, RetryableError)
        for msg in messages:
            self.handed_back[self.saw(msg)].append(permanent)


def scripted(server: FakeSegment, rng: random.Random) -> None:
    weights = [weight for weight, _ in ANSWERS]
    for _ in range(SCRIPTED_ANSWERS):
        (_, answer) = rng.choices(ANSWERS, weights)[0]
        options = dict(answer)
        if options.get("delay") == "slow":
            options["delay"] = rng.uniform(0.01, 0.05)  # well under the client's timeout
        server.respond_with(**options)


@pytest.fixture
def server() -> Iterator[FakeSegment]:
    with FakeSegment() as fake:
        yield fake


def test_no_message_is_lost(server: FakeSegment) -> None:
    """Every produced message is stored or handed back; successes are stored; single
    calls that failed permanently were not stored; one messageId per message."""
    print(f"reconcile seed: {SEED}")
    rng = random.Random(SEED)
    scripted(server, rng)
    ledger = Ledger()
    options: dict[str, Any] = {"timeout": 2, "total_timeout": 10, "max_retries": 2, "backoff_factor": 0.001}
    raising = Client("test-key", host=server.url, **options)
    reporting = Client("test-key", host=server.url, on_error=ledger.hand_back, **options)

    for index in range(SINGLE_CALLS):
        seq = f"s{index}"
        ledger.produced.append(seq)
        ledger.single.add(seq)
        client = raising if rng.random() < 0.5 else reporting
        message_id = f"mid-{seq}" if rng.random() < 0.5 else None
        try:
            ok, msg = client.track("u", "E", {"seq": seq}, message_id=message_id)
        except DeliveryError as error:
            ledger.hand_back(error, error.messages)
            continue
        ledger.saw(msg)
        if ok:
            ledger.returned_ok.add(seq)

    for number in range(BATCHES):
        client = raising if number % 2 == 0 else reporting
        try:
            with client.batch() as batch:
                for index in range(BATCH_SIZE):
                    seq = f"b{number}.{index}"
                    ledger.produced.append(seq)
                    ledger.saw(batch.track("u", "E", {"seq": seq})[1])
                    if index % FLUSH_EVERY == FLUSH_EVERY - 1:
                        batch.flush()
        except BatchDeliveryError as error:
            ledger.hand_back(error, error.unsent)

    raising.close()
    reporting.close()

    stored: dict[str, int] = defaultdict(int)
    for msg in server.messages:
        stored[ledger.saw(msg)] += 1

    lost = [seq for seq in ledger.produced if seq not in stored and seq not in ledger.handed_back]
    false_success = sorted(seq for seq in ledger.returned_ok if seq not in stored)
    permanent_but_stored = sorted(
        seq for seq in ledger.single if seq in stored and any(ledger.handed_back.get(seq, []))
    )
    many_ids = {seq: ids for seq, ids in ledger.ids.items() if len(ids) != 1}
    unknown = sorted(set(stored) - set(ledger.produced))
    print(
        f"produced={len(ledger.produced)} stored={len(stored)} handed_back={len(ledger.handed_back)}"
        f" permanent={sum(1 for marks in ledger.handed_back.values() if any(marks))}"
        f" requests={len(server.requests)} unused_answers={server.pending_responses}"
    )
    assert server.pending_responses > 0, "the script ran out: raise SCRIPTED_ANSWERS"
    assert lost == [], f"seed {SEED}: lost without trace: {lost}"
    assert false_success == [], f"seed {SEED}: returned (True, msg) but never stored: {false_success}"
    assert permanent_but_stored == [], f"seed {SEED}: failed permanently yet stored: {permanent_but_stored}"
    assert many_ids == {}, f"seed {SEED}: a message changed messageId between attempts: {many_ids}"
    assert unknown == [], f"seed {SEED}: the server stored messages nobody produced: {unknown}"
    # The run exercised both outcomes, or it proves little.
    assert stored, "nothing was stored"
    assert ledger.handed_back, "nothing failed: the random script is too kind"
