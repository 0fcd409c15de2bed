"""The Celery and RQ integrations in-process (no broker): which ids a task's messages get.

The real workers (prefork, fork per job, retries over a broker) are in test_workers.py.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import pytest
from celery import Celery, signals
from celery.exceptions import Retry
from redis import Redis

import simple_segment
from simple_segment._ids import STABLE_IDS_NAMESPACE
from simple_segment.integrations import celery as celery_integration
from simple_segment.integrations.rq import StableIdsJob, stable_ids_job
from simple_segment.testing import capture


def stable_id(seed: str, n: int) -> str:
    return str(uuid.uuid5(STABLE_IDS_NAMESPACE, f"{seed}:{n}"))


def is_random(message_id: str) -> bool:
    return uuid.UUID(message_id).version == 4


@pytest.fixture
def app() -> Iterator[Celery]:
    simple_segment.write_key = "test-key"
    celery = Celery("test-integrations", set_as_current=False)
    yield celery
    celery.close()


@pytest.fixture
def installed() -> Iterator[None]:
    celery_integration.install()
    yield
    celery_integration.uninstall()


def _receivers(signal: object) -> int:
    return len(getattr(signal, "receivers", None) or [])


def test_install_is_idempotent_and_uninstall_undoes_it() -> None:
    """install() twice connects one receiver per signal; uninstall() removes them, twice is harmless."""
    before = (_receivers(signals.task_prerun), _receivers(signals.task_postrun))
    celery_integration.install()
    celery_integration.install()
    assert (_receivers(signals.task_prerun), _receivers(signals.task_postrun)) == (before[0] + 1, before[1] + 1)
    celery_integration.uninstall()
    celery_integration.uninstall()
    assert (_receivers(signals.task_prerun), _receivers(signals.task_postrun)) == before


@pytest.mark.usefixtures("installed")
def test_a_task_run_again_under_its_id_sends_the_same_message_ids(app: Celery) -> None:
    """The n-th message of task id T is uuid5(T:n) on every run; outside tasks ids stay random."""

    @app.task
    def signup(user_id: str) -> None:
        simple_segment.identify(user_id, {"plan": "pro"})
        simple_segment.track(user_id, "Signed Up")

    with capture() as sent:
        signup.apply(args=["u1"], task_id="task-1")
        signup.apply(args=["u1"], task_id="task-1")  # what a retry does: same task id
        signup.apply(args=["u2"], task_id="task-2")
        simple_segment.track("u3", "Outside")
    ids = [m["messageId"] for m in sent]
    first = [stable_id("task-1", 0), stable_id("task-1", 1)]
    assert ids[:4] == first + first
    assert ids[4:6] == [stable_id("task-2", 0), stable_id("task-2", 1)]
    assert is_random(ids[6])


@pytest.mark.usefixtures("installed")
def test_a_failed_or_retried_task_leaves_its_scope(app: Celery) -> None:
    """After a task that raised or asked to retry, messages built outside tasks get random ids again."""

    @app.task
    def failing(how: str) -> None:
        simple_segment.track("u1", "Tried")
        if how == "retry":
            raise Retry  # what task.retry() and autoretry_for raise in a worker
        raise simple_segment.ServerError(503, "unavailable", "down")

    with capture() as sent:
        assert failing.apply(args=["raise"], task_id="t-raise").state == "FAILURE"
        assert failing.apply(args=["retry"], task_id="t-retry").state == "RETRY"
        simple_segment.track("u1", "After")
    ids = [m["messageId"] for m in sent]
    assert ids[0] == stable_id("t-raise", 0)
    assert ids[1] == stable_id("t-retry", 0)
    assert is_random(ids[-1])


def test_without_install_a_task_gets_random_ids(app: Celery) -> None:
    """Nothing changes for tasks until install() is called."""

    @app.task
    def signup() -> None:
        simple_segment.track("u1", "Signed Up")

    with capture() as sent:
        signup.apply(task_id="task-1")
    assert is_random(sent[0]["messageId"])


def _signup(user_id: str) -> None:
    simple_segment.identify(user_id)
    simple_segment.track(user_id, "Signed Up")


@stable_ids_job
def _decorated_signup(user_id: str) -> str:
    _signup(user_id)
    return "done"


@stable_ids_job
async def _decorated_async_signup(user_id: str) -> str:
    await asyncio.sleep(0)
    _signup(user_id)
    return "done"


@pytest.fixture
def redis() -> Iterator[Redis]:
    connection = Redis(host="127.0.0.1", port=1)  # never connected: creating and performing a job needs no server
    yield connection
    connection.close()


def test_stable_ids_job_performs_inside_the_job_id(redis: Redis) -> None:
    """StableIdsJob.perform() gives the job's messages uuid5(job id:n), on every run."""
    job = StableIdsJob.create(_signup, args=["u1"], connection=redis, id="job-1")
    simple_segment.write_key = "test-key"
    with capture() as sent:
        job.perform()
        job.perform()
        simple_segment.track("u1", "Outside")
    ids = [m["messageId"] for m in sent]
    assert ids[:4] == [stable_id("job-1", 0), stable_id("job-1", 1)] * 2
    assert is_random(ids[4])


@pytest.mark.parametrize("function", [_decorated_signup, _decorated_async_signup])
def test_stable_ids_job_decorator(redis: Redis, function: object) -> None:
    """@stable_ids_job gives the same ids under RQ's default Job class, also for async functions."""
    from rq.job import Job

    job = Job.create(function, args=["u1"], connection=redis, id="job-2")
    simple_segment.write_key = "test-key"
    with capture() as sent:
        assert job.perform() == "done"
    assert [m["messageId"] for m in sent] == [stable_id("job-2", 0), stable_id("job-2", 1)]


def test_stable_ids_job_decorator_outside_a_job_changes_nothing() -> None:
    """Called directly (not by a worker), a decorated function runs with random ids."""
    simple_segment.write_key = "test-key"
    with capture() as sent:
        assert _decorated_signup("u1") == "done"
    assert all(is_random(m["messageId"]) for m in sent)
