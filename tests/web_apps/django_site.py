"""A one-file Django site for tests/test_web_django.py: settings, views and URLs."""

from __future__ import annotations

import django
from django.conf import settings
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.urls import path

import simple_segment

if not settings.configured:
    settings.configure(
        DEBUG=False,
        SECRET_KEY="tests-only",
        ALLOWED_HOSTS=["*"],
        ROOT_URLCONF=__name__,
        MIDDLEWARE=["simple_segment.integrations.django.SegmentMiddleware"],
        INSTALLED_APPS=[],
        DATABASES={},
        USE_TZ=True,
    )
    django.setup()


def cart(request: HttpRequest) -> HttpResponse:
    simple_segment.track("u1", "Viewed Cart")
    simple_segment.track("u1", "Second")
    return HttpResponse("cart")


async def async_cart(request: HttpRequest) -> HttpResponse:
    simple_segment.track("u1", "Async Cart")
    return HttpResponse("async cart")


def broken(request: HttpRequest) -> HttpResponse:
    simple_segment.track("u1", "Before Error")
    msg = "boom"
    raise RuntimeError(msg)


def stream(request: HttpRequest) -> StreamingHttpResponse:
    simple_segment.track("u1", "Stream Started")
    return StreamingHttpResponse(iter([b"a", b"b"]))


urlpatterns = [
    path("cart", cart),
    path("async-cart", async_cart),
    path("broken", broken),
    path("stream", stream),
]
