"""The archive consumer's Lambda shell: a checked-in Kinesis event, then the local runner."""

from __future__ import annotations

import base64
import datetime as dt
import io
import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
from aws_lambda_powertools import Logger, Metrics

from services.ingest.adapters.archive_store import S3ArchiveStore
from services.ingest.core.archive import (
    DailySummary,
    DayKey,
    StoredDay,
    StreamPosition,
    split_by_day,
)
from services.ingest.shells.archive_lambda import ArchiveDeps, deps_from_environment
from services.ingest.shells.archive_lambda import handler as archive_entry
from shared.archive_parquet import ARCHIVE_SCHEMA, decode_day, from_table
from shared.batch import ReadingBatch, datetime_to_us
from shared.codec import encode_batch
from shared.publishing import stream_records
from shared.quarantine import read_quarantine_object
from shared.streams.kinesis import KinesisPublisher
from shared.streams.ports import StreamRecord
from shared.uci import iter_uci
from shared.validation import SanityLimits
from tests.conftest import APRIL_2007
from tests.lambda_events import (
    SHARD,
    kinesis_fixture_event,
    load_fixture_event,
    sequences,
)
from tests.services.ingest.fakes import MemoryQuarantine
from wattstream.hosting.lambda_model import LambdaContext
from wattstream.hosting.template import StackDescription
from wattstream.local.runner import EventSourceRunner

MINUTE_US = 60_000_000


# ------------------------------------------------------------------------ the test event


def _utc(text: str) -> int:
    return datetime_to_us(dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC))


def _uci_rows(stamps: list[str], power: list[float], voltage: list[float]) -> ReadingBatch:
    n = len(stamps)
    return ReadingBatch(
        "uci-sceaux",
        np.array([_utc(s) for s in stamps]),
        {
            "global_active_power_kw": np.array(power),
            "global_reactive_power_kw": np.full(n, 0.1),
            "voltage_v": np.array(voltage),
            "global_intensity_a": np.full(n, 6.2),
            "sub_metering_1_wh": np.zeros(n),
            "sub_metering_2_wh": np.ones(n),
            "sub_metering_3_wh": np.full(n, 1.0),
        },
    )


ORIGINAL = _uci_rows(
    ["2007-04-01T23:58", "2007-04-01T23:59", "2007-04-02T00:00", "2007-04-02T00:01"],
    [1.25, 1.5, 2.5, 2.25],
    [240.1, 240.2, 240.3, 240.4],
)
HALF_HOURS = ReadingBatch(
    "MAC000002",
    np.array([_utc("2013-01-01T00:00"), _utc("2013-01-01T00:30"), _utc("2013-01-01T01:00")]),
    {"energy_kwh": np.array([0.219, 0.241, 0.191]), "interval_s": np.full(3, 1800.0)},
)
#: A correction of 00:00 (published after the original) plus a late reading of noon.
CORRECTION = _uci_rows(["2007-04-02T00:00", "2007-04-01T12:00"], [4.0, 0.5], [239.0, 241.0])
#: Voltage 10,000 V breaks the shared physical rules; 00:03 is fine.
ONE_BAD_ROW = _uci_rows(["2007-04-02T00:02", "2007-04-02T00:03"], [1.0, 1.0], [10_000.0, 240.0])
POISON = b"\x89WSR\x01 this is not a record"


def build_event() -> dict[str, Any]:
    """The checked-in event: what Lambda delivers for these records, built with the codec."""
    (original,) = encode_batch(ORIGINAL)
    payloads = [
        ("uci-sceaux", original),
        ("MAC000002", encode_batch(HALF_HOURS)[0]),
        ("uci-sceaux", POISON),
        ("uci-sceaux", original),  # published twice
        ("uci-sceaux", encode_batch(CORRECTION)[0]),
        ("uci-sceaux", encode_batch(ONE_BAD_ROW)[0]),
    ]
    return kinesis_fixture_event(payloads, role="archive")


def load_event() -> dict[str, Any]:
    return load_fixture_event("kinesis_readings.json")


# ------------------------------------------------------------------------------- fakes


