"""messageIds: random by default, deterministic inside :func:`stable_ids`.

Segment de-duplicates on ``messageId``.  Retries inside a call keep the id, but a
task queue that retries a whole task builds its messages again; inside
``stable_ids(task_id)`` those rebuilt messages get the same ids as the first run's,
so an event that was stored before the reply was lost is stored once.
"""

from __future__ import annotations

import itertools
import os
import random
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

__all__ = ["STABLE_IDS_NAMESPACE", "new_message_id", "next_message_id", "stable_ids"]

STABLE_IDS_NAMESPACE = uuid.UUID("6f1c4d02-8b53-5f4e-9a57-3c2f1b1d5e7a")
"""The UUID namespace of stable ids: the n-th id of seed ``s`` is ``uuid5(STABLE_IDS_NAMESPACE, f"{s}:{n}")``."""


class _Scope:
    __slots__ = ("counter", "seed")

    def __init__(self, seed: str) -> None:
        self.seed = seed
        self.counter = itertools.count()  # next() is atomic: threads sharing a scope get distinct n


_scope: ContextVar[_Scope | None] = ContextVar("simple_segment_stable_ids", default=None)


_random = random.Random()  # noqa: S311 - ids must be unique, not secret; seeded from os.urandom; private, so random.seed(42) elsewhere cannot repeat our ids
if hasattr(os, "register_at_fork"):
    # A forked child must not repeat its parent's ids: it draws from a fresh seed.
    os.register_at_fork(after_in_child=_random.seed)
_VERSION_4 = (0x4 << 76) | (0x2 << 62)
"""The version (4) and variant (RFC 4122) bits of a UUID, set in every id."""
_CLEAR = ~((0xF << 76) | (0x3 << 62))


def new_message_id() -> str:
    """Return a random (version 4) UUID string, formatted as ``str(uuid.uuid4())``.

    122 random bits from a private generator seeded from ``os.urandom`` (and seeded
    anew in a forked child), at a quarter of the cost of a system call per id: a
    messageId must be unique, not secret.
    """
    text = f"{_random.getrandbits(128) & _CLEAR | _VERSION_4:032x}"
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def next_message_id() -> str:
    """Return the id for the next message built without an explicit ``message_id``."""
    scope = _scope.get()
    if scope is None:
        return new_message_id()
    return str(uuid.uuid5(STABLE_IDS_NAMESPACE, f"{scope.seed}:{next(scope.counter)}"))


@contextmanager
def stable_ids(seed: str | int | uuid.UUID) -> Iterator[None]:
    """Give messages built inside the block deterministic ids derived from ``seed``.

    The n-th message built in the block without an explicit ``message_id`` gets
    ``uuid5(STABLE_IDS_NAMESPACE, f"{seed}:{n}")`` (a version 5 UUID; n counts from 0).
    Run the same calls in the same order with the same seed (a Celery task id, an RQ
    job id, an idempotency key) and the messages get the same ids, so Segment
    de-duplicates a retried task's events.  The condition: a retried task must make
    its calls in the same order.  An explicit ``message_id`` always wins (and does not
    advance the count).  Outside any block ids are random (version 4).

    The scope is a :mod:`contextvars` variable: it holds for the current thread or
    asyncio task, and tasks created inside the block share its count.  A block inside
    another starts its own count; the outer one resumes after it.

    Since: 0.2.0
    """
    if isinstance(seed, bool) or not isinstance(seed, (str, int, uuid.UUID)) or seed == "":
        msg = f"stable_ids(seed): seed must be a non-empty str, an int or a UUID, not {seed!r}"
        raise TypeError(msg)
    token = _scope.set(_Scope(str(seed)))
    try:
        yield
    finally:
        _scope.reset(token)
