"""RQ jobs that send to Segment, each event stored once across job retries.

Try it with a local Redis and a local Segment-compatible server (from this directory)::

    simple-segment serve --port 8787 &
    export SEGMENT_WRITE_KEY=demo-key SEGMENT_HOST=http://127.0.0.1:8787
    rq worker --with-scheduler --job-class simple_segment.integrations.rq.StableIdsJob &
    python -c "import rq_jobs, redis, rq; rq_jobs.enqueue_signup(rq.Queue(connection=redis.Redis()), 'user-1', 'pro')"

- Each call is delivered before it returns, with a short budget of its own; a failure
  worth retrying raises a ``RetryableError`` and RQ's ``Retry`` runs the job again.
- The worker's job class, ``StableIdsJob``, runs every job inside ``stable_ids(<job
  id>)``: RQ keeps the job id across retries, so the retried job rebuilds its messages
  with the same ``messageId`` s and Segment stores an event once even if the first
  run's reply was lost.  The condition: the job makes its calls in the same order.
- RQ's ``Retry`` retries every exception, so a permanent error (a 400: the request
  itself is wrong) is caught here and logged with the messages that were lost,
  instead of being retried.  Dead-letter them there if you need them.
"""

from __future__ import annotations

import logging
import os

from rq import Queue, Retry
from rq.job import Job

import simple_segment

simple_segment.write_key = os.environ["SEGMENT_WRITE_KEY"]
simple_segment.host = os.environ.get("SEGMENT_HOST")  # None: https://api.segment.io
simple_segment.timeout = 5  # seconds per attempt
simple_segment.max_retries = 1  # one quick retry inside the call ...
simple_segment.total_timeout = 10  # ... within 10 s; after that RQ retries the job

RETRY = Retry(max=8, interval=[2, 4, 8, 16, 32, 64, 128, 256])  # needs `rq worker --with-scheduler`

log = logging.getLogger(__name__)


def track_signup(user_id: str, plan: str) -> None:
    """Identify the user and track the signup: two messages, in the same order on every run."""
    try:
        simple_segment.identify(user_id, {"plan": plan})
        simple_segment.track(user_id, "Signed Up", {"plan": plan})
    except simple_segment.DeliveryError as exc:
        if exc.retryable:
            raise  # RQ's Retry runs the job again, under the same job id
        log.exception("Segment refused %d message(s), not retried: %s", len(exc.messages), exc.messages)


def enqueue_signup(queue: Queue, user_id: str, plan: str) -> Job:
    """Enqueue :func:`track_signup` with the retry policy above."""
    return queue.enqueue(track_signup, user_id, plan, retry=RETRY)