class MemoryArchiveStore:
    """The ArchiveStore port in memory; ``fail(operation, key)`` makes a call raise."""

    def __init__(self, fail: Callable[[str, DayKey], bool] = lambda op, key: False) -> None:
        self.days: dict[DayKey, StoredDay] = {}
        self.summaries: dict[DayKey, DailySummary] = {}
        self.day_writes: list[DayKey] = []
        self.summary_writes: list[DayKey] = []
        self.conflicts: list[tuple[DayKey, ReadingBatch, StreamPosition]] = []
        self.fail = fail

    def read_day(self, key: DayKey) -> StoredDay | None:
        if self.fail("read", key):
            raise OSError(f"cannot read {key}")
        return self.days.get(key)

    def write_day(self, key: DayKey, rows: ReadingBatch, *, merged_up_to: StreamPosition) -> str:
        if self.fail("write", key):
            raise OSError(f"cannot write {key}")
        self.days[key] = StoredDay(rows, merged_up_to)
        self.day_writes.append(key)
        return str(key)

    def write_conflicts(
        self, key: DayKey, replaced: ReadingBatch, *, replaced_by: StreamPosition
    ) -> str:
        if self.fail("conflicts", key):
            raise OSError(f"cannot write the conflicts of {key}")
        self.conflicts.append((key, replaced, replaced_by))
        return f"conflicts {key}"

    def write_summary(self, summary: DailySummary) -> bool:
        key = DayKey(summary.household_id, summary.date)
        if self.fail("summary", key):
            raise OSError(f"cannot write the summary of {key}")
        if self.summaries.get(key) == summary:
            return False
        self.summaries[key] = summary
        self.summary_writes.append(key)
        return True


def make_deps(store: Any, quarantine: Any) -> ArchiveDeps:
    return ArchiveDeps(
        store=store,
        quarantine=quarantine,
        logger=Logger(service="ingest-archive-test"),
        metrics=Metrics(namespace="wattstream-test", service="ingest-archive-test"),
        clock=lambda: dt.datetime(2024, 1, 1, tzinfo=dt.UTC),
    )


def context() -> LambdaContext:
    return LambdaContext(
        function_name="archive",
        invoked_function_arn="arn:aws:lambda:us-east-1:123456789012:function:archive",
        memory_limit_in_mb=512,
        timeout_s=60,
    )


def emitted_metrics(output: str) -> dict[str, float]:
    """The EMF metrics Powertools printed (one JSON document per flush)."""
    values: dict[str, float] = {}
    for line in output.splitlines():
        if line.startswith("{") and '"_aws"' in line:
            document = json.loads(line)
            for definition in document["_aws"]["CloudWatchMetrics"][0]["Metrics"]:
                (value,) = document[definition["Name"]]  # one value per metric and flush
                values[definition["Name"]] = value
    return values


def day(household: str, text: str) -> DayKey:
    return DayKey(household, dt.date.fromisoformat(text))


# ------------------------------------------------------------------- the checked-in event


def test_event_fixture_is_built_by_the_codec():
    assert load_event() == build_event()


