"""The web middlewares in process: request context, delivery after the response, failures reported.

WSGI apps are driven as a PEP 3333 server drives them (call, iterate, ``close()``),
ASGI apps through httpx's ASGITransport or a hand-made ``receive``/``send``; every
message goes to a real loopback FakeSegment.  The real servers (gunicorn, uvicorn)
are in tests/test_web_servers.py, Django in tests/test_web_django.py.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import pathlib
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from flask import Flask, stream_with_context
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

import simple_segment
from simple_segment.integrations import asgi, wsgi
from simple_segment.integrations.flask import init_app
from simple_segment.testing import FakeSegment

WRITE_KEY = "test-write-key"


def environ(path: str = "/shop/cart", query: str = "", **extra: Any) -> dict[str, Any]:
    base = {
        "REQUEST_METHOD": "GET",
        "SCRIPT_NAME": "",
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "SERVER_NAME": "internal",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "10.1.2.3",
        "wsgi.url_scheme": "http",
    }
    base.update(extra)
    return base


def serve(app: Any, env: dict[str, Any], before_close: Any = None) -> tuple[str, bytes]:
    """Do what a WSGI server does: call, write every chunk, then close()."""
    status: list[str] = []
    result = app(env, lambda s, headers, exc_info=None: status.append(s))
    try:
        body = b"".join(result)
        if before_close is not None:
            before_close()
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()
    return status[0], body


# -- the request context --------------------------------------------------------------


def test_environ_context_has_every_field_and_rebuilds_the_url_as_pep_3333() -> None:
    env = environ(
        query="a=1&b=%20x",
        HTTP_HOST="shop.example:8443",
        HTTP_USER_AGENT="Mozilla/5.0 test",
        HTTP_ACCEPT_LANGUAGE="de-CH, de;q=0.9, en;q=0.5",
        HTTP_REFERER="https://search.example/?q=shoes",
        SCRIPT_NAME="/app",
        PATH_INFO="/caf\xc3\xa9 menu",  # WSGI: the received UTF-8 bytes as latin-1
    )
    assert wsgi.environ_context(env) == {
        "ip": "10.1.2.3",
        "userAgent": "Mozilla/5.0 test",
        "locale": "de-CH",
        "page": {
            "url": "http://shop.example:8443/app/caf%C3%A9%20menu?a=1&b=%20x",
            "path": "/app/caf%C3%A9%20menu",
            "search": "?a=1&b=%20x",
            "referrer": "https://search.example/?q=shoes",
        },
    }


def test_missing_headers_are_left_out_and_no_query_means_no_question_mark() -> None:
    env = environ()
    del env["REMOTE_ADDR"]
    assert wsgi.environ_context(env) == {
        "page": {"url": "http://internal:8000/shop/cart", "path": "/shop/cart", "search": ""}
    }


@pytest.mark.parametrize(
    ("scheme", "port", "host"),
    [("http", "80", "internal"), ("https", "443", "internal"), ("https", "80", "internal:80"), ("http", "8000", "internal:8000")],
)
def test_without_a_host_header_the_server_name_and_a_non_default_port(scheme: str, port: str, host: str) -> None:
    env = environ(**{"wsgi.url_scheme": scheme, "SERVER_PORT": port})
    assert wsgi.environ_context(env)["page"]["url"] == f"{scheme}://{host}/shop/cart"


def test_forwarded_headers_count_only_when_trusted() -> None:
    env = environ(
        HTTP_HOST="10.0.0.5:8000",
        HTTP_X_FORWARDED_FOR="203.0.113.7, 10.0.0.1",
        HTTP_X_FORWARDED_PROTO="HTTPS",
        HTTP_X_FORWARDED_HOST="www.example.com",
    )
    untrusted = wsgi.environ_context(env)
    assert untrusted["ip"] == "10.1.2.3"
    assert untrusted["page"]["url"] == "http://10.0.0.5:8000/shop/cart"
    trusted = wsgi.environ_context(env, trust_forwarded=True)
    assert trusted["ip"] == "203.0.113.7"
    assert trusted["page"]["url"] == "https://www.example.com/shop/cart"


def test_asgi_scope_context_matches_the_wsgi_one() -> None:
    scope = {
        "type": "http",
        "scheme": "https",
        "path": "/café menu",
        "raw_path": b"/caf%C3%A9%20menu",
        "query_string": b"a=1",
        "root_path": "",
        "client": ("192.0.2.9", 51000),
        "server": ("internal", 443),
        "headers": [(b"user-agent", b"UA"), (b"accept-language", b"fr"), (b"referer", b"https://r.example/")],
    }
    assert asgi.scope_context(scope) == {
        "ip": "192.0.2.9",
        "userAgent": "UA",
        "locale": "fr",
        "page": {
            "url": "https://internal/caf%C3%A9%20menu?a=1",
            "path": "/caf%C3%A9%20menu",
            "search": "?a=1",
            "referrer": "https://r.example/",
        },
    }
    del scope["raw_path"]
    scope["headers"] = [(b"host", b"shop.example"), (b"x-forwarded-for", b"203.0.113.7")]
    assert asgi.scope_context(scope) == {
        "ip": "192.0.2.9",
        "page": {"url": "https://shop.example/caf%C3%A9%20menu?a=1", "path": "/caf%C3%A9%20menu", "search": "?a=1"},
    }
    assert asgi.scope_context(scope, trust_forwarded=True)["ip"] == "203.0.113.7"


# -- WSGI -------------------------------------------------------------------------------


def test_wsgi_delivers_after_close_with_the_request_context(fake_segment: FakeSegment, client: simple_segment.Client) -> None:
    """Nothing is sent while the response is written; close() sends one batch carrying the context."""
    def app(env: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        ok, _ = client.track("u1", "Viewed Cart", context={"page": {"title": "Cart"}})
        assert ok
        client.track("u1", "Second")
        return [b"ok"]

    status, body = serve(
        wsgi.SegmentMiddleware(app),
        environ(query="x=1", HTTP_HOST="shop.example", HTTP_USER_AGENT="UA"),
        before_close=lambda: assert_nothing_sent(fake_segment),
    )
    assert (status, body) == ("200 OK", b"ok")
    assert len(fake_segment.requests) == 1
    first, second = fake_segment.messages
    assert first["context"]["page"] == {
        "url": "http://shop.example/shop/cart?x=1", "path": "/shop/cart", "search": "?x=1", "title": "Cart"
    }
    assert first["context"]["ip"] == second["context"]["ip"] == "10.1.2.3"
    assert second["context"]["userAgent"] == "UA"
    assert "locale" not in second["context"]


def assert_nothing_sent(fake_segment: FakeSegment) -> None:
    assert fake_segment.requests == []


def test_wsgi_streaming_body_is_in_the_scope_and_the_apps_close_runs_first(
    fake_segment: FakeSegment, client: simple_segment.Client
) -> None:
    order: list[str] = []

    class Body:
        def __iter__(self) -> Iterator[bytes]:
            for i in range(3):
                client.track("u1", f"chunk {i}")
                yield b"x"

        def close(self) -> None:
            order.append(f"app close, sent so far: {len(fake_segment.messages)}")

    def app(env: dict[str, Any], start_response: Any) -> Body:
        start_response("200 OK", [])
        return Body()

    serve(wsgi.SegmentMiddleware(app), environ())
    assert order == ["app close, sent so far: 0"]
    assert [m["event"] for m in fake_segment.messages] == ["chunk 0", "chunk 1", "chunk 2"]
    assert all(m["context"]["ip"] == "10.1.2.3" for m in fake_segment.messages)


def test_wsgi_handler_that_raises_still_delivers(fake_segment: FakeSegment, client: simple_segment.Client) -> None:
    def app(env: dict[str, Any], start_response: Any) -> list[bytes]:
        client.track("u1", "Before Error")
        raise KeyError("boom")

    with pytest.raises(KeyError):
        wsgi.SegmentMiddleware(app)(environ(), lambda *a: None)
    assert [m["event"] for m in fake_segment.messages] == ["Before Error"]


def test_wsgi_scope_does_not_leak_into_the_servers_thread(client: simple_segment.Client) -> None:
    seen: list[object] = []

    def app(env: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [])
        return [b""]

    result = wsgi.SegmentMiddleware(app)(environ(), lambda *a: None)
    seen.append(simple_segment._scope.current())
    result.close()  # type: ignore[attr-defined]
    assert seen == [None]


def test_wsgi_defer_false_sends_inline_with_the_context(fake_segment: FakeSegment, client: simple_segment.Client) -> None:
    def app(env: dict[str, Any], start_response: Any) -> list[bytes]:
        client.track("u1", "Inline")
        assert len(fake_segment.messages) == 1
        start_response("200 OK", [])
        return [b""]

    serve(wsgi.SegmentMiddleware(app, defer=False), environ())
    assert fake_segment.messages[0]["context"]["ip"] == "10.1.2.3"


def failing_app(client: simple_segment.Client) -> Any:
    def app(env: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [])
        client.track("u1", "One")
        client.track("u1", "Two")
        return [b""]

    return app


def test_wsgi_failure_after_the_response_is_logged_with_count_and_ids(
    fake_segment: FakeSegment, client: simple_segment.Client, caplog: pytest.LogCaptureFixture
) -> None:
    fake_segment.respond_with(400, times=1)
    caplog.set_level(logging.ERROR, logger="simple_segment")
    serve(wsgi.SegmentMiddleware(failing_app(client)), environ())
    ids = [m["messageId"] for m in fake_segment.requests[0].batch]
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    text = errors[0].getMessage()
    assert "2 messages not delivered" in text
    assert all(i in text for i in ids)


def test_wsgi_failure_after_the_response_goes_to_on_error(fake_segment: FakeSegment) -> None:
    failures: list[tuple[Exception, list[Any]]] = []
    with simple_segment.Client(
        WRITE_KEY, host=fake_segment.url, on_error=lambda e, msgs: failures.append((e, msgs)), max_retries=0
    ) as c:
        fake_segment.respond_with(400, times=1)
        serve(wsgi.SegmentMiddleware(failing_app(c)), environ())
    assert [[m["event"] for m in msgs] for _, msgs in failures] == [["One", "Two"]]


def test_flask_init_app(fake_segment: FakeSegment, client: simple_segment.Client) -> None:
    app = Flask(__name__)

    @app.get("/")
    def index() -> str:
        client.track("u1", "Home")
        return "home"

    @app.get("/stream")
    def stream() -> Any:
        def body() -> Iterator[str]:
            client.track("u1", "Streamed")
            yield "s"

        return app.response_class(stream_with_context(body()))

    middleware = init_app(app)
    assert init_app(app) is middleware  # idempotent
    with app.test_client() as http:
        assert http.get("/?q=1", headers={"User-Agent": "UA"}, buffered=True).data == b"home"
        assert http.get("/stream", buffered=True).data == b"s"
    home, streamed = fake_segment.messages
    assert home["context"]["page"]["url"] == "http://localhost/?q=1"
    assert home["context"]["userAgent"] == "UA"
    assert streamed["context"]["page"]["path"] == "/stream"
    with pytest.raises(TypeError):
        init_app(object())


# -- ASGI -------------------------------------------------------------------------------


def starlette_app(client: simple_segment.Client, calls_on: list[int]) -> Starlette:
    async def track(request: Request) -> PlainTextResponse:
        calls_on.append(threading.get_ident())
        client.track("u1", "Async Handler")

        def later() -> None:
            client.track("u1", "Background")

        return PlainTextResponse("ok", background=BackgroundTask(later))

    async def fast(request: Request) -> PlainTextResponse:
        return PlainTextResponse("fast")

    app = Starlette(routes=[Route("/track", track), Route("/fast", fast)])
    app.add_middleware(asgi.SegmentMiddleware)
    return app


_socket_ops: list[tuple[str, int]] = []
_audit_on = threading.Event()


def _audit(event: str, args: object) -> None:
    if _audit_on.is_set() and event in ("socket.connect", "socket.sendto", "socket.sendmsg", "socket.getaddrinfo"):
        _socket_ops.append((event, threading.get_ident()))


sys.addaudithook(_audit)


def test_asgi_async_handler_does_no_network_io_on_the_loop(fake_segment: FakeSegment) -> None:
    """The loop thread opens no socket to Segment; the delivery happens in an executor thread."""
    calls_on: list[int] = []
    with simple_segment.Client(WRITE_KEY, host=fake_segment.url) as fresh:  # a fresh pool: every send connects
        app = starlette_app(fresh, calls_on)

        async def main() -> str:
            transport = httpx.ASGITransport(app=app, client=("198.51.100.4", 1234))
            async with httpx.AsyncClient(transport=transport, base_url="http://shop.example") as http:
                _audit_on.set()
                try:
                    response = await http.get("/track?a=1", headers={"Accept-Language": "en-GB,en"})
                finally:
                    _audit_on.clear()
                return response.text

        _socket_ops.clear()
        assert asyncio.run(main()) == "ok"
    loop_thread = calls_on[0]
    connects = [thread for event, thread in _socket_ops if event == "socket.connect"]
    assert connects, "the delivery made no connection at all"
    assert loop_thread not in connects
    handler, background = fake_segment.messages
    assert handler["event"] == "Async Handler"
    assert background["event"] == "Background"
    assert handler["context"]["ip"] == "198.51.100.4"
    assert handler["context"]["locale"] == "en-GB"
    assert handler["context"]["page"] == {"url": "http://shop.example/track?a=1", "path": "/track", "search": "?a=1"}
    assert len(fake_segment.requests) == 1


def test_asgi_slow_segment_does_not_hold_up_another_request(fake_segment: FakeSegment, client: simple_segment.Client) -> None:
    """While one request's delivery waits 1.5 s on Segment, another request on the same loop is answered."""
    fake_segment.respond_with(200, delay=1.5, times=1)  # under the client's 2 s read timeout: no retry
    app = starlette_app(client, [])

    async def main() -> tuple[float, float]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            loop = asyncio.get_running_loop()
            start = loop.time()
            slow = asyncio.ensure_future(http.get("/track"))
            await asyncio.sleep(0.2)  # the slow one is now waiting on Segment
            assert not slow.done()
            await http.get("/fast")
            fast_done = loop.time() - start
            await slow
            return fast_done, loop.time() - start

    fast_done, slow_done = asyncio.run(main())
    assert fast_done < 1.0
    assert slow_done >= 1.5
    assert [m["event"] for m in fake_segment.messages] == ["Async Handler", "Background"]


