"""A Flask app whose Segment calls do not slow its pages: they are delivered after each response.

Try it with a local Segment-compatible server (from this directory)::

    simple-segment serve --port 8787 &
    export SEGMENT_WRITE_KEY=demo-key SEGMENT_HOST=http://127.0.0.1:8787
    gunicorn --workers 2 flask_app:app        # or: flask --app flask_app run
    curl 'http://127.0.0.1:8000/checkout?plan=pro'

- ``init_app(app)`` runs every request in a scope: each message gets the request's
  ``context`` (``ip``, ``userAgent``, ``locale``, ``page``), and the calls only
  validate and encode.  The messages go out as one batch when the server closes the
  response, after the user has the page.
- A bad argument still raises in the view (it is checked at the call).
- If Segment refuses the batch after the response, there is nobody to raise to: the
  failure is logged at ERROR with the messageIds (configure logging, as below), or
  goes to ``on_error`` if you set one.
"""

from __future__ import annotations

import logging
import os

from flask import Flask, request

import simple_segment
from simple_segment.integrations.flask import init_app

logging.basicConfig(level=logging.INFO)
simple_segment.write_key = os.environ["SEGMENT_WRITE_KEY"]
simple_segment.host = os.environ.get("SEGMENT_HOST")  # None: https://api.segment.io

app = Flask(__name__)
init_app(app)  # behind a proxy that sets X-Forwarded-*: init_app(app, trust_forwarded=True)


@app.get("/checkout")
def checkout() -> dict[str, str]:
    user_id = request.args.get("user", "user-1")
    plan = request.args.get("plan", "free")
    simple_segment.identify(user_id, {"plan": plan})
    simple_segment.track(user_id, "Checkout Started", {"plan": plan})
    return {"status": "ok", "plan": plan}
