"""Backfills on any engine: send one partition's rows under stable messageIds.

:func:`send_partition` is the piece a distributed job calls once per partition
(:mod:`simple_segment.integrations.dask` is built on it).  It sends the rows, Segment
wire-format messages, with one :class:`~simple_segment.Client` in one ``batch()``
inside ``stable_ids(f"{seed}:{partition}")``: a row without its own ``messageId``
gets the same id every time its partition is sent, so when an engine runs a task
again (a lost worker, a pre-empted node, a re-run job) Segment de-duplicates what the
first run had stored.  Delivery failures and bad rows are reported in the returned
:class:`PartitionSummary`, never raised, so one partition cannot hide the others.

PySpark (the partition id from ``TaskContext``; the same seed on every run)::

    from pyspark import TaskContext
    from simple_segment.backfill import BackfillSummary, send_partition

    def send(rows):
        summary = send_partition(
            rows, write_key=WRITE_KEY, seed="orders-2024", partition=TaskContext.get().partitionId()
        )
        yield summary

    total = BackfillSummary.combine(df.rdd.mapPartitions(send).collect())
    print(total.messages, "delivered;", len(total.failed), "failed;", len(total.invalid), "invalid")

(``foreachPartition`` works the same when the summaries are not needed.)  The
condition for exactly-once: a partition holds the same rows, in the same order, each
time it runs; sort or partition deterministically before sending.

Since: 0.2.0
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

from ._backfill import BadRecordError, clean_row, position_id, record_call
from ._ids import stable_ids
from .client import Client
from .errors import ValidationError

__all__ = ["BackfillSummary", "InvalidRow", "PartitionSummary", "send_partition"]


@dataclasses.dataclass(frozen=True)
class InvalidRow:
    """A row that could not become a message: where it is and why.

    ``row`` is its position in the partition, counting from 0.  ``str()`` reads like
    ``simple-segment import``'s report of a bad line: ``partition 3 row 17: reason``.

    Since: 0.2.0
    """

    partition: int
    row: int
    reason: str

    def __str__(self) -> str:
        return f"partition {self.partition} row {self.row}: {self.reason}"


@dataclasses.dataclass(frozen=True)
class PartitionSummary:
    """What :func:`send_partition` did with one partition.

    ``rows`` read, ``messages`` delivered in ``requests`` (``bytes_sent`` body bytes),
    ``failed``: the messageIds of rows whose request failed after the client's
    retries, ``invalid``: the rows that are not valid messages.

    Since: 0.2.0
    """

    partition: int
    rows: int = 0
    messages: int = 0
    requests: int = 0
    bytes_sent: int = 0
    failed: tuple[str, ...] = ()
    invalid: tuple[InvalidRow, ...] = ()


@dataclasses.dataclass(frozen=True)
class BackfillSummary:
    """The partitions' summaries added up (see :meth:`combine`).

    Same fields as :class:`PartitionSummary`, with ``partitions`` (how many were
    added) in place of ``partition``.  ``ok`` is true when every row was delivered.

    Since: 0.2.0
    """

    partitions: int = 0
    rows: int = 0
    messages: int = 0
    requests: int = 0
    bytes_sent: int = 0
    failed: tuple[str, ...] = ()
    invalid: tuple[InvalidRow, ...] = ()

    @property
    def ok(self) -> bool:
        """Whether nothing failed and no row was invalid."""
        return not self.failed and not self.invalid

    @classmethod
    def combine(cls, summaries: Iterable[PartitionSummary | BackfillSummary]) -> BackfillSummary:
        """Add up partition summaries (or totals of them); invalid rows sorted by partition and row."""
        partitions = rows = messages = requests = bytes_sent = 0
        failed: list[str] = []
        invalid: list[InvalidRow] = []
        for summary in summaries:
            partitions += summary.partitions if isinstance(summary, BackfillSummary) else 1
            rows += summary.rows
            messages += summary.messages
            requests += summary.requests
            bytes_sent += summary.bytes_sent
            failed.extend(summary.failed)
            invalid.extend(summary.invalid)
        invalid.sort(key=lambda bad: (bad.partition, bad.row))
        return cls(partitions, rows, messages, requests, bytes_sent, tuple(failed), tuple(invalid))


def send_partition(
    rows: Iterable[object],
    *,
    write_key: str,
    host: str | None = None,
    seed: str | int,
    partition: int,
    **client_options: Any,  # noqa: ANN401 - passed straight to Client
) -> PartitionSummary:
    """Send one partition's rows in one batch, with messageIds derived from ``seed`` and ``partition``.

    ``rows`` are Segment wire-format messages (``type``, ``userId``/``anonymousId``,
    ``event``, ``properties``, ``traits``, ``timestamp``, ...), each a mapping or a
    PySpark ``Row``: absent values (None, NaN, NaT) are left out, nested fields may be
    dicts or JSON strings, and ``timestamp`` an ISO-8601 string or a datetime.  The row
    at position n (from 0) without a ``messageId`` of its own gets the n-th id of
    ``stable_ids(f"{seed}:{partition}")``, ``uuid5(STABLE_IDS_NAMESPACE,
    f"{seed}:{partition}:{n}")``, so the same rows in the same order get the same ids
    on every run (and a bad row fixed in between shifts no other row's id).

    One :class:`~simple_segment.Client` is made from ``write_key``, ``host`` and
    ``client_options`` (``gzip``, ``timeout``, ``max_retries``...; an ``on_error``
    given there is called too) and closed at the end.

    Raises :class:`~simple_segment.ConfigurationError` for bad client options.  A
    failed request or a bad row does not raise: see :class:`PartitionSummary`.

    Since: 0.2.0
    """
    failed: list[str] = []
    invalid: list[InvalidRow] = []
    their_on_error = client_options.pop("on_error", None)

    def on_error(exc: Exception, messages: list[Any]) -> None:
        failed.extend(str(msg.get("messageId")) for msg in messages)
        if their_on_error:
            their_on_error(exc, messages)

    count = 0
    scope = f"{seed}:{partition}"
    with Client(write_key, host=host, on_error=on_error, **client_options) as client, stable_ids(
        scope
    ), client.batch() as batch:
        for count, row in enumerate(rows, 1):
            try:
                call, kwargs = record_call(clean_row(row))
                if "message_id" not in kwargs:
                    # The id of the row's position, not of its rank among valid rows: a bad row fixed
                    # before a re-run must not shift the ids of the rows after it.
                    kwargs["message_id"] = position_id(scope, count - 1)
                getattr(batch, call)(**kwargs)
            except (BadRecordError, ValidationError) as exc:  # noqa: PERF203 - a bad row is reported, the rest go
                invalid.append(InvalidRow(partition, count - 1, str(exc)))
    return PartitionSummary(
        partition,
        rows=count,
        messages=batch.messages_sent,
        requests=batch.requests_sent,
        bytes_sent=batch.bytes_sent,
        failed=tuple(failed),
        invalid=tuple(invalid),
    )
