"""RQ: run every job inside ``stable_ids(<job id>)``.

Start the worker with the job class (every job the worker runs gets stable ids)::

    rq worker --job-class simple_segment.integrations.rq.StableIdsJob

or ``Worker(queues, job_class=StableIdsJob)`` in Python.  Where you cannot choose
the worker's job class, decorate the job functions instead::

    from simple_segment.integrations.rq import stable_ids_job

    @stable_ids_job
    def track_signup(user_id: str) -> None:
        simple_segment.track(user_id, "Signed Up")

    queue.enqueue(track_signup, "user-1", retry=Retry(max=5, interval=[1, 5, 30]))

RQ keeps a job's id when it retries the job (``Retry``), so the n-th message the job
builds without an explicit ``message_id`` gets the same id on every run: when Segment
stored an event but the reply was lost, the retried job sends it again under the same
``messageId`` and Segment de-duplicates it.  The condition: a retried job makes its
calls in the same order.  Jobs that send nothing are not affected.  The scope holds in
the work horse (the forked child) where the job runs; ``async def`` jobs too.

Importing this module needs RQ (``pip install rq``): without it the import raises
:class:`ImportError`.  Importing :mod:`simple_segment` never imports RQ.

Since: 0.2.0
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar, cast

from rq import get_current_job
from rq.job import Job

from simple_segment import stable_ids

__all__ = ["StableIdsJob", "stable_ids_job"]

P = ParamSpec("P")
R = TypeVar("R")


class StableIdsJob(Job):
    """An RQ ``Job`` that performs inside ``stable_ids(self.id)``.

    Use it as the worker's job class: ``rq worker --job-class
    simple_segment.integrations.rq.StableIdsJob``.  Enqueueing needs nothing special.

    Since: 0.2.0
    """

    def perform(self) -> Any:  # noqa: ANN401 - whatever the job function returns, as Job.perform
        """Run the job function with messageIds derived from the job id."""
        with stable_ids(self.id):
            return super().perform()


def stable_ids_job(func: Callable[P, R]) -> Callable[P, R]:
    """Decorate an RQ job function so that it runs inside ``stable_ids(<job id>)``.

    Called outside an RQ job (directly, in a test), the function runs unchanged, with
    random ids.  Works for ``async def`` functions too.

    Since: 0.2.0
    """
    if inspect.iscoroutinefunction(func):

        @functools.wraps(func)
        async def run_async(*args: P.args, **kwargs: P.kwargs) -> object:
            job = get_current_job()
            if job is None:
                return await func(*args, **kwargs)
            with stable_ids(job.id):
                return await func(*args, **kwargs)

        return cast("Callable[P, R]", run_async)

    @functools.wraps(func)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        job = get_current_job()
        if job is None:
            return func(*args, **kwargs)
        with stable_ids(job.id):
            return func(*args, **kwargs)

    return run
