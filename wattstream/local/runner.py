"""The local event-source runner: Lambda's pollers, in-process, with AWS semantics.

moto cannot run Lambda code without Docker, so this module plays the part of the
Lambda service for the local stack. It reads each function's ``Handler``/``CodeUri`` and
its event source mappings from the deployed template (see :mod:`wattstream.local.stack`)
and calls the handlers in-process with Lambda-shaped events.

Kinesis mappings implement: per-shard polling with ``BatchSize``,
``MaximumBatchingWindowInSeconds`` and ``StartingPosition``; ``ReportBatchItemFailures``
(retry from the lowest failed sequence number); ``BisectBatchOnFunctionError`` (a failed
batch is split in two, which does not count as a retry); ``MaximumRetryAttempts``;
``MaximumRecordAgeInSeconds``; the ``OnFailure`` destination (SQS), which receives the
same batch-info document AWS sends; checkpoints persisted to a file so a restarted runner
resumes where it left off; shards processed sequentially, so one partition key (one
household) is always delivered in order. ``ParallelizationFactor`` is not emulated: each
shard is one sequential poller, which keeps per-key order, the property it must preserve.

SQS mappings (S3 object events arrive this way) implement batch size, the batching
window, ``ReportBatchItemFailures`` (only failed messages stay on the queue), and
redelivery after the queue's visibility timeout; the queue's own redrive policy moves a
message to its dead-letter queue after ``maxReceiveCount`` receives.
"""

from __future__ import annotations

import base64
import dataclasses
import importlib
import json
import logging
import os
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, nullcontext, redirect_stdout
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from botocore.exceptions import ClientError

from wattstream.local.stack import FunctionSpec, MappingSpec, StackDescription

log = logging.getLogger("wattstream.runner")

Handler = Callable[[dict[str, Any], Any], Any]
Clock = Callable[[], float]


# --- Invocation ---------------------------------------------------------------------------


@dataclass
class LambdaContext:
    """The attributes of Lambda's context object that handlers and Powertools read."""

    function_name: str
    invoked_function_arn: str
    memory_limit_in_mb: int
    timeout_s: int
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    function_version: str = "$LATEST"
    log_group_name: str = ""
    log_stream_name: str = "local-runner"
    _started: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        self.log_group_name = f"/aws/lambda/{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.timeout_s - (time.monotonic() - self._started)) * 1000))


@dataclass(frozen=True)
class InvokeResult:
    """How an invocation ended: a response, or a function error with its reason."""

    response: Any = None
    error: str | None = None
    duration_s: float = 0.0

    @property
    def failed(self) -> bool:
        return self.error is not None


_ENV_LOCK = threading.RLock()


@contextmanager
def function_environment(variables: Mapping[str, str]) -> Iterator[None]:
    """Give the handler its own environment, as its Lambda sandbox would have."""
    with _ENV_LOCK:
        saved = {k: os.environ.get(k) for k in variables}
        os.environ.update(variables)
        try:
            yield
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


def resolve_handler(spec: FunctionSpec, template_dir: Path) -> Handler:
    """Import ``module.attr`` from the Handler; ``CodeUri`` is the import root, as on Lambda.

    Resolving a handler starts a fresh sandbox: a shell builds its dependencies once, on
    first use, from the environment (``_default_handler``), which on Lambda serves one stack
    for the sandbox's life. In-process runs meet several stacks (tests, benchmarks), so the
    cached dependencies are dropped here and rebuilt for the stack the runner serves now.
    """
    module_name, _, attr = spec.handler.rpartition(".")
    if not module_name:
        raise ValueError(f"{spec.logical_id}: Handler {spec.handler!r} is not module.function")
    code_root = str((template_dir / spec.code_uri).resolve())
    if code_root not in sys.path:
        sys.path.append(code_root)
    module = importlib.import_module(module_name)
    cached_dependencies = getattr(module, "_default_handler", None)
    if callable(getattr(cached_dependencies, "cache_clear", None)):
        cached_dependencies.cache_clear()
    handler = getattr(module, attr, None)
    if not callable(handler):
        raise ValueError(f"{spec.logical_id}: {spec.handler!r} is not a callable handler")
    return handler


