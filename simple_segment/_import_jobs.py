"""``simple-segment import --jobs N [--seed S] [--resume] [--state PATH]``: a resumable, parallel import.

The file is cut into N parts at line starts (byte ranges of about equal size); each
part is read by its own worker process (with ``--jobs 1``, by this process) with its
own client and batch.  A line without ``messageId`` gets a stable one: line N's is the
id ``stable_ids(f"{seed}:{N}")`` gives its first message, so an import run again over
the same file sends the same ids and Segment de-duplicates what was stored.  The seed
is ``--seed``, else derived from the file's absolute path, size and modification time
(so a changed file gets new ids); the summary prints it.

A state file (``--state``, default ``<file>.import-state.json``) records, for each
part, how far every line was done (delivered, or reported bad): written about once a
second and when the run ends, so a run that was interrupted or killed is at most a
second behind.  ``--resume`` reads it and sends only the rest, with the same ids; it
refuses a file whose size or time changed, or another seed.

The CLI calls :func:`run_import_jobs` with its parsed arguments, its client factory
and its progress bar class; nothing here imports the CLI.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from queue import Empty
from typing import IO, Any, Protocol

from ._backfill import BadRecordError, decode_line, position_id, read_lines, record_call
from .client import Client
from .errors import ValidationError

__all__ = ["line_message_id", "run_import_jobs"]

_EXIT_OK, _EXIT_DELIVERY, _EXIT_USAGE, _EXIT_INTERRUPTED, _EXIT_TERMINATED = 0, 1, 2, 130, 143
_STATE_FORMAT = 1
_REPORT_EVERY = 0.25  # seconds between a worker's progress reports
_SAVE_EVERY = 1.0  # seconds between writes of the state file
_CHUNK = 1 << 20
_STOP_WAIT = 10.0  # seconds an interrupted run waits for its workers' last reports


class _Progress(Protocol):
    def update(self, lines: int, read: int, sent: int, started: float, *, force: bool = False) -> None: ...
    def clear(self) -> None: ...
    def finish(self) -> None: ...


MakeClient = Callable[..., Client]
"""``make_client(args, on_error=...)``: the CLI's client factory (a module-level function, so it pickles)."""


def line_message_id(seed: str, number: int) -> str:
    """Return line ``number``'s messageId: the first id of ``stable_ids(f"{seed}:{number}")``."""
    return position_id(f"{seed}:{number}", 0)


@dataclasses.dataclass
class _Piece:
    """Bytes ``[start, end)`` of the file, starting at line ``first``; done up to ``done``/``done_line``."""

    start: int
    end: int
    first: int
    done: int = -1
    done_line: int = -1

    def __post_init__(self) -> None:
        if self.done < 0:
            self.done, self.done_line = self.start, self.first - 1


def _default_seed(path: Path, info: os.stat_result) -> str:
    text = f"{path.resolve()}\0{info.st_size}\0{info.st_mtime_ns}"
    return "file-" + hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()[:20]


def _next_line_start(handle: IO[bytes], offset: int, end: int) -> int:
    """Return the first line start at or after ``offset`` (at most ``end``)."""
    if offset <= 0:
        return 0
    handle.seek(offset - 1)
    position = offset - 1
    while position < end:
        chunk = handle.read(_CHUNK)
        if not chunk:
            return end
        found = chunk.find(b"\n")
        if found >= 0:
            return min(position + found + 1, end)
        position += len(chunk)
    return end


def _count_lines(handle: IO[bytes], start: int, stop: int) -> int:
    handle.seek(start)
    count, left = 0, stop - start
    while left > 0:
        chunk = handle.read(min(_CHUNK, left))
        if not chunk:
            break
        count += chunk.count(b"\n")
        left -= len(chunk)
    return count


