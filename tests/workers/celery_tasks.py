"""The Celery app the real-worker tests run (``celery -A celery_tasks worker``).

It is ``examples/celery_app.py`` (imported: its ``install()`` is in effect, its
``track_signup`` task is registered) plus one task whose calls have a one-second
budget and no in-call retry, so that a reply held back by the server makes the task
retry quickly.
"""

from __future__ import annotations

import os

from celery_app import app

import simple_segment

client = simple_segment.Client(
    os.environ["SEGMENT_WRITE_KEY"], host=os.environ["SEGMENT_HOST"], timeout=1, max_retries=0, total_timeout=2
)


@app.task(autoretry_for=(simple_segment.RetryableError,), default_retry_delay=0.3, max_retries=10)
def track_quick(user_id: str) -> None:
    """Two messages, in the same order on every run."""
    client.identify(user_id, {"quick": True})
    client.track(user_id, "Signed Up")