class Function:
    """A template function bound to its handler: invoked the way Lambda invokes it.

    Its environment is the template's variables plus what the Lambda runtime sets
    (region, function name, and ``AWS_ENDPOINT_URL`` so its clients reach the local
    stack). With ``log`` its stdout (Powertools logs and EMF metrics) goes to that file,
    as it would go to CloudWatch Logs, instead of the terminal.
    """

    def __init__(
        self,
        spec: FunctionSpec,
        handler: Handler,
        *,
        runtime_environment: Mapping[str, str] | None = None,
        log: TextIO | None = None,
    ) -> None:
        self.spec = spec
        self._handler = handler
        self._environment = {
            "AWS_LAMBDA_FUNCTION_NAME": spec.name,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory_mb),
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            **(runtime_environment or {}),
            **spec.environment,
        }
        self._log = log

    def invoke(self, event: dict[str, Any]) -> InvokeResult:
        context = LambdaContext(
            function_name=self.spec.name,
            invoked_function_arn=self.spec.arn,
            memory_limit_in_mb=self.spec.memory_mb,
            timeout_s=self.spec.timeout_s,
        )
        started = time.monotonic()
        output = redirect_stdout(self._log) if self._log else nullcontext()
        with function_environment(self._environment), output:
            try:
                response = self._handler(event, context)
                json.dumps(response)  # Lambda must serialise the reply, or the call fails
            except Exception as error:
                log.exception("%s failed", self.spec.logical_id)
                if self._log:
                    traceback.print_exc(file=self._log)
                return InvokeResult(
                    error=f"{type(error).__name__}: {error}",
                    duration_s=time.monotonic() - started,
                )
        duration = time.monotonic() - started
        if duration > self.spec.timeout_s:
            return InvokeResult(
                error=f"Task timed out after {self.spec.timeout_s} seconds", duration_s=duration
            )
        return InvokeResult(response=response, duration_s=duration)


def batch_item_failures(response: Any, identifiers: list[str]) -> set[str] | None:
    """The failed item ids of a partial batch response, or None if the reply is invalid.

    Lambda treats a malformed reply, or an id that is not in the batch, as a failure of
    the whole batch; we do the same (None).
    """
    if response is None:
        return set()
    if not isinstance(response, dict) or "batchItemFailures" not in response:
        return set()
    failures = response["batchItemFailures"]
    if not isinstance(failures, list):
        return None
    result = set()
    known = set(identifiers)
    for failure in failures:
        item = failure.get("itemIdentifier") if isinstance(failure, dict) else None
        if not isinstance(item, str) or item not in known:
            return None
        result.add(item)
    return result


# --- Checkpoints ------------------------------------------------------------------------


