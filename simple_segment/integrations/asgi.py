"""ASGI: every HTTP request in a scope with its context, its messages delivered off the event loop.

A pure ASGI 3 middleware.  In Starlette or FastAPI::

    from simple_segment.integrations.asgi import SegmentMiddleware

    app.add_middleware(SegmentMiddleware)

or around any ASGI application: ``application = SegmentMiddleware(application)``.

Each HTTP request runs inside :func:`simple_segment.scope` whose ``context`` is the
request's ``ip`` (the ASGI ``client``), ``userAgent``, ``locale`` and ``page`` (as
:func:`simple_segment.integrations.wsgi.environ_context` describes).  Other scopes
(``websocket``, ``lifespan``) pass through untouched.

With ``defer=True`` (the default) the calls a handler makes — ``async def`` handlers
included — only validate and encode their messages: no network I/O happens on the
event loop.  Once the app has returned (after it sent the final
``http.response.body``, and after Starlette's background tasks), the messages are
delivered in the loop's default executor (``loop.run_in_executor(None, ...)``, as
Starlette runs sync background tasks), and the middleware awaits that future: the
loop serves other requests meanwhile, the response is already with the client, and
the request stays open in the server's books until its messages are delivered, so a
graceful shutdown waits for them.  When the app raises (or the request is cancelled)
the delivery is started in the executor without waiting for it, so the error
response is not held up.  Failures go to ``on_error`` or the ERROR log, as for WSGI.

Needs an asyncio event loop (uvicorn, hypercorn's asyncio workers, daphne); under
another loop the delivery runs inline at the end of the request.  Importing this
module imports no web framework.

Since: 0.2.0
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import quote

import simple_segment

from .wsgi import deliver_pending, first_value, page_context, request_fields

__all__ = ["SegmentMiddleware", "scope_context"]

ASGIScope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[ASGIScope, Receive, Send], Awaitable[None]]

_PATH_SAFE = "/:@!$&'()*+,;="
_DEFAULT_PORTS = {"http": 80, "https": 443}
_unawaited: set[asyncio.Future[None]] = set()
"""Deliveries started without waiting (after an error): kept referenced until done."""


def _headers(scope: ASGIScope) -> dict[str, str]:
    headers: dict[str, str] = {}
    for name, value in scope.get("headers") or ():
        key = bytes(name).decode("latin-1").lower()
        if key not in headers:  # the first of repeated headers, as a WSGI server keeps one
            headers[key] = bytes(value).decode("latin-1")
    return headers


def scope_context(scope: ASGIScope, *, trust_forwarded: bool = False) -> dict[str, Any]:
    """Return the Segment ``context`` of an ASGI HTTP request (its connection ``scope``).

    As :func:`~simple_segment.integrations.wsgi.environ_context`, from ASGI's fields:
    ``ip`` is ``scope["client"][0]``; the scheme is ``scope["scheme"]``; the host the
    ``Host`` header (else ``scope["server"]``, its port left out when it is the
    scheme's default); the path ``raw_path`` as received (else ``root_path`` + ``path``
    percent-encoded) and the query ``query_string``.

    Since: 0.2.0
    """
    headers = _headers(scope)
    scheme = str(scope.get("scheme") or "http")
    host = headers.get("host", "")
    client = scope.get("client")
    ip = str(client[0]) if client else None
    if trust_forwarded:
        scheme = (first_value(headers.get("x-forwarded-proto")) or scheme).lower()
        host = first_value(headers.get("x-forwarded-host")) or host
        ip = first_value(headers.get("x-forwarded-for")) or ip
    if not host and scope.get("server"):
        server_host, port = scope["server"][0], scope["server"][1]
        host = str(server_host) if port is None or port == _DEFAULT_PORTS.get(scheme) else f"{server_host}:{port}"
    root = str(scope.get("root_path") or "")
    raw_path = scope.get("raw_path")
    if raw_path:
        path = bytes(raw_path).decode("latin-1")
        if root and not path.startswith(root):
            path = quote(root, safe=_PATH_SAFE) + path
    else:
        path = str(scope.get("path") or "")
        if root and not path.startswith(root):
            path = root + path
        path = quote(path, safe=_PATH_SAFE)
    page = page_context(
        scheme=scheme,
        host=host,
        path=path,
        query=bytes(scope.get("query_string") or b"").decode("latin-1"),
        referrer=headers.get("referer"),
    )
    return request_fields(
        ip=ip, user_agent=headers.get("user-agent"), accept_language=headers.get("accept-language"), page=page
    )


class SegmentMiddleware:
    """Run each HTTP request of an ASGI ``app`` in a scope with its context; deliver off the loop after it.

    ``defer=True`` (the default): messages are held until the app has returned, then
    delivered in the loop's default executor (awaited: see the module's docstring).
    ``defer=False``: each call sends inline, as outside the middleware (blocking the
    loop in an ``async def`` handler), with the request's context merged in.
    ``trust_forwarded=True`` takes ``ip``, the scheme and the host from
    ``X-Forwarded-For``/``-Proto``/``-Host``: set it only behind a proxy that sets them.

    Since: 0.2.0
    """

    def __init__(self, app: ASGIApp, *, defer: bool = True, trust_forwarded: bool = False) -> None:
        self.app = app
        self.defer = defer
        self.trust_forwarded = trust_forwarded

    async def __call__(self, scope: ASGIScope, receive: Receive, send: Send) -> None:
        """Serve one ASGI connection: HTTP requests in a scope, anything else passed through."""
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        request_scope = simple_segment.scope(
            context=scope_context(scope, trust_forwarded=self.trust_forwarded), defer=self.defer
        )
        # The request's task runs in a context of its own (asyncio copies one per task),
        # so the scope is set and reset there and never seen by another request.
        request_scope.__enter__()
        try:
            await self.app(scope, receive, send)
        except BaseException:
            _start_delivery(request_scope.detach())
            raise
        pending = request_scope.detach()
        if pending:
            await _deliver_off_loop(pending)


def _loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:  # another event loop (trio): there is no asyncio executor to use
        return None


async def _deliver_off_loop(pending: simple_segment.Pending) -> None:
    """Deliver in the default executor and wait; a cancelled wait leaves the delivery running."""
    loop = _loop()
    if loop is None:
        deliver_pending(pending)
        return
    future = loop.run_in_executor(None, deliver_pending, pending)
    # shield: cancelling this request must not cancel a delivery still queued for a thread.
    await asyncio.shield(future)


def _start_delivery(pending: simple_segment.Pending) -> None:
    """Start delivering in the default executor without waiting (the request failed or was cancelled)."""
    if not pending:
        return
    loop = _loop()
    if loop is None:
        deliver_pending(pending)
        return
    future = loop.run_in_executor(None, deliver_pending, pending)
    _unawaited.add(future)
    future.add_done_callback(_unawaited.discard)
