"""One benchmark workload for one contender, run in that contender's own virtualenv.

    python _workloads.py CONTENDER WORKLOAD URL N   ->  one line of JSON on stdout

Contenders: simple (simple_segment), official (segment-analytics-python 2.4.0),
requests (a bare requests.Session().post loop of pre-built bodies), httpclient (a bare
keep-alive http.client loop of pre-built bodies), floor (uuid4 + timestamp + json.dumps).
Workloads: percall, batch, build, rss.  Stdlib only besides the contender.
"""

from __future__ import annotations

import base64
import json
import resource
import sys
import time
import uuid
from datetime import datetime, timezone
from urllib.parse import urlsplit

KEY = "bench-write-key"
EVENT = "Order Completed"
PROPS = {
    "plan": "pro",
    "revenue": 39.99,
    "seats": 12,
    "trial": False,
    "coupon": "BLACKFRIDAY",
    "source": "email",
    "campaign": {"id": "c-123", "medium": "newsletter", "variant": 3},
    "signed_up_at": datetime(2026, 11, 28, 12, 0, tzinfo=timezone.utc),
    "referrer": "https://example.com/pricing",
    "items": 3,
}
HEADERS = {
    "Content-Type": "application/json",
    "User-Agent": "bench/1",
    "Authorization": "Basic " + base64.b64encode(f"{KEY}:".encode()).decode(),
}


def _iso(value: object) -> str:
    return value.isoformat()  # type: ignore[attr-defined]


def floor_message(i: int) -> dict:
    return {
        "type": "track",
        "userId": f"user-{i}",
        "event": EVENT,
        "properties": PROPS,
        "messageId": str(uuid.uuid4()),
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
    }


def prebuilt_body(count: int) -> bytes:
    batch = [floor_message(i) for i in range(count)]
    return json.dumps({"batch": batch, "sentAt": "2026-11-28T00:00:00.000Z", "writeKey": KEY}, default=_iso).encode()


def timed_calls(call, n: int) -> dict:
    for i in range(min(100, n)):  # warm-up
        call(i)
    lat = []
    start = time.perf_counter()
    for i in range(n):
        t = time.perf_counter()
        call(i)
        lat.append(time.perf_counter() - t)
    total = time.perf_counter() - start
    lat.sort()
    return {"per_s": n / total, "p50_ms": lat[len(lat) // 2] * 1e3, "p99_ms": lat[int(len(lat) * 0.99)] * 1e3}


def percall(contender: str, url: str, n: int) -> dict:
    if contender == "simple":
        import simple_segment

        client = simple_segment.Client(KEY, host=url)
        return timed_calls(lambda i: client.track(f"user-{i}", EVENT, PROPS), n)
    if contender == "official":
        from segment.analytics import Client

        client = Client(KEY, host=url, sync_mode=True)
        return timed_calls(lambda i: client.track(f"user-{i}", EVENT, PROPS), n)
    body = prebuilt_body(1)
    if contender == "requests":
        import requests

        session = requests.Session()
        target = url + "/v1/batch"

        def post(_: int) -> None:
            response = session.post(target, data=body, headers=HEADERS)
            if response.status_code != 200:
                raise RuntimeError(response.status_code)

        return timed_calls(post, n)
    if contender == "httpclient":
        return timed_calls(_httpclient_poster(url, body), n)
    raise SystemExit(f"no percall for {contender}")


def _httpclient_poster(url: str, body: bytes):
    import http.client

    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port)
    headers = {**HEADERS, "Content-Length": str(len(body))}

    def post(_: int) -> None:
        conn.request("POST", "/v1/batch", body=body, headers=headers)
        response = conn.getresponse()
        response.read()
        if response.status != 200:
            raise RuntimeError(response.status)

    return post


def batch(contender: str, url: str, n: int) -> dict:
    if contender == "simple":
        import simple_segment

        client = simple_segment.Client(KEY, host=url)
        start = time.perf_counter()
        with client.batch() as b:
            for i in range(n):
                b.track(f"user-{i}", EVENT, PROPS)
        total = time.perf_counter() - start
        return {"per_s": n / total, "requests": b.requests_sent}
    if contender == "official":
        from segment.analytics import Client

        client = Client(KEY, host=url)
        start = time.perf_counter()
        for i in range(n):
            client.track(f"user-{i}", EVENT, PROPS)
        client.flush()
        total = time.perf_counter() - start
        client.join()
        return {"per_s": n / total}
    # Ceilings: pre-built bodies of as many messages as fit in 500 KB.
    per_body = 1
    while len(prebuilt_body(per_body * 2)) <= 500_000 and per_body * 2 <= 2500:
        per_body *= 2
    body = prebuilt_body(per_body)
    requests_needed = max(1, n // per_body)
    if contender == "requests":
        import requests

        session = requests.Session()
        target = url + "/v1/batch"
        post = lambda _: session.post(target, data=body, headers=HEADERS)  # noqa: E731
    else:
        post = _httpclient_poster(url, body)
    start = time.perf_counter()
    for i in range(requests_needed):
        post(i)
    total = time.perf_counter() - start
    return {"per_s": requests_needed * per_body / total, "note": "pre-built bodies, no message building"}


def build(contender: str, _url: str, n: int) -> dict:
    if contender == "simple":
        import simple_segment

        client = simple_segment.Client(KEY, send=False)
        call = lambda i: client.track(f"user-{i}", EVENT, PROPS)  # noqa: E731
    elif contender == "official":
        from segment.analytics import Client

        client = Client(KEY, send=False)
        call = lambda i: client.track(f"user-{i}", EVENT, PROPS)  # noqa: E731
    elif contender == "floor":
        call = lambda i: json.dumps(floor_message(i), default=_iso)  # noqa: E731
    else:
        raise SystemExit(f"no build for {contender}")
    for i in range(1000):
        call(i)
    start = time.perf_counter()
    for i in range(n):
        call(i)
    return {"us": (time.perf_counter() - start) / n * 1e6}


def rss(contender: str, url: str, n: int) -> dict:
    import simple_segment

    client = simple_segment.Client(KEY, host=url)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with client.batch() as b:
        for i in range(n):
            b.track(f"user-{i}", EVENT, PROPS)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"base_kb": base, "peak_kb": peak, "ratio": peak / base, "messages": b.messages_sent}


if __name__ == "__main__":
    who, what, where, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    result = {"percall": percall, "batch": batch, "build": build, "rss": rss}[what](who, where, count)
    print(json.dumps(result))
