"""RQ jobs for the real-worker tests: the calls have a one-second budget and no in-call retry.

``examples/rq_jobs.py`` is what the tests run for the basic case; these jobs are for the
cases where the server holds a reply back, so that RQ's ``Retry`` runs them again soon.
"""

from __future__ import annotations

import os

import simple_segment

client = simple_segment.Client(
    os.environ["SEGMENT_WRITE_KEY"], host=os.environ["SEGMENT_HOST"], timeout=1, max_retries=0, total_timeout=2
)


def track_quick(user_id: str) -> None:
    """Two messages, in the same order on every run; a retryable failure raises (RQ's Retry runs it again)."""
    client.identify(user_id, {"quick": True})
    client.track(user_id, "Signed Up")