def _split(handle: IO[bytes], remaining: list[_Piece], jobs: int) -> list[list[_Piece]]:
    """Cut ``remaining`` into at most ``jobs`` shares of about equal bytes, at line starts."""
    total = sum(piece.end - piece.start for piece in remaining)
    share = max(total // jobs, 1)
    shares: list[list[_Piece]] = [[]]
    room = share
    for piece in remaining:
        start, first = piece.start, piece.first
        while start < piece.end:
            if room <= 0 and len(shares) < jobs:
                shares.append([])
                room = share
            cut = piece.end if len(shares) == jobs else _next_line_start(handle, start + room, piece.end)
            cut = max(cut, min(start + 1, piece.end)) if cut <= start else cut
            shares[-1].append(_Piece(start, cut, first))
            room -= cut - start
            if cut < piece.end:
                first += _count_lines(handle, start, cut)
            start = cut
    return [share for share in shares if share]


def _load_state(path: Path) -> dict[str, Any]:
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"no state file {path}: nothing to resume (run without --resume)") from None
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read the state file {path}: {exc}") from None
    if not isinstance(state, dict) or state.get("format") != _STATE_FORMAT:
        raise ValueError(f"{path} is not a state file of this version of simple-segment import")
    return state


def _save_state(path: Path, state: dict[str, Any], pieces: list[_Piece]) -> None:
    state["pieces"] = [[p.start, p.end, p.first, p.done, p.done_line] for p in pieces]
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(state, indent=1) + "\n", encoding="utf-8")
    temporary.replace(path)  # a reader (or a crash) sees the old state or the new, never half


# -- a worker ---------------------------------------------------------------------------


def _work(  # noqa: C901, PLR0912, PLR0913, PLR0915 - one loop, its counters and its watermark
    index: int,
    path: str,
    pieces: list[tuple[int, int, int, int]],
    seed: str,
    args: Any,  # noqa: ANN401 - the CLI's namespace, passed back to make_client
    make_client: MakeClient,
    report: Callable[[tuple[Any, ...]], None],
) -> None:
    """Send ``pieces`` (``(id, start, end, first line)``), reporting to ``report``; never raises."""
    pending: deque[tuple[int, int, int]] = deque()  # accepted, not yet delivered: (piece id, line, end offset)
    marks: dict[int, tuple[int, int]] = {}  # piece id -> (done offset, done line)
    last_read: dict[int, tuple[int, int]] = {}  # piece id -> (offset, line) of the last line read
    counts = {"lines": 0, "read": 0, "bad": 0, "failed": 0}
    frozen = False  # after a failed request, nothing later counts as done
    status = "ok"

    def on_error(exc: Exception, messages: list[Any]) -> None:
        nonlocal frozen
        frozen = True
        counts["failed"] += len(messages)
        for _ in range(min(len(messages), len(pending))):
            pending.popleft()
        report(("say", f"error: {len(messages)} messages not delivered: {exc}"))

    def progress(batch: Any, *, final: bool = False) -> None:  # noqa: ANN401 - a Batch
        report(("progress", index, dict(counts), batch.messages_sent, batch.requests_sent, batch.bytes_sent,
                dict(marks), final))

    sent = 0
    next_report = time.monotonic() + _REPORT_EVERY
    batch: Any = None
    try:
        client = make_client(args, on_error=on_error)
        dry_run = not client.send
        with client, client.batch() as batch, Path(path).open("rb") as handle:
            for piece_id, start, end, first in pieces:
                handle.seek(start)
                offset, number = start, first - 1
                for number, line, size in read_lines(handle, first=first, end=end):
                    offset += size
                    counts["lines"] += 1
                    counts["read"] += size
                    try:
                        record = decode_line(line, number)
                        if record is not None:
                            call, kwargs = record_call(record)
                            if "message_id" not in kwargs:
                                kwargs["message_id"] = line_message_id(seed, number)
                            getattr(batch, call)(**kwargs)
                            pending.append((piece_id, number, offset))
                    except (BadRecordError, ValidationError) as exc:
                        counts["bad"] += 1
                        report(("say", f"line {number}: {exc}"))
                    delivered = len(pending) if dry_run else batch.messages_sent - sent
                    sent += delivered
                    for _ in range(min(delivered, len(pending))):
                        done_id, done_line, done_offset = pending.popleft()
                        if not frozen:
                            marks[done_id] = (done_offset, done_line)
                    if not frozen and not pending:  # everything read so far is done
                        marks[piece_id] = (offset, number)
                    if frozen:
                        status = "failed"
                        break
                    if time.monotonic() >= next_report:
                        next_report = time.monotonic() + _REPORT_EVERY
                        progress(batch)
                last_read[piece_id] = (offset, number)
                if frozen:
                    break
        if frozen:
            status = "failed"
        else:
            # The block ended: the rest was posted (a failure would have frozen the marks).
            marks.update(last_read)
            pending.clear()
    except KeyboardInterrupt:
        status = "interrupted"
    except Exception as exc:  # noqa: BLE001 - a worker reports, the parent decides
        status = "crashed"
        report(("say", f"worker {index + 1}: unexpected {type(exc).__name__}: {exc}"))
    if batch is not None:
        progress(batch, final=True)
    report(("done", index, status))


