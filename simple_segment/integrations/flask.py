"""Flask: every request in a scope with its context, its messages delivered after the response.

Call :func:`init_app` where the app is made::

    from flask import Flask
    from simple_segment.integrations.flask import init_app

    app = Flask(__name__)
    init_app(app)

It wraps ``app.wsgi_app`` in :class:`simple_segment.integrations.wsgi.SegmentMiddleware`
(Flask's own recommended place for WSGI middleware), so ``app`` stays the Flask object
the server, the CLI and the test client use.  Everything the WSGI middleware says
holds: with ``defer=True`` the views' calls return at once and their messages are
delivered when the server closes the response, ``stream_with_context`` bodies included.

This module does not import Flask; it needs an object with a ``wsgi_app`` attribute.

Since: 0.2.0
"""

from __future__ import annotations

from typing import Any

from .wsgi import SegmentMiddleware

__all__ = ["init_app"]


def init_app(app: Any, *, defer: bool = True, trust_forwarded: bool = False) -> SegmentMiddleware:  # noqa: ANN401 - any Flask (or Quart-like) app
    """Wrap ``app.wsgi_app`` in the WSGI :class:`~simple_segment.integrations.wsgi.SegmentMiddleware`.

    ``defer`` and ``trust_forwarded`` are the middleware's.  Returns the middleware
    (now ``app.wsgi_app``).  Calling it again on the same app wraps nothing more.
    Raises :class:`TypeError` for an object without a callable ``wsgi_app``.

    Since: 0.2.0
    """
    current = getattr(app, "wsgi_app", None)
    if isinstance(current, SegmentMiddleware):
        return current
    if not callable(current):
        msg = f"init_app(app): app must be a Flask app (with a wsgi_app), not {type(app).__name__}"
        raise TypeError(msg)
    middleware = SegmentMiddleware(current, defer=defer, trust_forwarded=trust_forwarded)
    app.wsgi_app = middleware
    return middleware