def test_archive_handler_event_archives_by_household_day(capsys):
    store, quarantine = MemoryArchiveStore(), MemoryQuarantine()

    reply = archive_entry.build(make_deps(store, quarantine))(load_event(), context())

    assert reply == {"batchItemFailures": []}
    assert sorted(store.days) == [
        day("MAC000002", "2013-01-01"),
        day("uci-sceaux", "2007-04-01"),
        day("uci-sceaux", "2007-04-02"),
    ]
    april_1 = store.days[day("uci-sceaux", "2007-04-01")].rows
    assert april_1.timestamps_us.tolist() == [
        _utc("2007-04-01T12:00"),  # late and out of order: placed by timestamp
        _utc("2007-04-01T23:58"),
        _utc("2007-04-01T23:59"),
    ]
    april_2 = store.days[day("uci-sceaux", "2007-04-02")].rows
    assert april_2.timestamps_us.tolist() == [
        _utc("2007-04-02T00:00"),
        _utc("2007-04-02T00:01"),
        _utc("2007-04-02T00:03"),  # 00:02 had 10,000 V: quarantined, never archived
    ]
    assert april_2.columns["global_active_power_kw"].tolist() == [4.0, 2.25, 1.0]  # last wins
    position = store.days[day("uci-sceaux", "2007-04-02")].merged_up_to
    assert position == StreamPosition("readings", SHARD, int(sequences(load_event())[5]))
    metrics = emitted_metrics(capsys.readouterr().out)
    assert metrics["ReadingsArchived"] == 9
    assert metrics["DuplicatesDropped"] == 5  # the record published twice, and 00:00
    assert metrics["ObjectsWritten"] == 7  # three days, three summaries, one conflicts record
    assert metrics["Quarantined"] == 2
    # what "last wins" replaced is kept on record, not lost
    assert metrics["ConflictsRecorded"] == 1
    [(where, replaced, by)] = store.conflicts
    assert where == day("uci-sceaux", "2007-04-02")
    assert by == position
    # the original 00:00 (published twice: one record) lost to the correction
    assert replaced.timestamps_us.tolist() == [_utc("2007-04-02T00:00")]
    assert replaced.columns["global_active_power_kw"].tolist() == [2.5]


def test_archive_handler_event_energy_only_meter_summary():
    store = MemoryArchiveStore()

    archive_entry.build(make_deps(store, MemoryQuarantine()))(load_event(), context())

    summary = store.summaries[day("MAC000002", "2013-01-01")]
    assert summary.kwh == pytest.approx(0.219 + 0.241 + 0.191)
    assert summary.peak_kw == pytest.approx(0.241 * 2)  # 0.241 kWh in half an hour
    assert summary.coverage == pytest.approx(3 / 48)
    assert summary.readings == 3
    assert summary.last_timestamp == dt.datetime(2013, 1, 1, 1, 0, tzinfo=dt.UTC)


def test_archive_handler_event_quarantines_poison_and_bad_rows_with_coordinates():
    quarantine = MemoryQuarantine()
    event = load_event()

    archive_entry.build(make_deps(MemoryArchiveStore(), quarantine))(event, context())

    poison, bad_row = quarantine.items
    assert poison.original == POISON
    assert poison.reason.startswith("undecodable record")
    assert poison.source == "kinesis:readings"
    assert poison.coordinates is not None
    assert poison.coordinates.model_dump() == {
        "schema_version": 1,
        "stream": "readings",
        "shard_or_partition": SHARD,
        "sequence_or_offset": sequences(event)[2],
        "partition_key": "uci-sceaux",
    }
    assert bad_row.original == base64.b64decode(event["Records"][5]["kinesis"]["data"])
    assert "1 of 2 readings refused" in bad_row.reason
    assert "implausible_voltage" in bad_row.reason


def test_archive_handler_undigestible_record_is_quarantined_and_its_day_proceeds(capsys):
    # GIVEN limits so lax that a reading implying an infinite power passes the decode check
    # (the energy_kwh 1e306 over interval_s 1e308: DailySummary.peak_kw is inf)
    lax = SanityLimits(max_interval_s=1e308)
    poison = ReadingBatch(
        "uci-sceaux",
        np.array([_utc("2007-04-02T00:05")]),
        {"energy_kwh": np.array([1e306]), "interval_s": np.array([1e308])},
    )
    payloads = [
        ("uci-sceaux", encode_batch(ORIGINAL)[0]),
        ("uci-sceaux", encode_batch(poison)[0]),
        ("uci-sceaux", encode_batch(CORRECTION)[0]),
    ]
    event = kinesis_fixture_event(payloads, role="archive")
    store, quarantine = MemoryArchiveStore(), MemoryQuarantine()
    deps = replace(make_deps(store, quarantine), limits=lax)

    reply = archive_entry.build(deps)(event, context())

    # THEN only the poison record is quarantined; every valid reading of its day is archived
    assert reply == {"batchItemFailures": []}
    (item,) = quarantine.items
    assert item.original == base64.b64decode(event["Records"][1]["kinesis"]["data"])
    assert item.reason.startswith("undigestible: 1 readings of uci-sceaux 2007-04-02")
    assert item.coordinates is not None
    assert item.coordinates.sequence_or_offset == sequences(event)[1]
    april_2 = store.days[day("uci-sceaux", "2007-04-02")].rows
    assert april_2.timestamps_us.tolist() == [_utc("2007-04-02T00:00"), _utc("2007-04-02T00:01")]
    assert store.summaries[day("uci-sceaux", "2007-04-02")].peak_kw == 4.0