def _worker_main(*arguments: Any) -> None:  # noqa: ANN401 - _work's arguments, with a queue for report
    """Run :func:`_work` in a worker process, reporting into the queue given last."""
    index, path, pieces, seed, args, make_client, queue = arguments
    _work(index, path, pieces, seed, args, make_client, queue.put)


# -- the parent -------------------------------------------------------------------------


@dataclasses.dataclass
class _Run:
    """What the parent knows: the pieces, each worker's last counters, and how each ended."""

    pieces: list[_Piece]
    counters: dict[int, tuple[dict[str, int], int, int, int]] = dataclasses.field(default_factory=dict)
    endings: dict[int, str] = dataclasses.field(default_factory=dict)
    terminated: bool = False  # stopped by SIGTERM (exit 143) rather than SIGINT (130)

    def total(self, name: str) -> int:
        return sum(counts[name] for counts, *_ in self.counters.values())

    def delivered(self, position: int) -> int:
        return sum(numbers[position] for _, *numbers in self.counters.values())


def _fail(text: str) -> int:
    sys.stderr.write(f"simple-segment: error: {text}\n")
    return _EXIT_USAGE


def _plan(args: Any, path: Path, state_path: Path) -> tuple[dict[str, Any], list[_Piece], int] | str:  # noqa: ANN401
    """Return the state to keep, the pieces left to send and the lines skipped; or why not."""
    try:
        info = path.stat()
    except OSError as exc:
        return f"cannot read {path}: {exc.strerror or exc}"
    seed = args.seed or _default_seed(path, info)
    identity = {"file": str(path.resolve()), "size": info.st_size, "mtime_ns": info.st_mtime_ns}
    if not args.resume:
        return {"format": _STATE_FORMAT, **identity, "seed": seed}, [_Piece(0, info.st_size, 1)], 0
    try:
        state = _load_state(state_path)
    except ValueError as exc:
        return str(exc)
    changed = [key for key, value in identity.items() if state.get(key) != value]
    if changed:
        return f"{path} is not the file the state file {state_path} describes ({', '.join(changed)} changed)"
    if args.seed is not None and args.seed != state.get("seed"):
        return f"--seed {args.seed!r} is not the last run's ({state.get('seed')!r}); ids would change"
    pieces = [_Piece(*values) for values in state.get("pieces", [])]
    skipped = sum(piece.done_line - piece.first + 1 for piece in pieces)
    left = [_Piece(p.done, p.end, p.done_line + 1) for p in pieces if p.done < p.end]
    return state, left, skipped


