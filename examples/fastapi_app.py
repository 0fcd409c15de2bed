"""A FastAPI app whose ``async def`` handlers call Segment without blocking the event loop.

Try it with a local Segment-compatible server (from this directory)::

    simple-segment serve --port 8787 &
    export SEGMENT_WRITE_KEY=demo-key SEGMENT_HOST=http://127.0.0.1:8787
    uvicorn fastapi_app:app
    curl 'http://127.0.0.1:8000/checkout?plan=pro'

- ``app.add_middleware(SegmentMiddleware)`` runs every HTTP request in a scope: each
  message gets the request's ``context`` (``ip``, ``userAgent``, ``locale``, ``page``),
  and a call in an ``async def`` handler only validates and encodes: no network I/O
  on the loop.
- After the handler has returned and the response has been sent, the request's
  messages are delivered as one batch in the loop's default executor (a thread), so
  a slow Segment holds up no request.
"""

from __future__ import annotations

import logging
import os

from fastapi import FastAPI

import simple_segment
from simple_segment.integrations.asgi import SegmentMiddleware

logging.basicConfig(level=logging.INFO)
simple_segment.write_key = os.environ["SEGMENT_WRITE_KEY"]
simple_segment.host = os.environ.get("SEGMENT_HOST")  # None: https://api.segment.io

app = FastAPI()
app.add_middleware(SegmentMiddleware)  # behind a proxy that sets X-Forwarded-*: trust_forwarded=True


@app.get("/checkout")
async def checkout(plan: str = "free", user: str = "user-1") -> dict[str, str]:
    simple_segment.identify(user, {"plan": plan})
    simple_segment.track(user, "Checkout Started", {"plan": plan})
    return {"status": "ok", "plan": plan}
