"""Integrations with task queues, web frameworks and data engines; each imports its framework itself.

Import the one you use; importing :mod:`simple_segment` imports none of them, and
none of the frameworks is a dependency of this package:

- :mod:`simple_segment.integrations.celery`: ``install()`` connects Celery's task
  signals, so every task runs inside ``stable_ids(<task id>)``.
- :mod:`simple_segment.integrations.rq`: ``StableIdsJob`` (``rq worker --job-class
  simple_segment.integrations.rq.StableIdsJob``) or the ``@stable_ids_job``
  decorator, so every job runs inside ``stable_ids(<job id>)``.
- :mod:`simple_segment.integrations.wsgi` and :mod:`simple_segment.integrations.asgi`:
  ``SegmentMiddleware``, which runs each request in a :func:`simple_segment.scope`
  with the request's context and, by default, delivers its messages after the
  response; :mod:`simple_segment.integrations.django` (``SegmentMiddleware`` for
  ``MIDDLEWARE``) and :mod:`simple_segment.integrations.flask` (``init_app(app)``)
  are thin entry points over them.
- :mod:`simple_segment.integrations.dask`: ``send(collection, ...)`` delivers a Bag or
  DataFrame of wire-format messages, each partition exactly once under retries.

Task queues keep a task's (job's) id across its retries, so a retried task that makes
its calls in the same order sends the same ``messageId`` s, and Segment stores each
event once even when a reply was lost and the whole task ran again.

Since: 0.2.0
"""
