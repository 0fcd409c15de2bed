"""A Starlette app for tests/test_web_servers.py, served by uvicorn: ``starlette_site:app``.

``/track?user=U&n=K`` (an ``async def`` handler) makes K track calls and answers their
messageIds.  ``/lag`` answers the longest the event loop was late for a 20 ms tick
since the last ``/lag`` (a blocked loop shows as a long lag).  Settings come from
SEGMENT_WRITE_KEY and SEGMENT_HOST.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

import simple_segment
from simple_segment.integrations.asgi import SegmentMiddleware

simple_segment.write_key = os.environ["SEGMENT_WRITE_KEY"]
simple_segment.host = os.environ["SEGMENT_HOST"]
simple_segment.max_retries = 0
simple_segment.total_timeout = 10

TICK = 0.02
_lag = [0.0]


async def _watch_loop() -> None:
    loop = asyncio.get_running_loop()
    while True:
        before = loop.time()
        await asyncio.sleep(TICK)
        _lag[0] = max(_lag[0], loop.time() - before - TICK)


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    watcher = asyncio.ensure_future(_watch_loop())
    yield
    watcher.cancel()


async def track(request: Request) -> JSONResponse:
    user = request.query_params.get("user", "u")
    ids = []
    for i in range(int(request.query_params.get("n", "1"))):
        _, msg = simple_segment.track(user, "Async Work", {"i": i})
        ids.append(msg["messageId"])
    return JSONResponse({"pid": os.getpid(), "ids": ids})


async def lag(request: Request) -> JSONResponse:
    value, _lag[0] = _lag[0], 0.0
    return JSONResponse({"lag": value})


app = Starlette(routes=[Route("/track", track), Route("/lag", lag)], lifespan=lifespan)
app.add_middleware(SegmentMiddleware)