class FileCheckpointStore:
    """Per-shard positions in a JSON file, replaced atomically after every batch."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._data: dict[str, dict[str, Any]] = (
            json.loads(path.read_text()) if path.exists() else {}
        )

    def get(self, key: str) -> dict[str, Any]:
        with self._lock:
            return dict(self._data.get(key, {}))

    def put(self, key: str, **values: Any) -> None:
        with self._lock:
            self._data.setdefault(key, {}).update(values)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(f".{threading.get_ident()}.tmp")
            tmp.write_text(json.dumps(self._data, indent=1, sort_keys=True))
            os.replace(tmp, self.path)


# --- Kinesis ------------------------------------------------------------------------------


@dataclass
class MappingStats:
    """Counters shown by ``wattstream status`` and asserted by tests."""

    invocations: int = 0
    records: int = 0
    function_errors: int = 0
    partial_failures: int = 0
    bisects: int = 0
    sent_to_destination: int = 0
    millis_behind_latest: int = 0


def _epoch(value: Any) -> float:
    return value.timestamp() if isinstance(value, datetime) else float(value)


class KinesisShard:
    """One shard of one mapping: fetch, batch, invoke, retry, checkpoint."""

    def __init__(self, poller: KinesisPoller, shard_id: str) -> None:
        self.poller = poller
        self.shard_id = shard_id
        self.key = f"{poller.mapping.logical_id}|{poller.stream_arn}|{shard_id}"
        self.buffer: list[dict[str, Any]] = []
        self.iterator: str | None = None
        self.reached_end = False
        self.attempts = 0
        self.splits: list[int] = []
        self.not_before = 0.0
        self.buffered_since: float | None = None

    @property
    def finished(self) -> bool:
        return bool(self.poller.checkpoints.get(self.key).get("ended"))

    def _fresh_iterator(self) -> str:
        poller = self.poller
        saved = poller.checkpoints.get(self.key)
        after = self.buffer[-1]["SequenceNumber"] if self.buffer else saved.get("sequence")
        args: dict[str, Any] = {"StreamName": poller.stream_name, "ShardId": self.shard_id}
        if after:
            args.update(ShardIteratorType="AFTER_SEQUENCE_NUMBER", StartingSequenceNumber=after)
        else:
            position = poller.properties.get("StartingPosition", "LATEST")
            if position == "AT_TIMESTAMP":
                args.update(
                    ShardIteratorType="AT_TIMESTAMP",
                    Timestamp=poller.properties["StartingPositionTimestamp"],
                )
            elif position == "LATEST":
                # Remember when we started so a restart before the first record loses nothing.
                started = saved.get("latest_since") or poller.clock()
                poller.checkpoints.put(self.key, latest_since=started)
                args.update(ShardIteratorType="AT_TIMESTAMP", Timestamp=started)
            else:
                args.update(ShardIteratorType="TRIM_HORIZON")
        return poller.kinesis.get_shard_iterator(**args)["ShardIterator"]

    def _fetch(self) -> None:
        batch_size = self.poller.batch_size
        if self.reached_end or len(self.buffer) >= batch_size:
            return
        if self.iterator is None:
            self.iterator = self._fresh_iterator()
        try:
            reply = self.poller.kinesis.get_records(
                ShardIterator=self.iterator, Limit=min(10_000, batch_size - len(self.buffer))
            )
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "ExpiredIteratorException":
                self.iterator = None
                return
            raise
        records = reply.get("Records", [])
        if records and not self.buffer:
            self.buffered_since = self.poller.clock()
        self.buffer.extend(records)
        self.poller.stats.millis_behind_latest = int(reply.get("MillisBehindLatest", 0))
        self.iterator = reply.get("NextShardIterator")
        if self.iterator is None:
            self.reached_end = True

    def _checkpoint(self, sequence: str) -> None:
        self.poller.checkpoints.put(self.key, sequence=sequence)

    def _consume(self, count: int) -> None:
        """Drop ``count`` handled records from the front, checkpointing the last."""
        if count <= 0:
            return
        self._checkpoint(self.buffer[count - 1]["SequenceNumber"])
        del self.buffer[:count]
        if self.splits:
            self.splits[0] -= count
            if self.splits[0] <= 0:
                self.splits.pop(0)
        self.buffered_since = self.poller.clock() if self.buffer else None

    def _give_up(self, records: list[dict[str, Any]], condition: str, error: str) -> None:
        self.poller.send_to_destination(self.shard_id, records, condition, error, self.attempts)
        self.attempts = 0
        self._consume(len(records))

    def step(self) -> int:
        """Do one unit of work; returns how many records were handled (0 when idle)."""
        poller = self.poller
        now = poller.clock()
        if now < self.not_before:
            return 0
        self._fetch()
        if not self.buffer:
            if self.reached_end and not self.finished:
                poller.checkpoints.put(self.key, ended=True)
            return 0
        window = float(poller.properties.get("MaximumBatchingWindowInSeconds", 0) or 0)
        full = len(self.buffer) >= poller.batch_size
        waited = now - (self.buffered_since or now)
        if not full and not self.reached_end and waited < window:
            return 0
        size = min(self.splits[0] if self.splits else poller.batch_size, len(self.buffer))
        batch = self.buffer[:size]
        max_age = int(poller.properties.get("MaximumRecordAgeInSeconds", -1) or -1)
        if max_age >= 0:
            expired = [r for r in batch if now - _epoch(r["ApproximateArrivalTimestamp"]) > max_age]
            if expired:  # arrival order: the expired records are a prefix
                self._give_up(expired, "RecordAgeExceeded", "record older than the maximum age")
                return len(expired)
        return self._invoke(batch)

    def _invoke(self, batch: list[dict[str, Any]]) -> int:
        poller = self.poller
        result = poller.function.invoke(poller.event(self.shard_id, batch))
        poller.stats.invocations += 1
        sequences = [r["SequenceNumber"] for r in batch]
        failed: set[str] | None = set()
        if not result.failed and poller.reports_item_failures:
            failed = batch_item_failures(result.response, sequences)
        if not result.failed and failed == set():
            self.attempts = 0
            self._consume(len(batch))
            poller.stats.records += len(batch)
            return len(batch)
        if not result.failed and failed:
            poller.stats.partial_failures += 1
            first = min(sequences.index(s) for s in failed)
            self.attempts = 1 if first > 0 else self.attempts + 1
            self._consume(first)
            poller.stats.records += first
            remaining = batch[first:]
            if self._exhausted():
                self._give_up(remaining, "RetryAttemptsExhausted", "partial batch failure")
            else:
                self._backoff()
            return first
        error = result.error or "invalid batchItemFailures in the function response"
        poller.stats.function_errors += 1
        if poller.properties.get("BisectBatchOnFunctionError") and len(batch) > 1:
            half = len(batch) // 2  # splitting does not count against the retry quota
            if self.splits:
                self.splits[0:1] = [half, len(batch) - half]
            else:
                self.splits = [half, len(batch) - half]
            poller.stats.bisects += 1
            return 0
        self.attempts += 1
        if self._exhausted():
            self._give_up(batch, "RetryAttemptsExhausted", error)
            return len(batch)
        self._backoff()
        return 0

    def _exhausted(self) -> bool:
        limit = int(self.poller.properties.get("MaximumRetryAttempts", -1))
        return limit >= 0 and self.attempts > limit

    def _backoff(self) -> None:
        self.not_before = self.poller.clock() + min(
            self.poller.max_backoff_s, 0.05 * 2 ** min(self.attempts, 10)
        )


class KinesisPoller:
    """One Kinesis event source mapping: its shards, in order, with resharding."""

    def __init__(
        self,
        mapping: MappingSpec,
        function: Function,
        *,
        kinesis: Any,
        sqs: Any,
        region: str,
        checkpoints: FileCheckpointStore,
        clock: Clock = time.time,
        max_backoff_s: float = 1.0,
    ) -> None:
        self.mapping = mapping
        self.properties = mapping.properties
        self.function = function
        self.kinesis = kinesis
        self.sqs = sqs
        self.region = region
        self.checkpoints = checkpoints
        self.clock = clock
        self.max_backoff_s = max_backoff_s
        self.stream_arn = mapping.source_arn
        self.stream_name = self.stream_arn.rsplit("/", 1)[1]
        self.batch_size = int(self.properties.get("BatchSize", 100))
        self.reports_item_failures = "ReportBatchItemFailures" in self.properties.get(
            "FunctionResponseTypes", []
        )
        self.stats = MappingStats()
        self.shards: dict[str, KinesisShard] = {}
        self._listed_at = -1e9

    def _refresh_shards(self) -> None:
        if self.clock() - self._listed_at < 5 and self.shards:
            return
        self._listed_at = self.clock()
        listed = self.kinesis.list_shards(StreamName=self.stream_name)["Shards"]
        known = {s["ShardId"] for s in listed}
        for shard in listed:
            if shard["ShardId"] in self.shards:
                continue
            parents = [
                shard.get(k) for k in ("ParentShardId", "AdjacentParentShardId") if shard.get(k)
            ]
            ready = all(
                p not in known
                or self.checkpoints.get(f"{self.mapping.logical_id}|{self.stream_arn}|{p}").get(
                    "ended"
                )
                for p in parents
            )
            if ready:  # children wait until their parents are read to the end: key order
                self.shards[shard["ShardId"]] = KinesisShard(self, shard["ShardId"])

    def poll_once(self) -> int:
        self._refresh_shards()
        handled = 0
        for shard in list(self.shards.values()):
            if shard.finished:
                continue
            handled += shard.step()
            if shard.reached_end and not shard.buffer:
                shard.step()  # records the end, so children may start
                self._listed_at = -1e9
        return handled

    @property
    def buffered(self) -> int:
        return sum(len(s.buffer) for s in self.shards.values())

    def event(self, shard_id: str, records: list[dict[str, Any]]) -> dict[str, Any]:
        """A Lambda Kinesis event, exactly as the Lambda service shapes it."""
        return kinesis_event(
            records,
            shard_id=shard_id,
            stream_arn=self.stream_arn,
            function_arn=self.function.spec.arn,
            region=self.region,
        )

    def send_to_destination(
        self,
        shard_id: str,
        records: list[dict[str, Any]],
        condition: str,
        error: str,
        attempts: int,
    ) -> None:
        """The on-failure record AWS sends: batch coordinates, not the data itself."""
        self.stats.sent_to_destination += len(records)
        destination = (
            self.properties.get("DestinationConfig", {}).get("OnFailure", {}).get("Destination")
        )
        log.warning(
            "%s: %d records of %s skipped (%s: %s)%s",
            self.mapping.logical_id,
            len(records),
            shard_id,
            condition,
            error,
            f" -> {destination}" if destination else " and DISCARDED (no OnFailure destination)",
        )
        if not destination:
            return
        document = failure_document(
            records,
            shard_id=shard_id,
            stream_arn=self.stream_arn,
            function_arn=self.function.spec.arn,
            condition=condition,
            error=error,
            attempts=attempts,
        )
        self.sqs.send_message(
            QueueUrl=queue_url(self.sqs, destination), MessageBody=json.dumps(document)
        )


def kinesis_event(
    records: list[dict[str, Any]],
    *,
    shard_id: str,
    stream_arn: str,
    function_arn: str,
    region: str,
) -> dict[str, Any]:
    """A Lambda Kinesis event of GetRecords-shaped records (``PartitionKey``, ``Data``, ...).

    Shared with the KCL host (:mod:`wattstream.kcl`), so a handler sees the same event
    from the local runner, from Lambda and from a KCL worker.
    """
    return {
        "Records": [
            {
                "kinesis": {
                    "kinesisSchemaVersion": "1.0",
                    "partitionKey": r["PartitionKey"],
                    "sequenceNumber": r["SequenceNumber"],
                    "data": base64.b64encode(r["Data"]).decode("ascii"),
                    "approximateArrivalTimestamp": _epoch(r["ApproximateArrivalTimestamp"]),
                },
                "eventSource": "aws:kinesis",
                "eventVersion": "1.0",
                "eventID": f"{shard_id}:{r['SequenceNumber']}",
                "eventName": "aws:kinesis:record",
                "invokeIdentityArn": function_arn,
                "awsRegion": region,
                "eventSourceARN": stream_arn,
            }
            for r in records
        ]
    }


def failure_document(
    records: list[dict[str, Any]],
    *,
    shard_id: str,
    stream_arn: str,
    function_arn: str,
    condition: str,
    error: str,
    attempts: int,
) -> dict[str, Any]:
    """The document Lambda sends to a Kinesis mapping's on-failure destination.

    Coordinates of the skipped records (shard, first/last sequence number, count), not
    their data: the records stay readable on the stream for its retention period.
    """
    return {
        "requestContext": {
            "requestId": str(uuid.uuid4()),
            "functionArn": function_arn,
            "condition": condition,
            "approximateInvokeCount": attempts + 1,
        },
        "responseContext": {
            "statusCode": 200,
            "executedVersion": "$LATEST",
            "functionError": error,
        },
        "version": "1.0",
        "timestamp": datetime.now(UTC).isoformat(),
        "KinesisBatchInfo": {
            "shardId": shard_id,
            "startSequenceNumber": records[0]["SequenceNumber"],
            "endSequenceNumber": records[-1]["SequenceNumber"],
            "approximateArrivalOfFirstRecord": _iso(records[0]["ApproximateArrivalTimestamp"]),
            "approximateArrivalOfLastRecord": _iso(records[-1]["ApproximateArrivalTimestamp"]),
            "batchSize": len(records),
            "streamArn": stream_arn,
        },
    }


def _iso(value: Any) -> str:
    return datetime.fromtimestamp(_epoch(value), UTC).isoformat()


def queue_url(sqs: Any, arn: str) -> str:
    """Queue URL of an SQS ARN, through the client's own endpoint."""
    if not arn.startswith("arn:aws:sqs:"):
        raise ValueError(f"the local runner supports SQS destinations only, not {arn}")
    return str(sqs.get_queue_url(QueueName=arn.rsplit(":", 1)[1])["QueueUrl"])


