"""One benchmark workload for one contender, run in that contender's own virtualenv.

    python _workloads.py CONTENDER WORKLOAD URL N   ->  one line of JSON on stdout

Contenders: simple (simple_segment), official (segment-analytics-python 2.4.0; sync_mode
for percall, default async mode + flush() for batch with the queue made large enough that
nothing is dropped), official_defaultq (batch only: the official defaults, max_queue_size
10,000, which drops events when N is larger; counts delivered events only), requests (a
bare requests.Session().post loop of pre-built bodies), httpclient (a bare keep-alive
http.client loop of pre-built bodies), floor (uuid4 + timestamp + json.dumps).
Workloads: percall, batch, build, rss.  Stdlib only besides the contender.
On failure the JSON line is {"error": "..."} and the exit status 1 (run.py shows n/a).
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
HEADERS = {"Content-Type": "application/json", "User-Agent": "bench/1"}
AUTH = (KEY, "")  # requests builds the Basic header per call, as a hand-written loop would
BASIC = {"Authorization": "Basic " + base64.b64encode(f"{KEY}:".encode()).decode()}


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
            response = session.post(target, data=body, headers=HEADERS, auth=AUTH)
            if response.status_code != 200:
                raise RuntimeError(response.status_code)

        return timed_calls(post, n)
    if contender == "httpclient":
        return timed_calls(_httpclient_poster(url, body), n)
    if contender in ("urllib3", "urllib3_timeout"):
        import urllib3

        # urllib3_timeout: the same loop with timeout=15, as any client that must not hang has
        # (a socket with a timeout costs a poll() before each send and receive).
        pool = urllib3.connection_from_url(url, timeout=15.0 if contender == "urllib3_timeout" else None)
        headers = {**HEADERS, **BASIC}

        def post_urllib3(_: int) -> None:
            response = pool.urlopen("POST", "/v1/batch", body=body, headers=headers, retries=False)
            if response.status != 200:
                raise RuntimeError(response.status)

        return timed_calls(post_urllib3, n)
    raise SystemExit(f"no percall for {contender}")


def _httpclient_poster(url: str, body: bytes):
    import http.client

    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port)
    headers = {**HEADERS, **BASIC, "Content-Length": str(len(body))}

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
        with client.batch() as b:  # warm-up
            for i in range(n, n + 1000):
                b.track(f"user-{i}", EVENT, PROPS)
        start = time.perf_counter()
        with client.batch() as b:
            for i in range(n):
                b.track(f"user-{i}", EVENT, PROPS)
        total = time.perf_counter() - start
        if b.messages_sent != n:
            raise RuntimeError(f"simple delivered {b.messages_sent} of {n} events")
        return {"per_s": n / total, "requests": b.requests_sent}
    if contender in {"official", "official_defaultq"}:
        from segment.analytics import Client

        failed: list[int] = []
        options = {} if contender == "official_defaultq" else {"max_queue_size": n + 1000}
        client = Client(KEY, host=url, on_error=lambda e, batch: failed.append(len(batch)), **options)
        for i in range(n, n + 1000):  # warm-up
            client.track(f"user-{i}", EVENT, PROPS)
        client.flush()
        dropped = 0
        start = time.perf_counter()
        for i in range(n):
            ok, _ = client.track(f"user-{i}", EVENT, PROPS)
            dropped += not ok
        enqueued = time.perf_counter() - start
        client.flush()
        total = time.perf_counter() - start
        client.join()
        if failed:
            raise RuntimeError(f"official reported {sum(failed)} events not delivered")
        if dropped and contender == "official":
            raise RuntimeError(f"official dropped {dropped} events (queue full)")
        # Only delivered events count: a dropped event costs the caller nothing but is lost.
        return {"per_s": (n - dropped) / total, "dropped": dropped, "enqueue_s": round(enqueued, 2),
                "upload_size": client.consumers[0].upload_size}
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

        def post(_: int) -> None:
            response = session.post(target, data=body, headers=HEADERS, auth=AUTH)
            if response.status_code != 200:
                raise RuntimeError(response.status_code)
    else:
        post = _httpclient_poster(url, body)
    post(-1)  # warm-up: the connection
    start = time.perf_counter()
    for i in range(requests_needed):
        post(i)
    total = time.perf_counter() - start
    return {"per_s": requests_needed * per_body / total, "requests": requests_needed, "body_bytes": len(body),
            "note": "pre-built bodies, no message building"}


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


def probe() -> dict:
    """What this venv has: used by run.py to decide whether a contender is available."""
    from importlib import metadata

    found = {}
    for name in ("simple-segment", "segment-analytics-python", "requests", "urllib3"):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    import simple_segment  # noqa: F401  # raises if not importable: run.py reports n/a

    simple_segment.Client  # noqa: B018
    return {"versions": found, "file": simple_segment.__file__}


if __name__ == "__main__":
    who, what = sys.argv[1], sys.argv[2]
    try:
        if what == "probe":
            result = probe()
        else:
            where, count = sys.argv[3], int(sys.argv[4])
            result = {"percall": percall, "batch": batch, "build": build, "rss": rss}[what](who, where, count)
    except Exception as exc:  # noqa: BLE001  # reported as n/a with the reason
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}"[:400]}))
        sys.exit(1)
    print(json.dumps(result))
