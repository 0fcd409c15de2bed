#!/usr/bin/env bash
# Benchmark entry point for a fresh machine: installs nginx (Debian package) if missing,
# makes sure Python can create virtualenvs, starts a throw-away nginx on 127.0.0.1 (stopped
# on exit by the trap), and runs bench/run.py against it. Arguments go to run.py:
#   bash bench/run.sh                 # print the table
#   bash bench/run.sh --write         # also write bench/RESULTS.md
#   bash bench/run.sh --rounds 3 --only percall build
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
PY="${PYTHON:-python3}"

if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then
    echo "bench: installing nginx (apt-get)" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq nginx >/dev/null
    # Debian's package may start a system-wide nginx on port 80; the benchmark does not use it.
fi

if ! "$PY" -c 'import ensurepip, venv' >/dev/null 2>&1; then
    echo "bench: installing python3-venv (apt-get)" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq python3-venv >/dev/null
fi

NGINX_DIR="$(mktemp -d -t bench-nginx-XXXXXX)"
cleanup() {
    "$PY" "$HERE/_nginx.py" stop "$NGINX_DIR" || true
    rm -rf "$NGINX_DIR"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

URL="$("$PY" "$HERE/_nginx.py" start "$NGINX_DIR")"
echo "bench: nginx $("$PY" "$HERE/_nginx.py" version "$NGINX_DIR") at $URL" >&2
"$PY" "$HERE/run.py" --url "$URL" "$@"
