"""kill -9 of faust workers mid-stream, then a restart: nothing lost, nothing doubled.

The realtime window state lives in the same DynamoDB state port as on Lambda (no faust
Table, so no changelog recovery that trusts the broker's end offsets), and every check
counts exactly: an offset bug that skipped or replayed records would show here.
"""

from __future__ import annotations

import threading
import time

from shared.streams.kafka import KafkaPublisher, make_producer
from shared.streams.ports import StreamRecord
from testing.tansu import kafka_stack
from tests.kafka.pipeline import (
    archive_tables,
    documents,
    kafka_messages,
    readings_in,
    run_kinesis_path,
    scan,
    start_workers,
    stop_workers,
    uci_days,
    wait_idle,
)

CONSUMERS = ("ArchiveFunction", "RealtimeFunction", "GatewayForecastsFunction")
KILLED = ("ArchiveFunction", "RealtimeFunction")


def test_kafka_workers_killed_mid_stream_and_restarted_lose_and_double_nothing(
    deploy_stack, clients, kafka_broker, tmp_path
):
    # 5 readings per record: a batch of 500 never holds more than 48 h of one household,
    # so no step is superseded and the forecasts do not depend on where batches were cut.
    records = uci_days(3, households=("uci-a", "uci-b", "uci-c", "uci-d"), per_record=5)
    reference_stack, stack = deploy_stack(), deploy_stack()
    _, expected_forecasts = run_kinesis_path(
        reference_stack, records, clients, tmp_path / "checkpoints.json", CONSUMERS
    )
    bootstrap = kafka_broker.bootstrap
    kafka_stack(stack, bootstrap, tmp_path / "kafka")
    publisher = KafkaPublisher(stack.outputs["ReadingsStreamName"], make_producer(bootstrap))
    workers = start_workers(bootstrap, tmp_path / "kafka", CONSUMERS)
    half = len(records) // 2
    realtime = workers["RealtimeFunction"]

    def feed(part: list[StreamRecord]) -> None:
        for start in range(0, len(part), 40):
            publisher.publish(part[start : start + 40])
            time.sleep(0.05)

    try:
        feeder = threading.Thread(target=feed, args=(records[:half],))
        feeder.start()
        realtime.wait_until(lambda s: s["records"] >= half // 2, timeout_s=90)
        for name in KILLED:  # kill -9 while the first half is still being consumed
            workers[name].kill()
        killed_at = realtime.stats()["records"]
        feeder.join(60)
        for name in KILLED:
            workers[name].start()
        feed(records[half:])  # the restarted workers get the rest for sure
        for name in CONSUMERS:
            wait_idle(workers[name], quiet_s=4.0)
        restarted = {name: workers[name].stats() for name in KILLED}
    finally:
        stop_workers(workers)

    assert len(latest_forecasts(clients, reference_stack)) == 4
    assert all(w.starts == 2 for n, w in workers.items() if n in KILLED)
    assert all(s["sent_to_destination"] == 0 for s in restarted.values())
    # Archive: every reading exactly once, same content as the uninterrupted Kinesis run.
    archive = archive_tables(clients("s3"), stack)
    reference = archive_tables(clients("s3"), reference_stack)
    assert sum(t.num_rows for t in archive.values()) == readings_in(records)
    assert archive.keys() == reference.keys()
    for key, table in archive.items():
        assert table.equals(reference[key]), key
    # Forecasts: the same set as without the kill; duplicates on the topic are identical
    # copies (a batch redelivered after the kill), counted here, upserted downstream.
    topic = stack.outputs["ForecastsStreamName"]
    published = documents(m.value() for m in kafka_messages(bootstrap, topic))
    assert set(published) == set(expected_forecasts)
    duplicates = sum(published.values()) - len(published)
    print(
        f"killed after {killed_at} of {len(records)} records; forecasts: {len(published)} "
        f"unique, {duplicates} duplicates on the topic"
    )
    # Query store: each household's latest forecast, identical to the reference run's.
    assert latest_forecasts(clients, stack) == latest_forecasts(clients, reference_stack)


def latest_forecasts(clients, stack) -> dict[str, str]:
    table = stack.outputs["GatewayTableName"]
    items = scan(clients("dynamodb"), table, lambda i: i["sk"]["S"] == "FORECAST")
    return {i["pk"]["S"]: i["doc"]["S"] for i in items}
