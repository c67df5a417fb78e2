"""Which bus a composition root publishes to: the ONE place that chooses, by configuration.

``STREAM_BUS=kinesis`` (the default, what the SAM template deploys) or ``STREAM_BUS=kafka``
with ``KAFKA_BOOTSTRAP_SERVERS=host:port``. The stream name is the topic name on Kafka,
so nothing downstream changes with the bus.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.settings import AwsSettings
from shared.streams.ports import StreamPublisher

__all__ = ["StreamBusSettings", "publisher_for"]


class StreamBusSettings(BaseSettings):
    """The stream bus of this process."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    bus: Literal["kinesis", "kafka"] = Field(default="kinesis", validation_alias="STREAM_BUS")
    kafka_bootstrap_servers: str | None = Field(
        default=None, validation_alias="KAFKA_BOOTSTRAP_SERVERS"
    )

    @model_validator(mode="after")
    def _kafka_needs_bootstrap(self) -> StreamBusSettings:
        if self.bus == "kafka" and not self.kafka_bootstrap_servers:
            raise ValueError("STREAM_BUS=kafka needs KAFKA_BOOTSTRAP_SERVERS=host:port")
        return self


def publisher_for(
    stream_name: str,
    aws: AwsSettings,
    settings: StreamBusSettings | None = None,
    *,
    ordered: bool = True,
) -> StreamPublisher:
    """The publisher of ``stream_name`` on the configured bus (built in composition roots).

    ``ordered=False`` is for streams whose consumers do not depend on the order of one
    partition key's records (they supersede by event time): Kinesis may then put several
    records of a key in one PutRecords request, so a household's records stay together in
    the consumer's batches instead of being spread over one request per record. A Kafka
    partition keeps its order either way.
    """
    settings = settings or StreamBusSettings()
    if settings.bus == "kafka":
        from shared.streams.kafka import KafkaPublisher, make_producer

        assert settings.kafka_bootstrap_servers  # checked by the validator
        return KafkaPublisher(stream_name, make_producer(settings.kafka_bootstrap_servers))
    from shared.streams.kinesis import KinesisPublisher

    return KinesisPublisher(stream_name, aws.client("kinesis"), preserve_order=ordered)
