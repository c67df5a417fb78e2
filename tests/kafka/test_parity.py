"""Parity: the same two days of real readings through Kinesis/Lambda and Kafka/faust."""

from __future__ import annotations

from shared.streams.kafka import KafkaPublisher, make_producer
from testing.tansu import kafka_stack
from tests.kafka.pipeline import (
    archive_tables,
    documents,
    kafka_messages,
    readings_in,
    run_kinesis_path,
    start_workers,
    stop_workers,
    uci_days,
    wait_for_records,
)


def test_kafka_path_two_uci_days_same_archive_and_forecasts_as_kinesis(
    deploy_stack, clients, kafka_broker, tmp_path
):
    records = uci_days(2)
    kinesis_stack, stack = deploy_stack(), deploy_stack()
    _, lambda_forecasts = run_kinesis_path(
        kinesis_stack, records, clients, tmp_path / "checkpoints.json"
    )

    # Kafka / faust: one worker subprocess per consumer, same template, same handlers.
    bootstrap = kafka_broker.bootstrap
    kafka_stack(stack, bootstrap, tmp_path / "kafka")
    workers = start_workers(bootstrap, tmp_path / "kafka")
    try:
        KafkaPublisher(stack.outputs["ReadingsStreamName"], make_producer(bootstrap)).publish(
            records
        )
        for name in ("ArchiveFunction", "RealtimeFunction", "GatewayReadingsFunction"):
            wait_for_records(workers[name], len(records))
        wait_for_records(workers["GatewayForecastsFunction"], sum(lambda_forecasts.values()))
        stats = {name: w.stats() for name, w in workers.items()}
    finally:
        stop_workers(workers)
    topic = stack.outputs["ForecastsStreamName"]
    kafka_forecasts = documents(m.value() for m in kafka_messages(bootstrap, topic))

    assert sum(s["sent_to_destination"] for s in stats.values()) == 0
    lambda_archive = archive_tables(clients("s3"), kinesis_stack)
    kafka_archive = archive_tables(clients("s3"), stack)
    assert len(lambda_archive) == 2 * 2  # 2 households x 2 UTC days
    assert lambda_archive.keys() == kafka_archive.keys()
    for key, table in lambda_archive.items():
        assert table.equals(kafka_archive[key]), key
    assert sum(t.num_rows for t in kafka_archive.values()) == readings_in(records)
    assert lambda_forecasts  # the realtime model did forecast
    assert set(kafka_forecasts) == set(lambda_forecasts)
    assert max(kafka_forecasts.values()) == 1  # none published twice
