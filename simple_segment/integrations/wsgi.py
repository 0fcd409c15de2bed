"""WSGI: every request in a scope with its context, its messages delivered after the response.

Wrap any WSGI application (Flask's ``app.wsgi_app``, Django's ``get_wsgi_application()``,
a bare callable)::

    from simple_segment.integrations.wsgi import SegmentMiddleware

    application = SegmentMiddleware(application)

Each request runs inside :func:`simple_segment.scope` whose ``context`` is the
request's ``ip``, ``userAgent``, ``locale`` and ``page`` (see :func:`environ_context`),
merged under every message the request builds.  With ``defer=True`` (the default) the
calls a handler makes validate and encode their messages and return ``(True, msg)`` at
once; the messages are delivered, one batch per client, when the server calls the
response iterable's ``close()`` — which PEP 3333 servers do after the last byte of the
response was written, streaming responses included.  The user has the whole page by
then; the worker is busy until Segment answers (that is the price of having no thread).

A handler that raises still delivers what it made before the error.  A failure of
that delivery goes to the client's ``on_error`` when it has one; otherwise it is logged
at ERROR on the ``simple_segment`` logger with the number of messages lost and their
messageIds: there is no caller left to raise to.

Importing this module imports no web framework.

Since: 0.2.0
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any
from urllib.parse import quote

import simple_segment
from simple_segment.errors import BatchDeliveryError

__all__ = ["SegmentMiddleware", "deliver_pending", "environ_context", "page_context"]

log = logging.getLogger("simple_segment")

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

_PATH_SAFE = "/:@!$&'()*+,;="
"""Characters a URL path may hold unescaped (RFC 3986 ``pchar`` less ``%``): only the rest is quoted again."""
_DEFAULT_PORTS = {"http": "80", "https": "443"}


def first_value(header: str | None) -> str | None:
    """Return the first comma-separated value of ``header``, stripped; None when there is none."""
    if header is None:
        return None
    first = header.split(",", 1)[0].strip()
    return first or None


def first_language(header: str | None) -> str | None:
    """Return the first language tag of an ``Accept-Language`` header (``"en-US"`` of ``"en-US,en;q=0.9"``)."""
    first = first_value(header)
    if first is None:
        return None
    tag = first.split(";", 1)[0].strip()
    return tag if tag and tag != "*" else None


def page_context(
    *, scheme: str, host: str, path: str, query: str, referrer: str | None
) -> dict[str, str]:
    """Return ``page`` = ``{url, path, search[, referrer]}`` from the parts of a request URL.

    ``path`` is already percent-encoded; ``query`` is the raw query string without ``?``.
    ``search`` is ``"?" + query``, or ``""`` when there is no query (the URL then has no
    trailing ``?``).  ``referrer`` is left out when None.

    Since: 0.2.0
    """
    search = f"?{query}" if query else ""
    page = {"url": f"{scheme}://{host}{path}{search}", "path": path, "search": search}
    if referrer is not None:
        page["referrer"] = referrer
    return page


def request_fields(
    *, ip: str | None, user_agent: str | None, accept_language: str | None, page: dict[str, str]
) -> dict[str, Any]:
    """Return the context of a request: ``ip``, ``userAgent``, ``locale``, ``page``; a missing one left out."""
    context: dict[str, Any] = {}
    if ip:
        context["ip"] = ip
    if user_agent is not None:
        context["userAgent"] = user_agent
    locale = first_language(accept_language)
    if locale is not None:
        context["locale"] = locale
    context["page"] = page
    return context


def _quote_path(text: str) -> str:
    # WSGI strings are bytes decoded as latin-1 (PEP 3333): encode them back to
    # quote the bytes as received, not a UTF-8 re-encoding of them.  A character
    # past latin-1 means a real text string (Django's ASGIRequest): UTF-8 then.
    try:
        raw = text.encode("latin-1")
    except UnicodeEncodeError:
        raw = text.encode("utf-8", "replace")
    return quote(raw, safe=_PATH_SAFE)


def environ_context(environ: Mapping[str, Any], *, trust_forwarded: bool = False) -> dict[str, Any]:
    """Return the Segment ``context`` of a WSGI request.

    - ``ip``: ``REMOTE_ADDR``; with ``trust_forwarded``, the first ``X-Forwarded-For``
      address when that header is there.
    - ``userAgent``: ``User-Agent``; ``locale``: the first ``Accept-Language`` tag.
    - ``page``: ``{url, path, search, referrer}``.  ``url`` is rebuilt as PEP 3333
      shows: ``wsgi.url_scheme``, the ``Host`` header (else ``SERVER_NAME`` and a
      ``SERVER_PORT`` other than the scheme's default), then ``SCRIPT_NAME`` +
      ``PATH_INFO`` percent-encoded, then ``?`` and ``QUERY_STRING`` when there is one.
      With ``trust_forwarded``, ``X-Forwarded-Proto`` and ``X-Forwarded-Host`` replace
      the scheme and the host.  ``referrer`` is the ``Referer`` header.

    A field whose header is missing is left out.  Trust the ``X-Forwarded-*`` headers
    only behind a proxy that sets them: a client can send any.

    Since: 0.2.0
    """
    scheme = str(environ.get("wsgi.url_scheme") or "http")
    host = environ.get("HTTP_HOST") or ""
    ip = environ.get("REMOTE_ADDR")
    if trust_forwarded:
        scheme = (first_value(environ.get("HTTP_X_FORWARDED_PROTO")) or scheme).lower()
        host = first_value(environ.get("HTTP_X_FORWARDED_HOST")) or host
        ip = first_value(environ.get("HTTP_X_FORWARDED_FOR")) or ip
    if not host:
        host = str(environ.get("SERVER_NAME") or "")
        port = str(environ.get("SERVER_PORT") or "")
        if port and port != _DEFAULT_PORTS.get(scheme):
            host = f"{host}:{port}"
    path = _quote_path(str(environ.get("SCRIPT_NAME") or "") + str(environ.get("PATH_INFO") or ""))
    page = page_context(
        scheme=scheme,
        host=host,
        path=path,
        query=str(environ.get("QUERY_STRING") or ""),
        referrer=environ.get("HTTP_REFERER"),
    )
    return request_fields(
        ip=ip,
        user_agent=environ.get("HTTP_USER_AGENT"),
        accept_language=environ.get("HTTP_ACCEPT_LANGUAGE"),
        page=page,
    )


def deliver_pending(pending: simple_segment.Pending) -> None:
    """Deliver what a request's scope held, after its response; never raises.

    A failed request goes to its client's ``on_error`` when it has one (as
    :meth:`simple_segment.Pending.deliver` does); any other failure is logged at ERROR
    on the ``simple_segment`` logger with the number of messages not delivered and
    their messageIds, since no caller is left to raise to.

    Since: 0.2.0
    """
    if not pending:
        return
    try:
        pending.deliver()
    except BatchDeliveryError as error:
        ids = [str(msg.get("messageId")) for msg in error.unsent]
        log.error(  # noqa: TRY400 - the failure is the whole message; a traceback of the delivery adds nothing
            "delivery after the response failed: %d messages not delivered (%s); messageIds: %s",
            len(ids),
            error,
            ", ".join(ids),
        )
    except Exception:
        log.exception("delivery after the response failed unexpectedly")


class SegmentMiddleware:
    """Run each request of a WSGI ``app`` in a scope with the request's context; deliver after the response.

    ``defer=True`` (the default): messages are held and delivered when the server
    calls the response's ``close()``, after the response has been sent (the app's own
    ``close()`` is called first).  ``defer=False``: every call sends inline, as outside
    the middleware, with the request's context merged in.  ``trust_forwarded=True``
    takes ``ip``, the scheme and the host from ``X-Forwarded-For``/``-Proto``/``-Host``
    (see :func:`environ_context`): set it only behind a proxy that sets them.

    Each request runs in a copy of the server thread's :mod:`contextvars` context,
    entered again for every chunk of a streamed body, so a scope never outlives its
    request on the server's thread.  A response that is the server's own
    ``wsgi.file_wrapper`` is returned as is (so the server may still use sendfile) with
    its ``close()`` made to deliver.

    Since: 0.2.0
    """

    def __init__(self, app: WSGIApp, *, defer: bool = True, trust_forwarded: bool = False) -> None:
        self.app = app
        self.defer = defer
        self.trust_forwarded = trust_forwarded

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        """Serve one request; the returned iterable's ``close()`` delivers what the request held."""
        request_scope = simple_segment.scope(
            context=environ_context(environ, trust_forwarded=self.trust_forwarded), defer=self.defer
        )
        ctx = contextvars.copy_context()
        ctx.run(request_scope.__enter__)
        try:
            iterable = ctx.run(self.app, environ, start_response)
        except BaseException:
            # No response iterable, so no close(): deliver what the handler made before it raised.
            deliver_pending(ctx.run(request_scope.detach))
            raise
        file_wrapper = environ.get("wsgi.file_wrapper")
        if isinstance(file_wrapper, type) and isinstance(iterable, file_wrapper):
            # The server sends its own file wrapper with sendfile(); wrapping it would lose
            # that.  Hook its close() instead: the server still calls it after the last byte.
            return _hook_close(iterable, ctx, request_scope)
        return _Response(iterable, ctx, request_scope)


