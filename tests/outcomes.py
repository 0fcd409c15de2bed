"""Helpers for tests that make one call against a misbehaving server and judge its outcome.

Used with :mod:`faults` by the retry, deadline, error, TLS and logging tests; only the
public API is used: ``Client``, ``track``, ``client.batch()`` and the exception classes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from simple_segment import Client, DeliveryError, RetryableError


def send_one(client: Client, message_id: str = "mid-1") -> tuple[bool, dict[str, Any]]:
    """One track call with a known messageId."""
    return client.track("u", "E", {"n": 1}, message_id=message_id)


def assert_retryability(exc: DeliveryError, *, retryable: bool) -> None:
    """``.retryable`` agrees with the RetryableError marker, and both say ``retryable``."""
    assert exc.retryable is isinstance(exc, RetryableError), (type(exc).__mro__, exc.retryable)
    assert isinstance(exc, RetryableError) is retryable, f"{type(exc).__name__}: {exc}"


def outcome(call: Callable[[], Any]) -> tuple[Any, Exception | None]:
    """``(result, None)`` when ``call()`` returns, ``(None, exc)`` when it raises."""
    try:
        return call(), None
    except Exception as exc:
        return None, exc


def describe(exc: BaseException) -> str:
    """The error's type and the start of its text, for assertion messages."""
    return f"{type(exc).__module__}.{type(exc).__qualname__}: {str(exc)[:300]}"


def failing_call(client: Client) -> DeliveryError:
    """The DeliveryError that ``send_one(client)`` raises (the test fails if it raises none)."""
    with pytest.raises(DeliveryError) as info:
        send_one(client)
    return info.value


def catch_single(client: Client) -> DeliveryError:
    """The DeliveryError of one ``send_one`` call."""
    # Catches in its own frame, whose locals hold no secret.
    try:
        send_one(client)
    except DeliveryError as exc:
        return exc
    pytest.fail("expected a DeliveryError")


def catch_batch(client: Client) -> DeliveryError:
    """The BatchDeliveryError of a ``client.batch()`` block with one message."""
    try:
        with client.batch() as batch:
            batch.track("u", "E")
    except DeliveryError as exc:
        return exc
    pytest.fail("expected a BatchDeliveryError")