def test_archive_handler_record_under_another_households_key_is_quarantined():
    event = load_event()
    event["Records"] = event["Records"][:1]
    event["Records"][0]["kinesis"]["partitionKey"] = "MAC000002"
    store, quarantine = MemoryArchiveStore(), MemoryQuarantine()

    reply = archive_entry.build(make_deps(store, quarantine))(event, context())

    assert reply == {"batchItemFailures": []}
    assert store.days == {}
    (item,) = quarantine.items
    assert item.reason.startswith("wrong partition key")


def test_archive_handler_failed_household_day_fails_only_its_records():
    event = load_event()
    store = MemoryArchiveStore(fail=lambda op, key: key == day("uci-sceaux", "2007-04-01"))

    reply = archive_entry.build(make_deps(store, MemoryQuarantine()))(event, context())

    seq = sequences(event)
    # records 0, 3 and 4 hold readings of 1 April; the others are archived or quarantined
    assert reply == {"batchItemFailures": [{"itemIdentifier": seq[i]} for i in (0, 3, 4)]}
    assert day("uci-sceaux", "2007-04-02") in store.days
    assert day("MAC000002", "2013-01-01") in store.days


def test_archive_handler_all_records_failed_reports_them_instead_of_raising():
    store = MemoryArchiveStore(fail=lambda op, key: True)
    event = load_event()
    event["Records"] = event["Records"][:2]

    reply = archive_entry.build(make_deps(store, MemoryQuarantine()))(event, context())

    assert reply == {"batchItemFailures": [{"itemIdentifier": s} for s in sequences(event)]}


def test_archive_handler_quarantine_failure_retries_the_refused_records():
    event = load_event()

    reply = archive_entry.build(make_deps(MemoryArchiveStore(), MemoryQuarantine(fail=True)))(
        event, context()
    )

    seq = sequences(event)
    assert reply == {"batchItemFailures": [{"itemIdentifier": seq[2]}, {"itemIdentifier": seq[5]}]}


def test_archive_handler_redelivered_batch_rewrites_nothing(capsys):
    store = MemoryArchiveStore()
    handler = archive_entry.build(make_deps(store, MemoryQuarantine()))
    handler(load_event(), context())
    archived = dict(store.days)
    writes = len(store.day_writes) + len(store.summary_writes)
    capsys.readouterr()

    reply = handler(load_event(), context())

    assert reply == {"batchItemFailures": []}
    assert len(store.day_writes) + len(store.summary_writes) == writes
    assert store.days == archived
    metrics = emitted_metrics(capsys.readouterr().out)
    assert metrics["ReadingsArchived"] == 0
    assert metrics["DuplicatesDropped"] == 14  # every sane reading of the batch


def test_archive_handler_redelivered_original_cannot_undo_a_later_correction():
    # GIVEN the batch archived, 00:00 corrected to 4.0 kW by record 4
    store = MemoryArchiveStore()
    handler = archive_entry.build(make_deps(store, MemoryQuarantine()))
    event = load_event()
    handler(event, context())
    writes = len(store.day_writes)

    # WHEN record 0 (the original 2.5 kW) comes again alone, e.g. after a bisect
    handler({"Records": event["Records"][:1]}, context())

    # THEN the object already holds it (stream position): nothing reverts, nothing is written
    april_2 = store.days[day("uci-sceaux", "2007-04-02")].rows
    assert april_2.columns["global_active_power_kw"][0] == 4.0
    assert len(store.day_writes) == writes


