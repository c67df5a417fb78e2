"""The one skeleton of every Lambda shell: entry point, dependencies, deliveries, outcome.

Why: eight shells used to copy the same ~100-line frame (a deps dataclass, an outcome
dataclass, a record wrapper, a decorated handler factory, a cached default handler, a
clock), and the copies drifted (the gateway's readings consumer lost the partition-key
check). A shell is now a core call plus two factories handed to :class:`LambdaEntry`:

* ``build_deps(environment) -> deps``: the composition root; reads settings from the
  mapping it is given (never ``os.environ`` itself, see :func:`shared.settings.settings_from`);
* ``make_handler(deps) -> handler``: the undecorated handler over those deps;
  :func:`batch_handler` builds it for stream and queue consumers.

``LambdaEntry`` applies the Powertools decorators once, builds the deps on first use from
``os.environ`` (the Lambda sandbox), and offers :meth:`LambdaEntry.bind` (deps from a given
environment: what an in-process host calls once per function) and
:meth:`LambdaEntry.reset` (drop the cached deps).

>>> entry = LambdaEntry(lambda env: ShellDeps(), lambda deps: lambda event, context: {})
>>> isinstance(entry, LambdaEntry)
True
"""

from __future__ import annotations

import datetime as dt
import os
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Generic, Literal, TypeVar

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit
from aws_lambda_powertools.utilities.data_classes.kinesis_stream_event import (
    KinesisStreamEvent,
    KinesisStreamRecord,
)
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSEvent, SQSRecord

from shared.batch import MAX_TIMESTAMP_US, ReadingBatch
from shared.codec import CodecError, decode_record
from shared.lambda_batch import settle
from shared.schema import Quarantined, StreamCoordinates
from shared.validation import DEFAULT_LIMITS, SanityLimits, sanity_mask

__all__ = [
    "DEFAULT_METRICS_NAMESPACE",
    "BatchOutcome",
    "Delivery",
    "Environment",
    "Handler",
    "LambdaEntry",
    "ReadingsDecoded",
    "ShellDeps",
    "batch_handler",
    "decode_readings",
    "deliveries",
    "emit",
    "environment_or_process",
    "logger_for",
    "metrics_for",
    "set_aside",
    "skip_refused",
    "utc_now",
]

Handler = Callable[[dict[str, Any], Any], Any]
Environment = Mapping[str, str]
DEFAULT_METRICS_NAMESPACE: Final = "wattstream"  # the template's Globals
_SHOWN: Final = 3


def utc_now() -> dt.datetime:
    """The wall clock, aware (the default ``clock`` of every shell's deps)."""
    return dt.datetime.now(dt.UTC)


# ------------------------------------------------------------------------ dependencies


def environment_or_process(environment: Environment | None) -> Environment:
    """``environment``, or this process's own (``os.environ``: a Lambda sandbox's) if None."""
    return os.environ if environment is None else environment


def logger_for(environment: Environment) -> Logger:
    """A Powertools logger named and levelled by ``environment`` (not ``os.environ``)."""
    return Logger(
        service=environment.get("POWERTOOLS_SERVICE_NAME") or "service_undefined",
        level=environment.get("POWERTOOLS_LOG_LEVEL") or environment.get("LOG_LEVEL") or "INFO",
        sampling_rate=float(environment.get("POWERTOOLS_LOGGER_SAMPLE_RATE") or 0),
    )


def metrics_for(environment: Environment) -> EphemeralMetrics:
    """EMF metrics of ONE function, namespace and service from ``environment``.

    ``EphemeralMetrics``, not ``Metrics``: every ``Metrics`` instance of a process shares
    one class-level metric set, so two functions hosted in one process would flush each
    other's metrics.
    """
    return EphemeralMetrics(
        namespace=environment.get("POWERTOOLS_METRICS_NAMESPACE") or DEFAULT_METRICS_NAMESPACE,
        service=environment.get("POWERTOOLS_SERVICE_NAME") or "",
    )


