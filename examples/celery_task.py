"""Sending from a Celery task: the task queue owns asynchrony and retries.

``RetryableError`` covers exactly the failures that may succeed later (no answer,
rate limited, 5xx); a permanent failure (say, a 400) is not retried.  Messages keep
their messageId across task retries when you pass it, so Segment de-duplicates them.
"""

from __future__ import annotations

import os
import uuid

import simple_segment

simple_segment.write_key = os.environ.get("SEGMENT_WRITE_KEY", "demo-key")
simple_segment.total_timeout = 10  # a task should not wait long; Celery will retry


def track_signup(user_id: str, plan: str, message_id: str | None = None) -> None:
    """Body of a task declared with ``autoretry_for=(simple_segment.RetryableError,)``."""
    simple_segment.track(user_id, "Signed Up", {"plan": plan}, message_id=message_id or str(uuid.uuid4()))