def run_import_jobs(  # noqa: C901 - plan, run, save, summarize
    args: Any,  # noqa: ANN401 - the CLI's namespace
    make_client: MakeClient,
    progress_class: Callable[..., _Progress],
) -> int:
    """Run ``import`` with ``args.jobs`` workers; print what the run did; return the exit status.

    ``args`` needs ``file``, ``jobs``, ``seed``, ``resume``, ``state`` and ``dry_run``
    (and whatever ``make_client(args, on_error=...)`` reads).  Bad lines are reported
    on stderr as ``line N: reason``; the summary goes to stdout.  Exit status: 0 all
    done, 1 a request failed or a worker died, 2 bad lines (or usage), 130 interrupted.
    """
    if args.file == "-":
        return _fail("--jobs, --seed and --resume need a file, not standard input")
    jobs = (os.cpu_count() or 1) if args.jobs == 0 else 1 if args.jobs is None else int(args.jobs)
    if jobs < 1:
        return _fail(f"--jobs must be a number of worker processes >= 1 (or 0: one per core), not {args.jobs}")
    path = Path(args.file)
    state_path = Path(args.state) if args.state else path.with_name(path.name + ".import-state.json")
    planned = _plan(args, path, state_path)
    if isinstance(planned, str):
        return _fail(planned)
    state, left, skipped = planned
    make_client(args).close()  # a missing write key or a bad option is said once, here, not by every worker
    with path.open("rb") as handle:
        shares = _split(handle, left, jobs) if left else []
    run = _Run([piece for share in shares for piece in share])
    done_before = [piece for piece in (_Piece(*v) for v in state.get("pieces", [])) if piece.done >= piece.end]
    all_pieces = done_before + run.pieces
    progress = progress_class(sys.stderr, sum(piece.end - piece.start for piece in run.pieces))
    started = time.monotonic()
    saved = [0.0]

    def save(*, force: bool = False) -> None:
        if args.dry_run or (not force and time.monotonic() - saved[0] < _SAVE_EVERY):
            return
        saved[0] = time.monotonic()
        _save_state(state_path, state, all_pieces)

    def receive(message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind == "say":
            progress.clear()
            sys.stderr.write(message[1] + "\n")
            sys.stderr.flush()
        elif kind == "progress":
            _, worker, counts, sent, requests, sent_bytes, marks, _final = message
            run.counters[worker] = (counts, sent, requests, sent_bytes)
            for piece_id, (done, done_line) in marks.items():
                piece = run.pieces[piece_id]
                piece.done, piece.done_line = max(piece.done, done), max(piece.done_line, done_line)
            save()
            sent_total = run.delivered(0) if not args.dry_run else run.total("lines") - run.total("bad")
            progress.update(run.total("lines"), run.total("read"), sent_total, started)
        elif kind == "done":
            run.endings[message[1]] = message[2]

    save(force=True)
    numbered: list[list[tuple[int, int, int, int]]] = []
    position = 0
    for share in shares:
        numbered.append([(position + i, p.start, p.end, p.first) for i, p in enumerate(share)])
        position += len(share)
    with _sigterm_interrupts(run):
        interrupted = _drive(numbered, str(path), state["seed"], args, make_client, receive, run)
    save(force=True)
    progress.update(run.total("lines"), run.total("read"), run.delivered(0), started, force=True)
    progress.finish()
    seconds = time.monotonic() - started
    return _summarize(args, run, skipped, seconds, state_path, state["seed"], interrupted=interrupted)


@contextlib.contextmanager
def _sigterm_interrupts(run: _Run) -> Iterator[None]:
    """Make SIGTERM stop the run as Ctrl-C does (marks saved, workers told), until the block ends."""
    if threading.current_thread() is not threading.main_thread():
        yield  # handlers can only be set from the main thread
        return

    def on_term(signum: int, frame: object) -> None:  # noqa: ARG001 - the handler signature
        run.terminated = True
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _drive(  # noqa: C901, PLR0913 - the run's parts, handed on; the wait and its endings
    numbered: list[list[tuple[int, int, int, int]]],
    path: str,
    seed: str,
    args: Any,  # noqa: ANN401
    make_client: MakeClient,
    receive: Callable[[tuple[Any, ...]], None],
    run: _Run,
) -> bool:
    """Run the workers (in this process when there is one) until they end; return whether interrupted."""
    if len(numbered) <= 1:
        for index, share in enumerate(numbered):
            _work(index, path, share, seed, args, make_client, receive)
        return "interrupted" in run.endings.values()
    # spawn, not fork: the parent may have threads (a test's server), and a fresh interpreter is cheap
    # next to a backfill.
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    workers = [
        context.Process(target=_worker_main, args=(i, path, share, seed, args, make_client, queue), daemon=True)
        for i, share in enumerate(numbered)
    ]
    for worker in workers:
        worker.start()
    interrupted = False
    deadline = None
    while len(run.endings) < len(workers):
        try:
            receive(queue.get(timeout=0.2))
        except KeyboardInterrupt:
            interrupted = True
            deadline = time.monotonic() + _STOP_WAIT
            if run.terminated:  # SIGTERM reached this process only: pass the stop on, as Ctrl-C would
                _stop_workers(workers, run)
        except Empty:
            _notice_deaths(workers, queue, receive, run)
        if deadline is not None and time.monotonic() > deadline:
            break
    for worker in workers:
        worker.join(_STOP_WAIT if not interrupted else 1.0)
        if worker.is_alive():
            worker.kill()
            worker.join(1.0)
    with contextlib.suppress(Exception):
        queue.close()
    return interrupted or "interrupted" in run.endings.values()


def _stop_workers(workers: list[Any], run: _Run) -> None:
    for i, worker in enumerate(workers):
        if i not in run.endings and worker.pid is not None and worker.is_alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker.pid, signal.SIGINT)


