"""Django: every request in a scope with its context, its messages delivered after the response.

Add the middleware near the top of ``MIDDLEWARE`` (above anything whose calls should
carry the request's context)::

    MIDDLEWARE = [
        "simple_segment.integrations.django.SegmentMiddleware",
        "django.middleware.security.SecurityMiddleware",
        ...
    ]

Each request runs inside :func:`simple_segment.scope` with the request's ``ip``,
``userAgent``, ``locale`` and ``page`` as ``context`` (see
:func:`simple_segment.integrations.wsgi.environ_context`; the scheme is
``request.scheme``, so ``SECURE_PROXY_SSL_HEADER`` counts).  With deferral on (the
default) the views' calls return at once and the messages are delivered when the
response is closed: under WSGI the server calls ``response.close()`` after it sent
the last byte, and the delivery runs there; under ASGI Django closes the response
after sending it and the delivery is started in the event loop's default executor,
so no thread that serves requests waits for Segment.  Failures go to ``on_error`` or
the ERROR log, as for the WSGI middleware.

The scope ends when the view's response is returned: calls made while a
``StreamingHttpResponse`` body is iterated are not in it (they send inline).  For
those, wrap the whole application instead —
``application = SegmentMiddleware(get_wsgi_application())`` with
:mod:`simple_segment.integrations.wsgi`, or the ASGI one.

Settings are class attributes: subclass to change them
(``class Segment(SegmentMiddleware): trust_forwarded = True``) and list the subclass.

This module does not import Django.

Since: 0.2.0
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
from collections.abc import Awaitable, Callable
from typing import Any

import simple_segment

from .wsgi import deliver_pending, environ_context

__all__ = ["SegmentMiddleware"]


class SegmentMiddleware:
    """Django middleware: the request's context on every message, delivery after the response.

    Works in sync and async stacks (``sync_capable`` and ``async_capable``).

    Since: 0.2.0
    """

    sync_capable = True
    async_capable = True
    defer: bool = True
    """Hold the request's messages until its response is closed (False: send inline, with the context)."""
    trust_forwarded: bool = False
    """Take ``ip`` and the host from ``X-Forwarded-For``/``-Host`` (only behind a proxy that sets them)."""

    def __init__(self, get_response: Callable[[Any], Any]) -> None:
        self.get_response = get_response
        self._async = inspect.iscoroutinefunction(get_response) or _marked_coroutine(get_response)
        if self._async:
            # Django asks asgiref whether a middleware instance is async; asgiref comes with Django.
            importlib.import_module("asgiref.sync").markcoroutinefunction(self)

    def __call__(self, request: Any) -> Any:  # noqa: ANN401 - Django's HttpRequest/HttpResponse, not imported
        """Run the rest of the stack in the request's scope; deliver when the response is closed."""
        if self._async:
            return self._acall(request)
        request_scope = self._scope(request)
        request_scope.__enter__()
        try:
            response = self.get_response(request)
        except BaseException:
            deliver_pending(request_scope.detach())
            raise
        pending = request_scope.detach()
        if pending:
            _on_close(response, lambda: deliver_pending(pending))
        return response

    async def _acall(self, request: Any) -> Any:  # noqa: ANN401 - as __call__
        request_scope = self._scope(request)
        request_scope.__enter__()
        try:
            response = await self.get_response(request)
        except BaseException:
            _deliver_off_loop(request_scope.detach())
            raise
        pending = request_scope.detach()
        if pending:
            loop = asyncio.get_running_loop()

            def start() -> None:
                # Django calls close() in a worker thread (sync_to_async): hand the
                # delivery to the loop, which starts it in its default executor.
                try:
                    loop.call_soon_threadsafe(_deliver_off_loop, pending)
                except RuntimeError:  # the loop is closed: deliver here rather than lose them
                    deliver_pending(pending)

            _on_close(response, start)
        return response

    def _scope(self, request: Any) -> simple_segment.Scope:  # noqa: ANN401 - Django's HttpRequest
        meta = {**request.META, "wsgi.url_scheme": request.scheme}
        context = environ_context(meta, trust_forwarded=self.trust_forwarded)
        return simple_segment.scope(context=context, defer=self.defer)


def _marked_coroutine(function: Callable[..., Any]) -> bool:
    sync = importlib.import_module("asgiref.sync")
    return bool(sync.iscoroutinefunction(function))


def _on_close(response: Any, deliver: Callable[[], None]) -> None:  # noqa: ANN401 - Django's HttpResponse
    """Make ``response.close()`` (called by the server after sending it) run ``deliver`` after Django's own."""
    close = response.close

    def close_then_deliver() -> None:
        try:
            close()
        finally:
            deliver()

    response.close = close_then_deliver


def _deliver_off_loop(pending: simple_segment.Pending) -> Awaitable[None] | None:
    """Start delivering ``pending`` in the running loop's default executor; inline without a loop."""
    if not pending:
        return None
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        deliver_pending(pending)
        return None
    return loop.run_in_executor(None, deliver_pending, pending)