def _hook_close(
    iterable: Iterable[bytes], ctx: contextvars.Context, request_scope: simple_segment.Scope
) -> Iterable[bytes]:
    """Make the file wrapper's ``close()`` deliver after its own; a wrapper that refuses is wrapped instead."""
    response = _Response(iterable, ctx, request_scope)
    try:
        iterable.close = response.close  # type: ignore[attr-defined]
    except AttributeError:  # __slots__ or a read-only close: lose sendfile rather than messages
        return response
    return iterable


class _Response:
    """The app's response iterable, stepped inside the request's context; ``close()`` delivers."""

    __slots__ = ("_close", "_closed", "_ctx", "_iterable", "_scope")

    def __init__(
        self, iterable: Iterable[bytes], ctx: contextvars.Context, request_scope: simple_segment.Scope
    ) -> None:
        self._iterable = iterable
        self._close = getattr(iterable, "close", None)  # taken now: _hook_close replaces it
        self._ctx = ctx
        self._scope = request_scope
        self._closed = False

    def __iter__(self) -> Iterator[bytes]:
        iterator = self._ctx.run(iter, self._iterable)
        while True:
            try:
                chunk = self._ctx.run(next, iterator)
            except StopIteration:
                return
            yield chunk

    def close(self) -> None:
        """Close the app's iterable, end the request's scope, deliver what it held."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._close is not None:
                self._ctx.run(self._close)
        finally:
            deliver_pending(self._ctx.run(self._scope.detach))

    def __del__(self) -> None:
        # PEP 3333 servers always call close(); one that does not must not lose the
        # request's messages without a word.
        if not self._closed:
            log.warning("the WSGI server did not call close() on the response; delivering its messages now")
            try:
                self.close()
            except Exception:  # a finalizer must not raise; say what happened instead
                log.exception("delivering the messages of a response that was never closed failed")
