"""Celery: run every task inside ``stable_ids(<task id>)``.

Call :func:`install` once where the Celery app is defined (so the worker's parent
process runs it before it forks its pool)::

    from celery import Celery
    import simple_segment
    from simple_segment.integrations.celery import install

    app = Celery("tasks", broker="redis://localhost:6379/0")
    install()

    @app.task(autoretry_for=(simple_segment.RetryableError,), retry_backoff=True, max_retries=8)
    def track_signup(user_id: str) -> None:
        simple_segment.track(user_id, "Signed Up")

Celery keeps a task's id when it retries the task (``autoretry_for``, ``self.retry()``),
so the n-th message the task builds without an explicit ``message_id`` gets the same
id on every run: when Segment stored an event but the reply was lost, the retried task
sends it again under the same ``messageId`` and Segment de-duplicates it.  The
condition: a retried task makes its calls in the same order.  Tasks that send nothing
are not affected.

The scope opens in ``task_prerun`` and closes in ``task_postrun``, which Celery sends
in a ``finally`` block after success, failure, retry and rejection alike.  The signals
fire in the process (and thread) that runs the task: the prefork pool's children, the
threads pool's threads, and the caller of ``task.apply()``.

Importing this module needs Celery (``pip install celery``): without it the import
raises :class:`ImportError`.  Importing :mod:`simple_segment` never imports Celery.

Since: 0.2.0
"""

from __future__ import annotations

import threading
from contextlib import ExitStack

from celery import signals

from simple_segment import stable_ids

__all__ = ["install", "uninstall"]

_UID = "simple_segment.integrations.celery"
_open: dict[tuple[str, int], ExitStack] = {}
"""The open scope of each running task, by task id and thread (a redelivered task may run twice at once)."""


def _enter(task_id: str | None = None, **_: object) -> None:
    """``task_prerun``: open ``stable_ids(task_id)`` for the task about to run."""
    if not task_id:
        return
    scope = ExitStack()
    scope.enter_context(stable_ids(task_id))
    _open[task_id, threading.get_ident()] = scope


def _leave(task_id: str | None = None, **_: object) -> None:
    """``task_postrun``: close the task's scope, whatever the task's outcome."""
    scope = _open.pop((task_id, threading.get_ident()), None) if task_id else None
    if scope is not None:
        scope.close()


def install() -> None:
    """Make every Celery task in this process run inside ``stable_ids(<task id>)``.

    Connects receivers to Celery's ``task_prerun`` and ``task_postrun`` signals.
    Idempotent: calling it again changes nothing.  Call it at import time of the
    module that defines the Celery app (or in a ``worker_process_init`` handler):
    the prefork pool's children inherit it.

    Since: 0.2.0
    """
    signals.task_prerun.connect(_enter, weak=False, dispatch_uid=_UID)
    signals.task_postrun.connect(_leave, weak=False, dispatch_uid=_UID)


def uninstall() -> None:
    """Undo :func:`install` (for tests); call it when no task is running.  Idempotent.

    Since: 0.2.0
    """
    signals.task_prerun.disconnect(_enter, dispatch_uid=_UID)
    signals.task_postrun.disconnect(_leave, dispatch_uid=_UID)
