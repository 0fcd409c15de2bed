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

from .errors import ValidationError

__all__ = ["STABLE_IDS_NAMESPACE", "new_message_id", "next_message_id", "stable_ids"]

STABLE_IDS_NAMESPACE = uuid.UUID("6f1c4d02-8b53-5f4e-9a57-3c2f1b1d5e7a")
"""The UUID namespace of stable ids: the n-th id of seed ``s`` is ``uuid5(STABLE_IDS_NAMESPACE, f"{s}:{n}")``."""


class _Scope:
    __slots__ = ("counter", "forks", "parent", "seed")

    def __init__(self, seed: str, parent: _Scope | None) -> None:
        self.seed = seed
        self.parent = parent
        # A block inside an open block of the same seed continues that block's count (an RQ
        # job function calling another one in the same job): fresh counting would repeat its ids.
        same = parent
        while same is not None and same.seed != seed:
            same = same.parent
        self.counter: itertools.count[int] = itertools.count() if same is None else same.counter  # next() is atomic
        self.forks: itertools.count[int] = itertools.count() if same is None else same.forks

    def after_fork(self, forks: dict[int, int]) -> None:
        # In a forked child: this block and every block around it go on under a seed of their
        # own (the number of this fork of each block, drawn in the parent), so parent and child
        # never mint one id for two events, and a re-run that forks in the same order repeats
        # the child's ids.  Blocks that shared a count (the same seed, nested) still share one.
        renewed: dict[int, tuple[itertools.count[int], itertools.count[int]]] = {}
        scope: _Scope | None = self
        while scope is not None:
            key = id(scope.forks)
            if key not in renewed:
                renewed[key] = (itertools.count(), itertools.count())
            scope.seed = f"{scope.seed}:fork{forks[key]}"
            scope.counter, scope.forks = renewed[key]
            scope = scope.parent


_scope: ContextVar[_Scope | None] = ContextVar("simple_segment_stable_ids", default=None)
_forking: list[tuple[_Scope, dict[int, int]]] = []
"""The forking thread's open block and the fork's number in each block around it, from before the fork to after it."""


def _before_fork() -> None:
    scope = _scope.get()
    if scope is None:
        return
    forks: dict[int, int] = {}
    node: _Scope | None = scope
    while node is not None:  # one number per count: blocks sharing a seed share their forks too
        key = id(node.forks)
        if key not in forks:
            forks[key] = next(node.forks)
        node = node.parent
    _forking.append((scope, forks))


def _after_fork_in_parent() -> None:
    _forking.clear()


def _after_fork_in_child() -> None:
    _random.seed()  # a forked child must not repeat its parent's random ids
    if _forking:
        scope, forks = _forking.pop()
        scope.after_fork(forks)
    _forking.clear()


_random = random.Random()  # noqa: S311 - ids must be unique, not secret; seeded from os.urandom; private, so random.seed(42) elsewhere cannot repeat our ids
if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent, after_in_child=_after_fork_in_child)
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
    asyncio task, and tasks created inside the block share its count; threads started
    inside it do not inherit it (their ids are random) unless run in a copy of the
    context (``contextvars.copy_context().run(...)``).  A block inside another with a
    different seed starts its own count, and the outer one resumes after it; a block
    inside another with the same seed continues the outer block's count, so the two
    never give one id to two events (an RQ job function calling another one).  A
    process forked inside a block goes on under a seed of its own
    (``f"{seed}:fork{k}"`` for the block's k-th fork), as do its enclosing blocks: the
    parent and its children never share an id, and a re-run that forks in the same
    order repeats them.

    Raises :class:`~simple_segment.ValidationError` for a seed that is not a non-empty
    str, an int or a UUID.

    Since: 0.2.0
    """
    if isinstance(seed, bool) or not isinstance(seed, (str, int, uuid.UUID)) or seed == "":
        raise ValidationError("stable_ids(seed)", f"must be a non-empty str, an int or a UUID, not {_shown(seed)}")
    token = _scope.set(_Scope(str(seed), _scope.get()))
    try:
        yield
    finally:
        _scope.reset(token)


def _shown(value: object) -> str:
    try:
        text = repr(value)
    except Exception:  # noqa: BLE001 - a hostile __repr__ must not replace the error
        text = f"a {type(value).__name__}"
    return text if len(text) <= 80 else f"{text[:77]}..."  # noqa: PLR2004