@dataclass(frozen=True, kw_only=True)
class ShellDeps:
    """What every shell's deps carry besides its ports: telemetry and a clock.

    A shell's deps subclass this (``@dataclass(frozen=True)``); the fields are keyword-only
    so the subclass's own fields keep their order. Composition roots pass
    :func:`logger_for` and :func:`metrics_for` of their environment; the defaults suit tests
    (metrics in the ``wattstream`` namespace, read from nothing).
    """

    logger: Logger = field(default_factory=Logger)
    metrics: Metrics | EphemeralMetrics = field(default_factory=lambda: metrics_for({}))
    clock: Callable[[], dt.datetime] = utc_now


D = TypeVar("D", bound=ShellDeps)


class LambdaEntry(Generic[D]):
    """A template function's ``Handler``: a deps factory plus a handler factory.

    * ``entry(event, context)``: the Lambda entry point; deps are built on first use from
      ``os.environ`` and kept for the sandbox's life (one build even under concurrent calls);
    * ``entry.bind(environment)``: a handler over fresh deps built from ``environment``
      alone, for hosts that run several functions (or stacks) in one process;
    * ``entry.build(deps)``: a handler over given deps (tests, local tools);
    * ``entry.reset()``: drop the cached deps; the next call builds them again.

    Every handler it returns is wrapped once in Powertools' ``log_metrics`` and
    ``inject_lambda_context`` (with ``correlation_id_path`` for HTTP APIs).
    """

    def __init__(
        self,
        build_deps: Callable[[Environment], D],
        make_handler: Callable[[D], Handler],
        *,
        correlation_id_path: str | None = None,
    ) -> None:
        self.build_deps = build_deps
        self.make_handler = make_handler
        self.correlation_id_path = correlation_id_path
        self._handler: Handler | None = None
        self._lock = threading.Lock()

    def build(self, deps: D) -> Handler:
        """The decorated handler over ``deps``."""
        handle = self.make_handler(deps)
        inject = deps.logger.inject_lambda_context(correlation_id_path=self.correlation_id_path)
        return deps.metrics.log_metrics(inject(handle))

    def bind(self, environment: Environment) -> Handler:
        """A handler over deps built from ``environment`` only (nothing from ``os.environ``)."""
        return self.build(self.build_deps(dict(environment)))

    def reset(self) -> None:
        """Forget the deps built for ``os.environ``; the next invocation builds new ones."""
        with self._lock:
            self._handler = None

    def __call__(self, event: dict[str, Any], context: Any) -> Any:
        handler = self._handler
        if handler is None:
            with self._lock:
                if self._handler is None:
                    self._handler = self.bind(os.environ)
                handler = self._handler
        return handler(event, context)

    def __repr__(self) -> str:
        return f"LambdaEntry({getattr(self.build_deps, '__qualname__', self.build_deps)!r})"


# -------------------------------------------------------------------------- deliveries


@dataclass(frozen=True)
class Delivery:
    """One delivered record: its bytes, where it came from, and when it arrived.

    ``item_id`` is what a partial batch response names: the Kinesis sequence number, or
    the SQS message id.
    """

    data: bytes
    source: str  # "kinesis:<stream>" or "sqs:<queue>": a quarantined item's source
    coordinates: StreamCoordinates
    arrived_at: dt.datetime | None = None

    @classmethod
    def from_kinesis(cls, record: KinesisStreamRecord | dict[str, Any]) -> Delivery:
        record = record if isinstance(record, KinesisStreamRecord) else KinesisStreamRecord(record)
        stream = record.event_source_arn.rsplit("/", 1)[-1]
        arrived = record.raw_event.get("kinesis", {}).get("approximateArrivalTimestamp")
        return cls(
            data=record.kinesis.data_as_bytes(),
            source=f"kinesis:{stream}",
            coordinates=StreamCoordinates(
                stream=stream,
                shard_or_partition=record.event_id.partition(":")[0],
                sequence_or_offset=record.kinesis.sequence_number,
                partition_key=record.kinesis.partition_key,
            ),
            arrived_at=None
            if arrived is None
            else dt.datetime.fromtimestamp(float(arrived), dt.UTC),
        )

    @classmethod
    def from_sqs(cls, record: SQSRecord | dict[str, Any]) -> Delivery:
        record = record if isinstance(record, SQSRecord) else SQSRecord(record)
        sent = (record.raw_event.get("attributes") or {}).get("SentTimestamp")
        return cls(
            data=record.body.encode(),
            source=f"sqs:{record.event_source_arn.rsplit(':', 1)[-1]}",
            coordinates=StreamCoordinates(
                stream=record.event_source_arn,
                shard_or_partition="sqs",
                sequence_or_offset=record.message_id,
            ),
            arrived_at=dt.datetime.fromtimestamp(int(sent) / 1000, dt.UTC) if sent else None,
        )

    @property
    def item_id(self) -> str:
        return self.coordinates.sequence_or_offset

    @property
    def stream(self) -> str:
        return self.coordinates.stream

    @property
    def shard(self) -> str:
        return self.coordinates.shard_or_partition

    @property
    def partition_key(self) -> str | None:
        return self.coordinates.partition_key

    @property
    def text(self) -> str:
        return self.data.decode()

    def quarantined(
        self, reason: str, now: dt.datetime, *, source: str | None = None
    ) -> Quarantined:
        """This record refused, with its original bytes, ``reason`` and coordinates."""
        return Quarantined(
            original=self.data,
            reason=reason[:4000],
            source=source or self.source,
            coordinates=self.coordinates,
            quarantined_at=now,
        )