def test_asgi_non_http_passes_through_and_errors_still_deliver(fake_segment: FakeSegment, client: simple_segment.Client) -> None:
    seen: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(simple_segment._scope.current())
        if scope["type"] == "http":
            client.track("u1", "Before Error")
            raise RuntimeError("boom")

    middleware = asgi.SegmentMiddleware(app)

    async def main() -> None:
        await middleware({"type": "lifespan"}, None, None)  # type: ignore[arg-type]
        with pytest.raises(RuntimeError):
            await middleware({"type": "http", "headers": [], "path": "/"}, None, None)  # type: ignore[arg-type]
        await asyncio.gather(*asgi._unawaited)

    asyncio.run(main())
    assert seen[0] is None
    assert seen[1] is not None
    fake_segment.wait_for_messages(1)
    assert fake_segment.messages[0]["event"] == "Before Error"


def test_importing_simple_segment_imports_no_framework() -> None:
    code = (
        "import sys, simple_segment\n"
        "import simple_segment.integrations.wsgi, simple_segment.integrations.asgi\n"
        "import simple_segment.integrations.flask, simple_segment.integrations.django\n"
        "bad = [m for m in ('flask', 'django', 'starlette', 'fastapi', 'werkzeug', 'asgiref', 'anyio') if m in sys.modules]\n"
        "print(bad)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "[]", out.stderr


def load_example(name: str, fake_segment: FakeSegment, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("SEGMENT_WRITE_KEY", WRITE_KEY)
    monkeypatch.setenv("SEGMENT_HOST", fake_segment.url)
    path = pathlib.Path(__file__).resolve().parent.parent / "examples" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"example_{name}", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_flask_example(fake_segment: FakeSegment, monkeypatch: pytest.MonkeyPatch) -> None:
    example = load_example("flask_app", fake_segment, monkeypatch)
    with example.app.test_client() as http:
        assert http.get("/checkout?plan=pro", buffered=True).json == {"status": "ok", "plan": "pro"}
    identify, track = fake_segment.messages
    assert identify["traits"] == {"plan": "pro"}
    assert track["context"]["page"]["url"] == "http://localhost/checkout?plan=pro"
    assert len(fake_segment.requests) == 1


def test_fastapi_example(fake_segment: FakeSegment, monkeypatch: pytest.MonkeyPatch) -> None:
    example = load_example("fastapi_app", fake_segment, monkeypatch)

    async def main() -> Any:
        transport = httpx.ASGITransport(app=example.app, client=("192.0.2.7", 5000))
        async with httpx.AsyncClient(transport=transport, base_url="http://shop.example") as http:
            return (await http.get("/checkout?plan=pro")).json()

    assert asyncio.run(main()) == {"status": "ok", "plan": "pro"}
    identify, track = fake_segment.messages
    assert track["event"] == "Checkout Started"
    assert identify["context"]["ip"] == "192.0.2.7"
    assert track["context"]["page"]["url"] == "http://shop.example/checkout?plan=pro"


def test_wsgi_response_never_closed_still_delivers_with_a_warning(
    fake_segment: FakeSegment, client: simple_segment.Client, caplog: pytest.LogCaptureFixture
) -> None:
    """A server that breaks PEP 3333 and drops the response without close(): delivered when it is collected."""

    def app(env: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [])
        client.track("u1", "Orphan")
        return [b"x"]

    result = wsgi.SegmentMiddleware(app)(environ(), lambda *a: None)
    assert b"".join(result) == b"x"
    assert fake_segment.requests == []
    del result  # the last reference: CPython finalizes it here
    assert [m["event"] for m in fake_segment.messages] == ["Orphan"]
    assert "did not call close()" in caplog.text


def test_asgi_trust_forwarded(fake_segment: FakeSegment, client: simple_segment.Client) -> None:
    async def endpoint(request: Request) -> PlainTextResponse:
        client.track("u1", "Forwarded")
        return PlainTextResponse("ok")

    app = Starlette(routes=[Route("/", endpoint)])
    app.add_middleware(asgi.SegmentMiddleware, trust_forwarded=True)

    async def main() -> None:
        transport = httpx.ASGITransport(app=app, client=("10.0.0.2", 1))
        async with httpx.AsyncClient(transport=transport, base_url="http://10.0.0.9:8000") as http:
            headers = {"X-Forwarded-For": "203.0.113.5", "X-Forwarded-Proto": "https", "X-Forwarded-Host": "www.example"}
            await http.get("/?a=1", headers=headers)

    asyncio.run(main())
    [message] = fake_segment.messages
    assert message["context"]["ip"] == "203.0.113.5"
    assert message["context"]["page"]["url"] == "https://www.example/?a=1"


def test_wsgi_server_file_wrapper_is_kept_and_its_close_delivers(
    fake_segment: FakeSegment, client: simple_segment.Client, tmp_path: pathlib.Path
) -> None:
    """The server's wsgi.file_wrapper comes back as is (sendfile still works); its close() delivers."""
    from wsgiref.util import FileWrapper

    data = tmp_path / "f.bin"
    data.write_bytes(b"file body")

    def app(env: dict[str, Any], start_response: Any) -> Any:
        start_response("200 OK", [])
        client.track("u1", "Download")
        return env["wsgi.file_wrapper"](data.open("rb"))

    env = environ(**{"wsgi.file_wrapper": FileWrapper})
    result = wsgi.SegmentMiddleware(app)(env, lambda *a: None)
    assert isinstance(result, FileWrapper)
    assert b"".join(result) == b"file body"
    assert fake_segment.requests == []
    result.close()
    assert result.filelike.closed
    assert [m["event"] for m in fake_segment.messages] == ["Download"]