def test_archive_handler_retry_after_partial_failure_equals_clean_run():
    event = load_event()
    clean = MemoryArchiveStore()
    archive_entry.build(make_deps(clean, MemoryQuarantine()))(event, context())
    failures = iter([True])  # the first write of 2 April fails, then S3 recovers
    store = MemoryArchiveStore(
        fail=lambda op, key: (
            op == "write" and key == day("uci-sceaux", "2007-04-02") and next(failures, False)
        )
    )
    handler = archive_entry.build(make_deps(store, MemoryQuarantine()))

    reply = handler(event, context())
    lowest = sequences(event).index(reply["batchItemFailures"][0]["itemIdentifier"])
    retry = {"Records": event["Records"][lowest:]}  # Lambda retries from the lowest failure
    assert handler(retry, context()) == {"batchItemFailures": []}

    assert lowest == 0
    assert store.summaries == clean.summaries
    for key, stored in clean.days.items():
        np.testing.assert_array_equal(store.days[key].rows.timestamps_us, stored.rows.timestamps_us)
        for name, column in stored.rows.columns.items():
            np.testing.assert_array_equal(store.days[key].rows.columns[name], column)


def test_archive_handler_summary_lost_between_writes_is_repaired_on_retry():
    event = load_event()
    failures = iter([True])
    store = MemoryArchiveStore(
        fail=lambda op, key: (
            op == "summary" and key.household_id == "MAC000002" and next(failures, False)
        )
    )
    handler = archive_entry.build(make_deps(store, MemoryQuarantine()))

    first = handler(event, context())
    assert first == {"batchItemFailures": [{"itemIdentifier": sequences(event)[1]}]}
    assert day("MAC000002", "2013-01-01") not in store.summaries
    handler({"Records": event["Records"][1:]}, context())

    assert store.day_writes.count(day("MAC000002", "2013-01-01")) == 1  # skipped: merged
    assert store.summaries[day("MAC000002", "2013-01-01")].readings == 3


# ------------------------------------------------------------------------------ the runner


def runner_for(
    stack: StackDescription, clients: Any, tmp_path: Path, handler: Any, name: str = "c"
) -> EventSourceRunner:
    return EventSourceRunner(
        stack,
        clients=clients,
        checkpoint_path=tmp_path / f"{name}.json",
        handlers={"ArchiveFunction": handler},
        functions={"ArchiveFunction"},
        idle_sleep_s=0.01,
        max_backoff_s=0.01,
    )


def april_batch() -> ReadingBatch:
    return ReadingBatch.concat([chunk.readings for chunk in iter_uci(APRIL_2007)])


def publish(stack: StackDescription, clients: Any, records: list[StreamRecord]) -> None:
    KinesisPublisher(stack.outputs["ReadingsStreamName"], clients("kinesis")).publish(records)


def archive_contents(stack: StackDescription, clients: Any) -> dict[str, bytes]:
    """Every object of the archive bucket, by key."""
    s3, bucket = clients("s3"), stack.outputs["ArchiveBucketName"]
    contents = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for item in page.get("Contents", []):
            contents[item["Key"]] = s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
    return contents


def s3_deps(stack: StackDescription, clients: Any, quarantine: Any = None) -> ArchiveDeps:
    store = S3ArchiveStore(stack.outputs["ArchiveBucketName"], s3=clients("s3"))
    return make_deps(store, quarantine or MemoryQuarantine())