def deliveries(event: Mapping[str, Any], *, kinesis: bool) -> list[Delivery]:
    """The records of a Kinesis (``kinesis=True``) or SQS Lambda event, in delivery order."""
    if kinesis:
        return [Delivery.from_kinesis(r) for r in KinesisStreamEvent(dict(event)).records]
    return [Delivery.from_sqs(r) for r in SQSEvent(dict(event)).records]


# --------------------------------------------------------------------- readings records


@dataclass(frozen=True)
class ReadingsDecoded:
    """A ``readings`` record after the shared checks.

    ``batch`` holds the readings to use (None: the whole record is refused); ``code`` and
    ``reason`` say what was refused, if anything: ``undecodable``, ``wrong_partition_key``
    (the record is refused) or ``insane_readings`` (``rejected`` readings are dropped, the
    rest are in ``batch``).
    """

    delivery: Delivery
    batch: ReadingBatch | None
    code: Literal["undecodable", "wrong_partition_key", "insane_readings"] | None = None
    reason: str | None = None
    household_id: str | None = None
    rejected: int = 0
    examples: tuple[str, ...] = ()


def decode_readings(delivery: Delivery, limits: SanityLimits = DEFAULT_LIMITS) -> ReadingsDecoded:
    """Decode a ``readings`` record: codec, partition key == household, physical rules.

    Every ``readings`` consumer reads records this one way. The clock rule is not
    re-applied (``now_us`` at the end of time): whether a reading was too far in the
    future was ingest's call, with its clock, when it was published. A record under
    another household's partition key is refused: a household keeps one key, so one
    shard, so one writer per household downstream.
    """
    try:
        batch = decode_record(delivery.data)
    except CodecError as error:
        return ReadingsDecoded(
            delivery,
            None,
            "undecodable",
            f"undecodable record ({error.code}): {error.reason}",
        )
    household = batch.household_id
    if household != delivery.partition_key:
        return ReadingsDecoded(
            delivery,
            None,
            "wrong_partition_key",
            f"wrong partition key: {delivery.partition_key!r} is not the record's household "
            f"{household!r} (a household keeps one key, one shard, one archive writer)",
            household,
        )
    ok, rejected = sanity_mask(batch, now_us=MAX_TIMESTAMP_US, limits=limits)
    if not rejected:
        return ReadingsDecoded(delivery, batch, household_id=household)
    shown = "; ".join(f"row {row}: {r.code}: {r.reason}" for row, r in rejected[:_SHOWN])
    more = len(rejected) - _SHOWN
    return ReadingsDecoded(
        delivery,
        batch.take(ok),
        "insane_readings",
        f"{len(rejected)} of {len(batch)} readings refused (the record's other readings "
        f"were used): {shown}{f' (+{more} more)' if more > 0 else ''}",
        household,
        len(rejected),
        tuple(f"row {row}: {r.code}" for row, r in rejected[:_SHOWN]),
    )