def _notice_deaths(workers: list[Any], queue: Any, receive: Callable[[tuple[Any, ...]], None], run: _Run) -> None:  # noqa: ANN401
    """Mark workers that exited without their last report as died (killed); their last marks stand."""
    dead = [i for i, worker in enumerate(workers) if i not in run.endings and not worker.is_alive()]
    if not dead:
        return
    with contextlib.suppress(Empty):  # a report written just before the exit may still be in the pipe
        while True:
            receive(queue.get(timeout=0.1))
    for i in dead:
        if i not in run.endings:
            run.endings[i] = f"died (exit status {workers[i].exitcode})"
            receive(("say", f"worker {i + 1} {run.endings[i]}; run again with --resume"))


def _summarize(  # noqa: PLR0913
    args: Any,  # noqa: ANN401
    run: _Run,
    skipped: int,
    seconds: float,
    state_path: Path,
    seed: str,
    *,
    interrupted: bool,
) -> int:
    lines, bad, failed = run.total("lines"), run.total("bad"), run.total("failed")
    count, requests, sent_bytes = run.delivered(0), run.delivered(1), run.delivered(2)
    jobs = f"{len(run.endings)} jobs" if len(run.endings) != 1 else "1 job"
    if not run.endings:
        done = f"the last run did every line ({skipped} lines)" if args.resume else "the file has no lines"
        sys.stdout.write(f"nothing left to send: {done}\n")
        return _EXIT_OK
    if args.dry_run:
        count = lines - bad
        text = f"validated {count} lines of {lines} with {jobs}; dry run, nothing sent; {bad} bad lines"
    else:
        rate = count / max(seconds, 1e-9)
        text = (
            f"delivered {count} messages in {requests} requests ({sent_bytes} bytes) in {seconds:.2f} s "
            f"({rate:.0f} messages/s) with {jobs}; {bad} bad lines, {failed} failed; seed {seed}"
        )
    if skipped:
        text = f"resumed, {skipped} lines already done: {text}"
    died = [ending for ending in run.endings.values() if ending not in {"ok", "failed", "interrupted"}]
    if interrupted or died or failed:
        text += f"; not finished: run again with --resume (state in {state_path})"
    sys.stdout.write(text + "\n")
    if interrupted:
        return _EXIT_TERMINATED if run.terminated else _EXIT_INTERRUPTED
    if failed or died:
        return _EXIT_DELIVERY
    return _EXIT_USAGE if bad else _EXIT_OK
