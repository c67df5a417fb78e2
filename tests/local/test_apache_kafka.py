"""The Apache Kafka broker process: format, start, ready, clean stop; clear failures."""

from __future__ import annotations

import base64
import shutil

import pytest

from wattstream.local.apache_kafka import (
    ApacheKafkaBroker,
    KafkaUnavailable,
    cluster_id,
    kafka_libs,
    server_properties,
)


def test_kafka_libs_missing_jars_say_what_to_install(tmp_path):
    with pytest.raises(KafkaUnavailable, match="make kafka"):
        kafka_libs(tmp_path)


def test_cluster_id_is_16_bytes_base64url():
    value = cluster_id()
    assert len(base64.urlsafe_b64decode(value + "==")) == 16
    assert value != cluster_id()


def test_server_properties_one_combined_node_on_loopback(tmp_path):
    text = server_properties(host="127.0.0.1", port=1234, controller_port=5678, log_dir=tmp_path)
    settings = dict(line.split("=", 1) for line in text.splitlines())
    assert settings["process.roles"] == "broker,controller"
    assert settings["controller.quorum.voters"] == "1@127.0.0.1:5678"
    assert settings["advertised.listeners"] == "PLAINTEXT://127.0.0.1:1234"
    assert settings["offsets.topic.replication.factor"] == "1"


def test_apache_kafka_broken_jars_fail_start_with_the_log_tail(tmp_path):
    if shutil.which("java") is None:
        pytest.skip("needs `java` (Java 17+)")
    libs = tmp_path / "libs"
    libs.mkdir()
    (libs / "kafka_2.13-9.9.9.jar").write_bytes(b"not a jar")
    broker = ApacheKafkaBroker(tmp_path / "broker.log", work_dir=tmp_path / "b", libs=libs)
    with pytest.raises(RuntimeError, match="format failed") as error:
        broker.start(timeout_s=60)
    assert "kafka.tools.StorageTool" in str(error.value)  # the JVM's own complaint


def test_apache_kafka_starts_serves_metadata_and_stops_cleanly(tmp_path):
    try:
        kafka_libs()
    except KafkaUnavailable as error:
        pytest.skip(str(error))
    from confluent_kafka.admin import AdminClient

    broker = ApacheKafkaBroker(tmp_path / "broker.log", work_dir=tmp_path / "b")
    broker.start()
    try:
        assert broker.name.startswith("apache-kafka 4.")
        metadata = AdminClient({"bootstrap.servers": broker.bootstrap}).list_topics(timeout=10)
        assert list(metadata.brokers) == [1]
    finally:
        code = broker.stop()
    assert code in (0, 143)  # SIGTERM: controlled shutdown (0), or the JVM's 128+15
    assert "shut down completely" in (tmp_path / "broker.log").read_text()