# --- SQS ----------------------------------------------------------------------------------


class SqsPoller:
    """One SQS event source mapping (S3 object events are delivered this way)."""

    def __init__(
        self,
        mapping: MappingSpec,
        function: Function,
        *,
        sqs: Any,
        region: str,
        clock: Clock = time.time,
    ) -> None:
        self.mapping = mapping
        self.properties = mapping.properties
        self.function = function
        self.sqs = sqs
        self.region = region
        self.clock = clock
        self.queue_arn = mapping.source_arn
        self.queue_url = queue_url(sqs, self.queue_arn)
        self.batch_size = int(self.properties.get("BatchSize", 10))
        self.window = float(self.properties.get("MaximumBatchingWindowInSeconds", 0) or 0)
        self.reports_item_failures = "ReportBatchItemFailures" in self.properties.get(
            "FunctionResponseTypes", []
        )
        self.stats = MappingStats()
        self.buffered = 0

    def _receive(self) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = []
        deadline = self.clock() + self.window
        while len(messages) < self.batch_size:
            reply = self.sqs.receive_message(
                QueueUrl=self.queue_url,
                MaxNumberOfMessages=min(10, self.batch_size - len(messages)),
                AttributeNames=["All"],
                MessageAttributeNames=["All"],
                WaitTimeSeconds=0,
            )
            got = reply.get("Messages", [])
            messages.extend(got)
            if not got and (not messages or self.clock() >= deadline):
                break
            if not got:
                time.sleep(0.05)
        return messages

    def poll_once(self) -> int:
        messages = self._receive()
        if not messages:
            return 0
        event = {
            "Records": [
                {
                    "messageId": m["MessageId"],
                    "receiptHandle": m["ReceiptHandle"],
                    "body": m["Body"],
                    "attributes": m.get("Attributes", {}),
                    "messageAttributes": m.get("MessageAttributes", {}),
                    "md5OfBody": m.get("MD5OfBody", ""),
                    "eventSource": "aws:sqs",
                    "eventSourceARN": self.queue_arn,
                    "awsRegion": self.region,
                }
                for m in messages
            ]
        }
        result = self.function.invoke(event)
        self.stats.invocations += 1
        ids = [m["MessageId"] for m in messages]
        if result.failed:
            self.stats.function_errors += 1
            failed: set[str] | None = set(ids)
        elif self.reports_item_failures:
            failed = batch_item_failures(result.response, ids)
            if failed is None:
                failed = set(ids)
            if failed:
                self.stats.partial_failures += 1
        else:
            failed = set()
        done = [m for m in messages if m["MessageId"] not in failed]
        for start in range(0, len(done), 10):
            chunk = done[start : start + 10]
            self.sqs.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(chunk)
                ],
            )
        self.stats.records += len(done)
        return len(messages)


