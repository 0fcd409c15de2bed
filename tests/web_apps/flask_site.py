"""A Flask app for tests/test_web_servers.py, served by gunicorn: ``flask_site:application``.

``/track?user=U&n=K`` makes K track calls and answers their messageIds and the worker's
pid as JSON.  The same app is mounted twice: deferred at ``/`` and inline
(``defer=False``) under ``/inline``.  ``/on-error/track`` uses a client whose
``on_error`` prints ``ON_ERROR <messageIds>`` to stderr.  Settings come from
SEGMENT_WRITE_KEY and SEGMENT_HOST.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

from flask import Flask, jsonify, request
from werkzeug.middleware.dispatcher import DispatcherMiddleware

import simple_segment
from simple_segment.integrations.flask import init_app

# What an app would do: errors of simple_segment (a delivery failed after the response) reach stderr.
logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
simple_segment.write_key = os.environ["SEGMENT_WRITE_KEY"]
simple_segment.host = os.environ["SEGMENT_HOST"]
simple_segment.max_retries = 0
simple_segment.total_timeout = 10


def _report(error: Exception, messages: list[dict[str, Any]]) -> None:
    print("ON_ERROR", " ".join(str(m["messageId"]) for m in messages), file=sys.stderr, flush=True)


reporting = simple_segment.Client(
    os.environ["SEGMENT_WRITE_KEY"], host=os.environ["SEGMENT_HOST"], max_retries=0, on_error=_report
)


def make_app(*, defer: bool) -> Flask:
    app = Flask(__name__)

    def track_with(send: Any) -> Any:
        user = request.args.get("user", "u")
        ids = []
        for i in range(int(request.args.get("n", "1"))):
            _, msg = send(user, "Page Work", {"i": i, "pid": os.getpid()})
            ids.append(msg["messageId"])
        return jsonify(pid=os.getpid(), ids=ids)

    @app.get("/track")
    def track() -> Any:
        return track_with(simple_segment.track)

    @app.get("/on-error/track")
    def track_on_error() -> Any:
        return track_with(reporting.track)

    init_app(app, defer=defer)
    return app


application = DispatcherMiddleware(make_app(defer=True), {"/inline": make_app(defer=False)})
