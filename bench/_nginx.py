"""Start and stop a throw-away nginx on 127.0.0.1 that answers ``/v1/batch`` like Segment.

Used by ``run.sh`` (``python3 _nginx.py start DIR`` / ``stop DIR``), ``run.py`` and
``profile.py`` (``with running() as url:``).  Everything nginx writes (config, pid file,
error log, temp dirs) lives in one temporary directory; nothing under /etc is touched.
Stdlib only.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

CONFIG = """\
# Written by bench/_nginx.py: a minimal stand-in for api.segment.io/v1/batch.
worker_processes 1;
{affinity}
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
    keepalive_requests 1000000000;
    keepalive_timeout 600s;
    client_max_body_size 1m;
    client_body_buffer_size 1m;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    server {{
        listen 127.0.0.1:{port};
        location /v1/batch {{
            default_type application/json;
            return 200 '{{"success":true}}';
        }}
    }}
}}
"""


def nginx_binary() -> str:
    """Path of the nginx executable (Debian puts it in /usr/sbin, often off PATH)."""
    found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin:/sbin")
    if not found:
        msg = "nginx not found: run bench/run.sh (it installs nginx with apt-get) or apt-get install nginx"
        raise RuntimeError(msg)
    return found


def nginx_version() -> str:
    out = subprocess.run([nginx_binary(), "-v"], capture_output=True, text=True, check=False)
    return (out.stderr or out.stdout).strip().removeprefix("nginx version: ")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _pid(tmp: Path) -> int | None:
    try:
        return int((tmp / "nginx.pid").read_text().strip())
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def start(tmp: Path) -> str:
    """Start nginx (daemonised) with its files in ``tmp``; return its base URL."""
    tmp.mkdir(parents=True, exist_ok=True)
    # With two or more cores keep the nginx worker on the last one, so the client under
    # test mostly has a core to itself and the numbers are steadier.
    ncpu = os.cpu_count() or 1
    affinity = "worker_cpu_affinity " + "1" + "0" * (ncpu - 1) + ";" if ncpu >= 2 else ""
    last_err = ""
    for _attempt in range(5):
        port = _free_port()
        conf = tmp / "nginx.conf"
        conf.write_text(CONFIG.format(tmp=tmp, port=port, affinity=affinity))
        proc = subprocess.run(
            [nginx_binary(), "-p", str(tmp), "-e", str(tmp / "error.log"), "-c", str(conf)],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode == 0:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                if _pid(tmp) and _port_open(port):
                    (tmp / "url").write_text(f"http://127.0.0.1:{port}\n")
                    return f"http://127.0.0.1:{port}"
                time.sleep(0.05)
            stop(tmp)
            last_err = "nginx started but did not listen within 10 s"
        else:
            last_err = proc.stderr.strip()
            if "Address already in use" not in last_err:
                break
    raise RuntimeError(f"could not start nginx: {last_err}")


def stop(tmp: Path) -> None:
    """Stop the nginx whose pid file is in ``tmp`` (only that one) and wait for it."""
    pid = _pid(tmp)
    if pid is None or not _alive(pid):
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.05)
    if _alive(pid):
        os.kill(pid, signal.SIGKILL)


@contextlib.contextmanager
def running() -> Iterator[str]:
    """Run nginx for the duration of the block; yields its base URL."""
    tmp = Path(tempfile.mkdtemp(prefix="bench-nginx-"))
    try:
        yield start(tmp)
    finally:
        stop(tmp)
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[1] not in {"start", "stop", "version"}:
        print("usage: _nginx.py start|stop DIR   (start prints the base URL)", file=sys.stderr)
        return 2
    tmp = Path(argv[2]).resolve()
    if argv[1] == "start":
        print(start(tmp))
    elif argv[1] == "stop":
        stop(tmp)
    else:
        print(nginx_version())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