# --- The runner -------------------------------------------------------------------------


Poller = KinesisPoller | SqsPoller


class EventSourceRunner:
    """All mappings of a deployed stack, each polled by its own thread."""

    def __init__(
        self,
        stack: StackDescription,
        *,
        clients: Callable[[str], Any],
        checkpoint_path: Path,
        handlers: Mapping[str, Handler] | None = None,
        functions: set[str] | None = None,
        idle_sleep_s: float = 0.1,
        max_backoff_s: float = 1.0,
        clock: Clock = time.time,
        log_dir: Path | None = None,
        batching_windows: bool = True,
    ) -> None:
        """``batching_windows=False`` invokes at once with what is there instead of waiting
        ``MaximumBatchingWindowInSeconds`` for a fuller batch (``run --once`` in lockstep,
        where every window is processed before the next is published)."""
        self.stack = stack
        self.checkpoints = FileCheckpointStore(checkpoint_path)
        self.idle_sleep_s = idle_sleep_s
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.errors: list[BaseException] = []
        template_dir = Path(stack.template_path).resolve().parent
        kinesis, sqs = clients("kinesis"), clients("sqs")
        runtime_environment = {
            "AWS_ENDPOINT_URL": stack.endpoint_url,
            "AWS_REGION": stack.region,
            "AWS_DEFAULT_REGION": stack.region,
        }
        self._logs: dict[str, TextIO] = {}
        self.pollers: list[Poller] = []
        for mapping in stack.mappings:
            if functions is not None and mapping.function_logical_id not in functions:
                continue
            if mapping.properties.get("Enabled", True) in (False, "false", "False"):
                log.info("%s is disabled in the template; not polled", mapping.logical_id)
                continue
            if not batching_windows:
                properties = dict(mapping.properties)
                properties.pop("MaximumBatchingWindowInSeconds", None)
                mapping = dataclasses.replace(mapping, properties=properties)
            spec = stack.function_for(mapping)
            function_log = self._log_for(spec, log_dir)
            # Loggers made at import time keep the stdout of that moment: the log file.
            with redirect_stdout(function_log) if function_log else nullcontext():
                handler = (handlers or {}).get(spec.logical_id) or resolve_handler(
                    spec, template_dir
                )
            function = Function(
                spec, handler, runtime_environment=runtime_environment, log=function_log
            )
            if mapping.source_kind == "kinesis":
                self.pollers.append(
                    KinesisPoller(
                        mapping,
                        function,
                        kinesis=kinesis,
                        sqs=sqs,
                        region=stack.region,
                        checkpoints=self.checkpoints,
                        clock=clock,
                        max_backoff_s=max_backoff_s,
                    )
                )
            elif mapping.source_kind == "sqs":
                self.pollers.append(
                    SqsPoller(mapping, function, sqs=sqs, region=stack.region, clock=clock)
                )
            else:
                raise ValueError(
                    f"{mapping.logical_id}: the local runner has no {mapping.source_kind} source"
                )

    def _log_for(self, spec: FunctionSpec, log_dir: Path | None) -> TextIO | None:
        """One log file per function, open for the runner's life (loggers keep the stream)."""
        if log_dir is None:
            return None
        if spec.logical_id not in self._logs:
            log_dir.mkdir(parents=True, exist_ok=True)
            path = log_dir / f"{spec.logical_id}.log"
            self._logs[spec.logical_id] = path.open("a", buffering=1, encoding="utf-8")
        return self._logs[spec.logical_id]

    def poll_once(self) -> int:
        """One round over every mapping (tests drive the runner with this)."""
        return sum(p.poll_once() for p in self.pollers)

    def drain(self, *, timeout_s: float = 60.0, quiet_rounds: int = 3) -> int:
        """Poll until nothing is left to do (several empty rounds); returns records handled."""
        deadline = time.monotonic() + timeout_s
        handled = quiet = 0
        while quiet < quiet_rounds:
            if time.monotonic() > deadline:
                raise TimeoutError(f"runner still busy after {timeout_s} s")
            done = self.poll_once()
            handled += done
            busy = done or any(p.buffered for p in self.pollers)
            quiet = 0 if busy else quiet + 1
            if not done:
                time.sleep(self.idle_sleep_s if not busy else 0.02)
        return handled

    def start(self) -> None:
        """Poll every mapping in its own thread until :meth:`stop`."""
        for poller in self.pollers:
            thread = threading.Thread(
                target=self._loop, args=(poller,), name=poller.mapping.logical_id, daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def _loop(self, poller: Poller) -> None:
        while not self._stop.is_set():
            try:
                if not poller.poll_once():
                    self._stop.wait(self.idle_sleep_s)
            except Exception as error:  # keep polling: a stack hiccup must not end the runner
                log.exception("%s: poll failed", poller.mapping.logical_id)
                self.errors.append(error)
                self._stop.wait(1.0)

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout_s)
        self._threads.clear()
        for log_file in self._logs.values():
            log_file.flush()

    def stats(self) -> dict[str, MappingStats]:
        return {p.mapping.logical_id: p.stats for p in self.pollers}
