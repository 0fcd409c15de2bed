"""Dask: send a bag or a data-frame of Segment messages, exactly once per row.

::

    import dask.bag as db
    from simple_segment.integrations.dask import send

    events = db.read_text("s3://bucket/events-*.jsonl").map(json.loads)
    summary = send(events, write_key=WRITE_KEY, seed="events-2024-05")
    print(summary.messages, "delivered;", len(summary.failed), "failed;", len(summary.invalid), "invalid")

Each partition is one task that sends its rows with one ``Client`` in one
``batch()`` inside ``stable_ids(f"{seed}:{partition_index}")``
(:func:`simple_segment.backfill.send_partition`), where the index is the partition's
position in ``collection.to_delayed()``.  A row without its own ``messageId`` gets
the same id each time its partition runs: when Dask runs a task again after losing a
worker, or you run the whole job again after a failure, Segment de-duplicates what
was already stored.  Keep the same ``seed`` and the same partitioning (the same
rows, in the same order, in each partition) between runs.

Works with a ``dask.distributed.Client`` (the summary is added up on the cluster)
and with the local schedulers.  Importing this module needs Dask (``pip install
'simple-segment[dask]'``); importing :mod:`simple_segment` never imports it.

Since: 0.2.0
"""

from __future__ import annotations

from typing import Any

from dask.delayed import Delayed, delayed

from simple_segment.backfill import BackfillSummary, PartitionSummary, send_partition

__all__ = ["send"]


def _rows(part: Any) -> Any:  # noqa: ANN401 - a bag's list or a pandas DataFrame
    """Return a partition's rows: a bag partition as it is, a pandas DataFrame as dicts (one per row)."""
    if hasattr(part, "columns") and hasattr(part, "to_dict"):
        return part.to_dict(orient="records")
    return part


def _send(part: Any, index: int, options: dict[str, Any]) -> PartitionSummary:  # noqa: ANN401 - see _rows
    return send_partition(_rows(part), partition=index, **options)


def _combine(summaries: list[PartitionSummary]) -> BackfillSummary:
    return BackfillSummary.combine(summaries)


def send(
    collection: Any,  # noqa: ANN401 - a dask.bag.Bag or a dask.dataframe.DataFrame; Dask's own types are loose
    *,
    write_key: str,
    host: str | None = None,
    seed: str | int,
    **client_options: Any,  # noqa: ANN401 - passed straight to Client
) -> BackfillSummary:
    """Send every row of ``collection`` and return what was delivered, failed and invalid.

    ``collection`` is a ``dask.bag.Bag`` of Segment wire-format message dicts (the
    lines ``simple-segment import`` reads) or a ``dask.dataframe.DataFrame`` with those
    columns (nested fields as dicts or JSON strings; NaN and NaT are absent values;
    ``timestamp`` an ISO-8601 string or a datetime).  ``write_key``, ``host`` and
    ``client_options`` make each partition's ``Client``; they must pickle, to reach the
    workers.  Computes with the current scheduler (a ``distributed.Client`` if one is
    active) and blocks until every partition is done.

    The :class:`~simple_segment.backfill.BackfillSummary` counts each partition's
    final run once: ``.messages`` delivered, ``.requests``, ``.failed`` (the
    undelivered rows' messageIds; a failed delivery is reported there, not raised)
    and ``.invalid`` (rows that are not valid messages, as
    :class:`~simple_segment.backfill.InvalidRow`: ``partition P row R: reason``).

    Raises :class:`TypeError` when ``collection`` has no ``to_delayed()``, and
    :class:`~simple_segment.ConfigurationError` for bad client options (checked
    before anything is computed).

    Since: 0.2.0
    """
    to_delayed = getattr(collection, "to_delayed", None)
    if to_delayed is None:
        raise TypeError(f"send() takes a dask.bag.Bag or a dask.dataframe.DataFrame, not {type(collection).__name__}")
    from simple_segment import Client  # noqa: PLC0415 - the check below only

    # Fail here, once, rather than in every task: a bad option is the caller's to fix.
    Client(write_key, host=host, send=False, **{k: v for k, v in client_options.items() if k != "send"}).close()
    options = {"write_key": write_key, "host": host, "seed": seed, **client_options}
    parts: list[Delayed] = list(to_delayed())
    tasks = [
        delayed(_send, pure=False)(part, index, options)
        for index, part in enumerate(parts)
    ]
    total = delayed(_combine, pure=False)(tasks)
    result = total.compute()
    if not isinstance(result, BackfillSummary):  # pragma: no cover - the graph above returns one
        raise TypeError(f"unexpected result {result!r}")
    return result
