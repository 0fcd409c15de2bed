"""CPU instructions per call, layer by layer, counted by valgrind (deterministic, unlike timings).

    bench/.venvs/simple/bin/python bench/instructions.py [--calls 300]

Needs valgrind (Debian's package) and the bench venv (bash bench/run.sh makes it).  Each
variant runs in a fresh process under ``valgrind --tool=callgrind`` twice, with 0 and
with N calls after warming up, and the difference divided by N is printed: instructions
of the client process only (not nginx, not the kernel).  Kernel time (system calls) is
reported separately with ``strace -c`` counts where strace exists.
"""

from __future__ import annotations

import argparse
import functools
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

VARIANTS = {
    "http.client loop (ceiling)": "httpclient",
    "urllib3 pool.urlopen, no timeout": "raw",
    "urllib3 pool.urlopen, timeout=15": "raw_timeout",
    "simple: Endpoint.exchange (pool + deadline sockets + bounded read)": "exchange",
    "simple: Transport.post (+ retry loop, sentAt render)": "post",
    "simple: Delivery.deliver (+ capture/send decision, Outcome)": "deliver",
    "simple: Client.track (+ build, validate, serialize)": "track",
    "simple: build + serialize only (send=False work)": "build",
    "requests Session.post loop": "requests",
}


def child(variant: str, url: str, calls: int) -> None:
    """Run ``calls`` calls of ``variant`` after a warm-up (in the measured process)."""
    import http.client
    from urllib.parse import urlsplit

    import requests
    import urllib3
    from _workloads import EVENT, PROPS

    import simple_segment
    from simple_segment import _messages
    from simple_segment._wire import Envelope, encode_message

    client = simple_segment.Client("bench-write-key", host=url)
    transport = client._transport  # noqa: SLF001 - measuring the layers
    delivery = client._delivery  # noqa: SLF001
    endpoint = transport._endpoint  # noqa: SLF001
    envelope = Envelope("bench-write-key")
    encoded = [encode_message(_messages.track("u", EVENT, PROPS))]
    messages = [_messages.track("u", EVENT, PROPS)]
    body = envelope.render(encoded)
    headers = transport.headers()
    parts = urlsplit(url)
    pool = urllib3.HTTPConnectionPool(parts.hostname, parts.port)
    timed_pool = urllib3.HTTPConnectionPool(parts.hostname, parts.port, timeout=15.0)
    connection = http.client.HTTPConnection(parts.hostname, parts.port)
    session = requests.Session()

    def http_client(_: int) -> None:
        connection.request("POST", "/v1/batch", body=body, headers=headers)
        connection.getresponse().read()

    cases = {
        "httpclient": http_client,
        "raw": lambda _: pool.urlopen("POST", "/v1/batch", body=body, headers=headers, retries=False),
        "raw_timeout": lambda _: timed_pool.urlopen("POST", "/v1/batch", body=body, headers=headers, retries=False),
        "exchange": lambda _: endpoint.exchange(body, headers, 30.0),
        "post": lambda _: transport.post(functools.partial(envelope.render, encoded)),
        "deliver": lambda _: delivery.deliver(encoded, messages),
        "track": lambda i: client.track(f"user-{i}", EVENT, PROPS),
        "build": lambda i: encode_message(_messages.track(f"user-{i}", EVENT, PROPS)),
        "requests": lambda _: session.post(f"{url}/v1/batch", data=body, headers=headers),
    }
    work = cases[variant]
    for i in range(50):
        work(i)
    for i in range(calls):
        work(i)


def instructions(variant: str, url: str, calls: int) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "callgrind.out"
        run = subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable, __file__,
             "--child", variant, url, str(calls)],
            capture_output=True, text=True, check=True,
        )
    match = re.search(r"Collected : (\d+)", run.stderr)
    if match is None:
        raise SystemExit(f"no instruction count for {variant}:\n{run.stderr[-2000:]}")
    return int(match.group(1))


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3], int(sys.argv[4]))
        return 0
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=300)
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is needed: apt-get install -y valgrind")
    from _nginx import running

    with running() as url:
        print("| variant | instructions per call |\n|---|---|")
        for label, variant in VARIANTS.items():
            per_call = (instructions(variant, url, args.calls) - instructions(variant, url, 0)) / args.calls
            print(f"| {label} | {per_call / 1000:,.0f} k |", flush=True)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    raise SystemExit(main())
