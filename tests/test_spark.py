"""``simple_segment.backfill.send_partition`` from PySpark's ``mapPartitions``, on a local Spark session.

The README's recipe, run for real: Spark's Python workers (processes of their own)
send each partition to a loopback FakeSegment under ``stable_ids(f"{seed}:{partition
id}")``; run twice, the job sends the same ids.

It runs in its own tox env, ``tox -e spark`` (it needs Java 17+ and pyspark, which
not every machine has), which sets ``SIMPLE_SEGMENT_SPARK=1``; in the default test
run the module is skipped with that instruction.  With the variable set, a missing
pyspark or Java fails the tests, saying how to get them.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from simple_segment._ids import STABLE_IDS_NAMESPACE
from simple_segment.backfill import BackfillSummary, send_partition
from simple_segment.testing import FakeSegment

if os.environ.get("SIMPLE_SEGMENT_SPARK") != "1":
    pytest.skip(
        "the PySpark test runs in its own env: tox -e spark (needs Java 17+; sets SIMPLE_SEGMENT_SPARK=1)",
        allow_module_level=True,
    )

try:
    from pyspark import TaskContext
    from pyspark.sql import Row, SparkSession
except ImportError as exc:
    pytest.fail(f"pip install pyspark (tox -e spark installs it): {exc}", pytrace=False)

if not (os.environ.get("JAVA_HOME") or shutil.which("java")):
    pytest.fail("Spark needs Java 17+: apt-get install -y openjdk-17-jre-headless, or set JAVA_HOME", pytrace=False)

WRITE_KEY = "spark-write-key"
SEED = "spark-backfill"


@pytest.fixture(scope="module")
def spark() -> Iterator[SparkSession]:
    with pytest.MonkeyPatch.context() as patch:
        for name in [name for name in os.environ if name.upper().endswith("_PROXY")]:
            patch.delenv(name)  # Spark's Python workers inherit this environment
        patch.setenv("SPARK_LOCAL_IP", "127.0.0.1")  # loopback only
        patch.setenv("TZ", "UTC")  # PySpark hands timestamps to Python as naive local times
        session = (
            SparkSession.builder.master("local[2]")
            .appName("simple-segment-test")
            .config("spark.ui.enabled", "false")
            .config("spark.sql.shuffle.partitions", "2")
            .getOrCreate()
        )
        try:
            yield session
        finally:
            session.stop()


def sender(url: str) -> Any:
    # The recipe from simple_segment.backfill's docstring.
    def send(rows: Any) -> Iterator[Any]:
        yield send_partition(rows, write_key=WRITE_KEY, host=url, seed=SEED, partition=TaskContext.get().partitionId())

    return send


def test_map_partitions_sends_each_row_once_under_stable_ids(spark: SparkSession, fake_segment: FakeSegment) -> None:
    """Three partitions of Rows (None absent, JSON-string properties, datetimes); twice, the same ids."""
    when = dt.datetime(2024, 5, 6, 7, 8, 9, tzinfo=dt.timezone.utc)
    rows = [
        Row(type="track", userId=f"s{i}", anonymousId=None, event="Backfilled", properties=f'{{"i": {i}}}', timestamp=when)
        for i in range(30)
    ]
    schema = "type string, userId string, anonymousId string, event string, properties string, timestamp timestamp"
    frame = spark.createDataFrame(rows, schema).repartition(3)
    partitions = frame.rdd.mapPartitions(lambda part: [[row.userId for row in part]]).collect()
    first = BackfillSummary.combine(frame.rdd.mapPartitions(sender(fake_segment.url)).collect())
    assert (first.partitions, first.messages, first.failed, first.invalid) == (3, 30, (), ())
    expected = {
        user: str(uuid.uuid5(STABLE_IDS_NAMESPACE, f"{SEED}:{p}:{n}"))
        for p, users in enumerate(partitions)
        for n, user in enumerate(users)
    }
    found = {m["userId"]: m["messageId"] for m in fake_segment.messages}
    assert found == expected
    sample = fake_segment.messages[0]
    assert "anonymousId" not in sample
    assert sample["properties"] == {"i": int(sample["userId"][1:])}
    assert sample["timestamp"] == "2024-05-06T07:08:09.000+00:00"
    second = BackfillSummary.combine(frame.rdd.mapPartitions(sender(fake_segment.url)).collect())
    assert second.messages == 30
    again: dict[str, set[str]] = {}
    for msg in fake_segment.messages:
        again.setdefault(msg["userId"], set()).add(msg["messageId"])
    assert again == {user: {ids} for user, ids in expected.items()}
