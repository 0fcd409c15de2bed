"""A Celery app that sends to Segment from its tasks, each event stored once across task retries.

Try it with a local Redis and a local Segment-compatible server (from this directory)::

    simple-segment serve --port 8787 &
    export CELERY_BROKER_URL=redis://127.0.0.1:6379/0
    export SEGMENT_WRITE_KEY=demo-key SEGMENT_HOST=http://127.0.0.1:8787
    celery -A celery_app worker --concurrency 2 &
    python -c "import celery_app; celery_app.track_signup.delay('user-1', 'pro')"

- Each call is delivered before it returns, with a short budget of its own
  (``timeout``, ``max_retries``, ``total_timeout``); a failure worth retrying raises a
  ``RetryableError``, and Celery retries the whole task later, with backoff.
- ``install()`` runs every task inside ``stable_ids(<task id>)``: Celery keeps the task
  id across retries, so the retried task rebuilds its messages with the same
  ``messageId`` s, and Segment stores an event once even if the first run's reply was
  lost.  The condition: the task makes its calls in the same order every time.
- A permanent error (a 400: the request itself is wrong) is not retried: the task fails
  once, and its error carries the messages that were not delivered.
"""

from __future__ import annotations

import logging
import os

from celery import Celery

import simple_segment
from simple_segment.integrations.celery import install

app = Celery("celery_app", broker=os.environ["CELERY_BROKER_URL"], backend=os.environ.get("CELERY_RESULT_BACKEND"))
install()

simple_segment.write_key = os.environ["SEGMENT_WRITE_KEY"]
simple_segment.host = os.environ.get("SEGMENT_HOST")  # None: https://api.segment.io
simple_segment.timeout = 5  # seconds per attempt
simple_segment.max_retries = 1  # one quick retry inside the call ...
simple_segment.total_timeout = 10  # ... within 10 s; after that the queue retries the task

log = logging.getLogger(__name__)


@app.task(
    autoretry_for=(simple_segment.RetryableError,),
    retry_backoff=2,  # 2 s, 4 s, 8 s, ... (with jitter), at most retry_backoff_max
    retry_backoff_max=300,
    max_retries=8,
)
def track_signup(user_id: str, plan: str) -> None:
    """Identify the user and track the signup: two messages, in the same order on every run."""
    try:
        simple_segment.identify(user_id, {"plan": plan})
        simple_segment.track(user_id, "Signed Up", {"plan": plan})
    except simple_segment.DeliveryError as exc:
        if not exc.retryable:  # retrying cannot help: keep what was lost (log it, or dead-letter it)
            log.exception("Segment refused %d message(s), not retried: %s", len(exc.messages), exc.messages)
        raise
