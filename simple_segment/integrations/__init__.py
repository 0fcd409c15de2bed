"""Integrations with task queues: each wires a framework's own hooks to :func:`simple_segment.stable_ids`.

Import the one you use; importing :mod:`simple_segment` imports none of them, and
none of the frameworks is a dependency of this package:

- :mod:`simple_segment.integrations.celery`: ``install()`` connects Celery's task
  signals, so every task runs inside ``stable_ids(<task id>)``.
- :mod:`simple_segment.integrations.rq`: ``StableIdsJob`` (``rq worker --job-class
  simple_segment.integrations.rq.StableIdsJob``) or the ``@stable_ids_job``
  decorator, so every job runs inside ``stable_ids(<job id>)``.

Both queues keep a task's (job's) id across its retries, so a retried task that makes
its calls in the same order sends the same ``messageId`` s, and Segment stores each
event once even when a reply was lost and the whole task ran again.

Since: 0.2.0
"""
