"""``wattstream kafka``: the Kafka bus's commands.

``worker FUNCTION --bootstrap HOST:PORT``  one faust worker running FUNCTION's handler
``topics --bootstrap HOST:PORT``           create the stack's topics (and DLQs) if missing
``list``                                    the template's stream consumers

A worker binds to the running local stack (``wattstream stack up``, or the one
``wattstream run --bus kafka`` starts) or, with ``--stack-name``, to a CloudFormation
stack, exactly like a KCL consumer: handler, environment and mapping settings all come
from the deployed template.
"""

from __future__ import annotations

import logging
from pathlib import Path

import click

from wattstream.cli.common import bind_consumer, load_stack, local_settings
from wattstream.hosting.kafka.worker import (
    KafkaMappingHost,
    WorkerConfig,
    build_app,
    dlq_topic,
    run_app,
)
from wattstream.kafka.topics import (
    DEFAULT_PARTITIONS,
    ensure_topics,
    kafka_bus_environment,
    stream_topics,
    use_kafka_bus,
)

_BOOTSTRAP = click.option(
    "--bootstrap",
    envvar="KAFKA_BOOTSTRAP_SERVERS",
    required=True,
    metavar="HOST:PORT",
    help="Kafka bootstrap servers (or KAFKA_BOOTSTRAP_SERVERS).",
)
_PARTITIONS = click.option(
    "--partitions",
    default=DEFAULT_PARTITIONS,
    show_default=True,
    type=click.IntRange(1, 1024),
    help="Partitions of topics created here.",
)


@click.group()
def kafka() -> None:
    """Kafka-compatible bus: faust workers running the template's stream consumers."""


@kafka.command("worker")
@click.argument("function")
@_BOOTSTRAP
@_PARTITIONS
@click.option("--stack-name", default=None, help="CloudFormation stack (default: local).")
@click.option("--group-id", default=None, help="Consumer group (default: STACK-FUNCTION).")
@click.option(
    "--session-timeout",
    default=10.0,
    show_default=True,
    type=click.FloatRange(1.0, 300.0),
    help="Consumer group session timeout, seconds (a group joins in about half of it).",
)
@click.option(
    "--stats-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the mapping counters here (JSON) after every batch.",
)
@click.option("--loglevel", default="warn", show_default=True)
def worker(
    function: str,
    bootstrap: str,
    partitions: int,
    stack_name: str | None,
    group_id: str | None,
    session_timeout: float,
    stats_file: Path | None,
    loglevel: str,
) -> None:
    """Run FUNCTION's Lambda handler on its stream's topic until SIGTERM/Ctrl-C."""
    from shared.streams.kafka import KafkaDeadLetters, make_producer
    from wattstream.hosting.settler import MappingPolicy
    from wattstream.hosting.template import StackError

    logging.basicConfig(level=logging.INFO)
    try:
        binding, _, environment, name = bind_consumer(function, stack_name)
    except StackError as error:
        raise click.ClickException(str(error)) from error
    use_kafka_bus(bootstrap)
    environment = {**environment, **kafka_bus_environment(bootstrap)}
    topic = binding.stream_name
    ensure_topics(bootstrap, [topic, dlq_topic(topic)], partitions=partitions)
    policy = MappingPolicy.of(binding.mapping)
    host = KafkaMappingHost(
        binding.function_runner(runtime_environment=environment),
        stream_arn=binding.stream_arn,
        policy=policy,
        dead_letters=KafkaDeadLetters(dlq_topic(topic), make_producer(bootstrap)),
        stats_file=stats_file,
    )
    window = float(binding.mapping.properties.get("MaximumBatchingWindowInSeconds", 0) or 0)
    config = WorkerConfig(
        bootstrap=bootstrap,
        topic=topic,
        group_id=group_id or f"{name}-{function}",
        session_timeout_s=session_timeout,
        batching_window_s=window,
    )
    run_app(build_app(host, config), loglevel=loglevel)


@kafka.command("topics")
@_BOOTSTRAP
@_PARTITIONS
def topics(bootstrap: str, partitions: int) -> None:
    """Create the running local stack's topics and their dead-letter topics if missing."""
    description = load_stack(local_settings())
    names = stream_topics(description)
    ensure_topics(bootstrap, names + [dlq_topic(t) for t in names], partitions=partitions)
    for name in names:
        click.echo(f"{name}  {dlq_topic(name)}")


@kafka.command("list")
def list_consumers() -> None:
    """The template's stream consumers (each one runs as a worker)."""
    from wattstream.hosting.kcl.binding import kinesis_consumers
    from wattstream.hosting.template import load_template
    from wattstream.settings import LocalSettings

    for function, stream in sorted(
        kinesis_consumers(load_template(LocalSettings().template)).items()
    ):
        click.echo(f"{function:<28} {stream}")