def test_archive_lambda_april_slice_round_trip(deploy_stack, clients, tmp_path):
    stack = deploy_stack()
    source = april_batch()
    publish(stack, clients, stream_records([source]))
    runner = runner_for(stack, clients, tmp_path, archive_entry.build(s3_deps(stack, clients)))

    runner.drain(timeout_s=120)

    contents = archive_contents(stack, clients)
    tables = [pq.read_table(io.BytesIO(v)) for k, v in contents.items() if k.endswith(".parquet")]
    assert all(table.schema.equals(ARCHIVE_SCHEMA) for table in tables)
    archived = ReadingBatch.concat(sorted((from_table(t) for t in tables), key=_first_stamp))
    assert len(archived) == len(source) == 39_477
    np.testing.assert_array_equal(archived.timestamps_us, source.timestamps_us)
    for name, column in source.columns.items():
        np.testing.assert_array_equal(archived.columns[name], column)  # bit for bit, NaN too
    summaries = {
        k: DailySummary.model_validate_json(v) for k, v in contents.items() if k.endswith(".json")
    }
    expected = {d: rows for d, rows in split_by_day(source)}
    # UTC days: 31 March (the first local hour) to 30 April; 28 and 29 April UTC fall
    # entirely inside the 3,723-minute gap, so there is nothing to summarise for them.
    assert len(summaries) == len(expected) == 29
    for d, rows in expected.items():
        summary = summaries[f"summaries/household=uci-sceaux/date={d.isoformat()}.json"]
        power = rows.columns["global_active_power_kw"]
        assert summary.kwh == pytest.approx(np.sum(power * 60 / 3600), rel=1e-12)
        assert summary.peak_kw == power.max()
        assert summary.coverage == len(rows) / 1440
        assert summary.readings == len(rows)
    assert summaries["summaries/household=uci-sceaux/date=2007-04-27.json"].coverage == 1401 / 1440
    assert summaries["summaries/household=uci-sceaux/date=2007-04-30.json"].coverage == 576 / 1440
    assert runner.stats()["ArchiveFunctionReadings"].sent_to_destination == 0


def _first_stamp(batch: ReadingBatch) -> int:
    return int(batch.timestamps_us[0])


def test_archive_lambda_redelivery_is_byte_for_byte_a_clean_run(deploy_stack, clients, tmp_path):
    source = april_batch().slice(0, 10 * 1440)  # ten local days
    records = stream_records([source], readings_per_record=720)
    clean = deploy_stack(parameters={"ReadingsShardCount": "1"})
    publish(clean, clients, records)
    runner_for(clean, clients, tmp_path, archive_entry.build(s3_deps(clean, clients)), "a").drain(
        timeout_s=120
    )

    # GIVEN a faulty S3 (one Parquet write and one summary write fail once) and three
    # records published twice
    stack = deploy_stack(parameters={"ReadingsShardCount": "1"})
    publish(stack, clients, records + records[3:6])
    store = S3ArchiveStore(stack.outputs["ArchiveBucketName"], s3=clients("s3"))
    flaky = FlakyStore(store, {("write", "2007-04-05"), ("summary", "2007-04-08")})
    first = runner_for(
        stack, clients, tmp_path, archive_entry.build(make_deps(flaky, MemoryQuarantine())), "b"
    )
    first.drain(timeout_s=120)
    assert first.stats()["ArchiveFunctionReadings"].partial_failures >= 1
    assert flaky.faults == set()  # both faults happened
    after_first = archive_contents(stack, clients)

    # WHEN a restart lost its checkpoints: every record is delivered again
    counting = CountingS3(clients("s3"))
    replay = S3ArchiveStore(stack.outputs["ArchiveBucketName"], s3=counting)
    runner_for(
        stack, clients, tmp_path, archive_entry.build(make_deps(replay, MemoryQuarantine())), "c"
    ).drain(timeout_s=120)

    # THEN the archive is byte for byte the clean run's, and the replay wrote nothing
    assert archive_contents(stack, clients) == after_first == archive_contents(clean, clients)
    assert counting.puts == 0


class FlakyStore:
    """Wraps a store; each ``(operation, day)`` in ``faults`` fails once, then works."""

    def __init__(self, store: Any, faults: set[tuple[str, str]]) -> None:
        self.store = store
        self.faults = faults

    def _maybe_fail(self, operation: str, day: dt.date) -> None:
        if (operation, day.isoformat()) in self.faults:
            self.faults.discard((operation, day.isoformat()))
            raise OSError("S3 is having a bad day")

    def read_day(self, key: DayKey) -> StoredDay | None:
        return self.store.read_day(key)

    def write_day(self, key: DayKey, rows: ReadingBatch, *, merged_up_to: StreamPosition) -> str:
        self._maybe_fail("write", key.day)
        return self.store.write_day(key, rows, merged_up_to=merged_up_to)

    def write_summary(self, summary: DailySummary) -> bool:
        self._maybe_fail("summary", summary.date)
        return self.store.write_summary(summary)