def skip_refused(
    decoded: ReadingsDecoded, *, logger: Logger, counts: Counter[str], consumer: str
) -> None:
    """Log and count what :func:`decode_readings` refused, for consumers that skip it.

    Only the archive consumer quarantines ``readings`` records (one copy of each poison
    record, with its bytes); the others log it with the coordinates, count it
    (``RecordsUndecodable``, ``ReadingsRejected``) and go on.
    """
    if decoded.code is None:
        return
    where = {
        **decoded.delivery.coordinates.model_dump(mode="json"),
        "consumer": consumer,
        "household_id": decoded.household_id,
        "reason": decoded.reason,
    }
    if decoded.code == "undecodable":
        counts["RecordsUndecodable"] += 1
        logger.error(
            "undecodable record skipped (quarantined by the archive consumer)", extra=where
        )
    elif decoded.code == "wrong_partition_key":
        counts["RecordsUndecodable"] += 1
        logger.error(
            "record under another household's partition key skipped "
            "(quarantined by the archive consumer)",
            extra=where,
        )
    else:
        counts["ReadingsRejected"] += decoded.rejected
        logger.warning(
            "insane readings skipped (quarantined by the archive consumer)",
            extra={**where, "rejected": decoded.rejected, "examples": list(decoded.examples)},
        )


# ---------------------------------------------------------------------------- outcomes


@dataclass
class BatchOutcome:
    """What one batch did: failed items (sequence number / message id -> reason), counters.

    ``counts`` become EMF metrics of the same names (:func:`emit`).
    """

    failed: dict[str, str] = field(default_factory=dict)
    counts: Counter[str] = field(default_factory=Counter)

    @classmethod
    def counting(cls, *names: str) -> BatchOutcome:
        """An outcome whose ``names`` are emitted even when they stay 0."""
        return cls(counts=Counter(dict.fromkeys(names, 0)))

    def fail(self, item_ids: Iterable[str], reason: str) -> None:
        """Mark items failed; an item keeps its first reason."""
        for item_id in item_ids:
            self.failed.setdefault(item_id, reason)


def set_aside(
    refused: Sequence[tuple[Delivery, Quarantined]],
    write: Callable[[list[Quarantined]], object],
    outcome: BatchOutcome,
    logger: Logger,
    *,
    counter: str = "Quarantined",
    sink: str = "quarantine",
) -> None:
    """Write the refused items (a quarantine or reject sink); if that fails, fail their records.

    Errors are data: a refused record is acknowledged only once its bytes and reason are
    kept; if the sink fails, the records are retried (never dropped).
    """
    if not refused:
        return
    try:
        write([item for _, item in refused])
        outcome.counts[counter] += len(refused)
    except Exception as error:  # retried, never dropped
        logger.exception(f"{sink} failed; the refused records will be retried")
        outcome.fail((record.item_id for record, _ in refused), f"{sink} failed: {error}")


def emit(
    outcome: BatchOutcome, deps: ShellDeps, message: str, *, failed_metric: str = "RecordsFailed"
) -> None:
    """The outcome's counters (and ``failed_metric``) as EMF metrics and one log line."""
    counts = {**outcome.counts, failed_metric: len(outcome.failed)}
    for name, value in counts.items():
        deps.metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
    deps.logger.info(message, extra=counts)


def batch_handler(
    process: Callable[[Sequence[Delivery], D], BatchOutcome],
    *,
    kinesis: bool,
    message: str,
    failed_metric: str = "RecordsFailed",
) -> Callable[[D], Handler]:
    """``make_handler`` of a stream or queue consumer: deliveries -> ``process`` -> reply.

    The reply is Lambda's partial batch response (:func:`shared.lambda_batch.settle`), so a
    failed item is retried and never acknowledged; the counters are emitted first.
    """

    def make_handler(deps: D) -> Handler:
        def handle(event: dict[str, Any], context: Any) -> dict[str, Any]:
            outcome = process(deliveries(event, kinesis=kinesis), deps)
            emit(outcome, deps, message, failed_metric=failed_metric)
            return settle(event, context, outcome.failed, kinesis=kinesis)

        return handle

    return make_handler