class CountingS3:
    """An S3 client that counts PutObject calls (everything else passes through)."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.puts = 0

    def put_object(self, **kwargs: Any) -> Any:
        self.puts += 1
        return self.client.put_object(**kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)


def test_archive_lambda_poison_record_is_quarantined_and_shard_moves_on(
    deploy_stack, clients, tmp_path
):
    stack = deploy_stack(parameters={"ReadingsShardCount": "1"})
    good = stream_records([april_batch().slice(0, 3 * 1440)], readings_per_record=1440)
    publish(stack, clients, [good[0], StreamRecord("uci-sceaux", b"\x00poison"), *good[1:]])
    quarantine = MemoryQuarantine()
    runner = runner_for(
        stack, clients, tmp_path, archive_entry.build(s3_deps(stack, clients, quarantine))
    )

    runner.drain(timeout_s=120)

    (item,) = quarantine.items
    assert item.original == b"\x00poison"
    assert item.source == f"kinesis:{stack.outputs['ReadingsStreamName']}"
    assert item.coordinates is not None
    assert item.coordinates.shard_or_partition == "shardId-000000000000"
    assert item.coordinates.partition_key == "uci-sceaux"
    contents = archive_contents(stack, clients)
    archived = sum(
        pq.read_metadata(io.BytesIO(v)).num_rows
        for k, v in contents.items()
        if k.endswith("parquet")
    )
    assert archived == 3 * 1440
    stats = runner.stats()["ArchiveFunctionReadings"]
    assert (stats.function_errors, stats.partial_failures, stats.sent_to_destination) == (0, 0, 0)


def test_archive_lambda_composition_root_wires_s3_and_the_quarantine(
    deploy_stack, clients, aws, monkeypatch
):
    stack = deploy_stack()
    sqs = clients("sqs")
    queue = stack.outputs["QuarantineQueueUrl"].rsplit("/", 1)[1]
    bucket = stack.outputs["ArchiveBucketName"]
    environment = {
        "READINGS_STREAM_NAME": stack.outputs["ReadingsStreamName"],
        "RAW_BUCKET": stack.outputs["RawBucketName"],
        "ARCHIVE_BUCKET": bucket,
        "QUARANTINE_QUEUE_URL": sqs.get_queue_url(QueueName=queue)["QueueUrl"],
        "AWS_ENDPOINT_URL": aws.endpoint_url,
        "AWS_REGION": "us-east-1",
        "POWERTOOLS_SERVICE_NAME": "ingest-archive",
        "POWERTOOLS_METRICS_NAMESPACE": "wattstream-test",
    }
    for name, value in environment.items():
        monkeypatch.setenv(name, value)

    reply = archive_entry.build(deps_from_environment())(load_event(), context())

    assert reply == {"batchItemFailures": []}
    contents = archive_contents(stack, clients)
    keys = {k for k in contents if not k.startswith(("quarantine/", "conflicts/"))}
    (conflicts,) = [k for k in contents if k.startswith("conflicts/")]
    assert conflicts.startswith("conflicts/household=uci-sceaux/date=2007-04-02/")
    assert decode_day(contents[conflicts]).columns["global_active_power_kw"].tolist() == [2.5]
    assert keys == {
        "readings/household=MAC000002/date=2013-01-01/data.parquet",
        "readings/household=uci-sceaux/date=2007-04-01/data.parquet",
        "readings/household=uci-sceaux/date=2007-04-02/data.parquet",
        "summaries/household=MAC000002/date=2013-01-01.json",
        "summaries/household=uci-sceaux/date=2007-04-01.json",
        "summaries/household=uci-sceaux/date=2007-04-02.json",
    }
    messages = sqs.receive_message(
        QueueUrl=environment["QUARANTINE_QUEUE_URL"], MaxNumberOfMessages=10
    )["Messages"]
    # one pointer to one object for the batch: the poison record and the one with 10,000 V
    (message,) = messages
    pointer = json.loads(message["Body"])
    assert pointer["items"] == 2
    assert len(read_quarantine_object(contents[pointer["key"]])) == 2
