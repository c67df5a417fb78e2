"""The local event-source runner: Lambda's pollers, in-process, with AWS semantics.

moto cannot run Lambda code without Docker, so this module plays the part of the
Lambda service for the local stack. It reads each function's ``Handler``/``CodeUri`` and
its event source mappings from the deployed template (see :mod:`wattstream.hosting.template`)
and calls the handlers in-process with Lambda-shaped events.

Kinesis mappings implement: per-shard polling with ``BatchSize``,
``MaximumBatchingWindowInSeconds`` and ``StartingPosition``; what happens to a batch after
an invocation (``ReportBatchItemFailures``, ``BisectBatchOnFunctionError``,
``MaximumRetryAttempts``, ``MaximumRecordAgeInSeconds``, the ``OnFailure`` destination) is
the one settler of :mod:`wattstream.hosting.settler`, shared with the KCL and faust hosts;
checkpoints persisted to a file so a restarted runner
resumes where it left off; shards processed sequentially, so one partition key (one
household) is always delivered in order. ``ParallelizationFactor`` is not emulated: each
shard is one sequential poller, which keeps per-key order, the property it must preserve.

SQS mappings (S3 object events arrive this way) implement batch size, the batching
window, ``ReportBatchItemFailures`` (only failed messages stay on the queue), and
redelivery after the queue's visibility timeout; the queue's own redrive policy moves a
message to its dead-letter queue after ``maxReceiveCount`` receives. Like Lambda's SQS
pollers they invoke concurrently: up to ``ScalingConfig.MaximumConcurrency`` batches in
flight (:data:`DEFAULT_SQS_CONCURRENCY` when the template sets none), each poller thread
receiving and invoking on its own. An SQS queue has no order, so nothing is lost by it;
the handlers must be safe under concurrent events of one key (they are on AWS too).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

from botocore.exceptions import ClientError

from wattstream.hosting.lambda_model import (
    BindableHandler,
    Function,
    Handler,
    MappingStats,
    batch_item_failures,
    function_output,
    resolve_handler,
)
from wattstream.hosting.settler import (
    BatchSettler,
    DeliveredRecord,
    MappingPolicy,
    SqsDestination,
    failure_document,
    invoke_kinesis,
    queue_url,
)
from wattstream.hosting.template import FunctionSpec, MappingSpec, StackDescription

log = logging.getLogger("wattstream.runner")

Clock = Callable[[], float]

#: Batches one SQS mapping keeps in flight when its template sets no
#: ``ScalingConfig.MaximumConcurrency``. AWS then scales up to the account's concurrency
#: (1,000 by default); locally every invocation shares this machine's cores, so a few
#: pollers are enough to overlap one call's S3 waits with another's CPU.
DEFAULT_SQS_CONCURRENCY = 2


def sqs_concurrency(properties: Mapping[str, Any], default: int = DEFAULT_SQS_CONCURRENCY) -> int:
    """``ScalingConfig.MaximumConcurrency`` of an SQS mapping (AWS allows 2-1000)."""
    value = (properties.get("ScalingConfig") or {}).get("MaximumConcurrency")
    if value is None:
        return default
    concurrency = int(value)
    if not 2 <= concurrency <= 1000:
        raise ValueError(f"ScalingConfig.MaximumConcurrency must be 2-1000, not {concurrency}")
    return concurrency


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


class KinesisShard:
    """One shard of one mapping: fetch and batch; the settler decides the rest.

    One batch is in flight per shard (:class:`~wattstream.hosting.settler.BatchSettler`
    holds it until every record succeeded or was given up on), so per-key order holds.
    """

    def __init__(self, poller: KinesisPoller, shard_id: str) -> None:
        self.poller = poller
        self.shard_id = shard_id
        self.key = f"{poller.mapping.logical_id}|{poller.stream_arn}|{shard_id}"
        self.buffer: list[DeliveredRecord] = []
        self.iterator: str | None = None
        self.reached_end = False
        self.buffered_since: float | None = None
        self.settler: BatchSettler[DeliveredRecord] = BatchSettler(
            poller.policy,
            commit=self._commit,
            give_up=self._give_up,
            stats=poller.stats,
            clock=poller.clock,
        )
        self._handled = 0

    @property
    def finished(self) -> bool:
        return bool(self.poller.checkpoints.get(self.key).get("ended"))

    def _fresh_iterator(self) -> str:
        poller = self.poller
        saved = poller.checkpoints.get(self.key)
        after = self.buffer[-1].sequence if self.buffer else saved.get("sequence")
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
        batch_size = self.poller.policy.batch_size
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
        records = [DeliveredRecord.of_get_records(r) for r in reply.get("Records", [])]
        if records and not self.buffer:
            self.buffered_since = self.poller.clock()
        self.buffer.extend(records)
        self.poller.stats.millis_behind_latest = int(reply.get("MillisBehindLatest", 0))
        self.iterator = reply.get("NextShardIterator")
        if self.iterator is None:
            self.reached_end = True

    def _commit(self, record: DeliveredRecord, why: str) -> None:
        """The settler settled everything up to ``record``: checkpoint, drop it from the buffer."""
        count = self.buffer.index(record) + 1
        self.poller.checkpoints.put(self.key, sequence=record.sequence)
        del self.buffer[:count]
        self._handled += count
        self.buffered_since = self.poller.clock() if self.buffer else None

    def _give_up(
        self, records: Sequence[DeliveredRecord], condition: str, error: str, retries: int
    ) -> None:
        self.poller.send_to_destination(self.shard_id, records, condition, error, retries)

    def step(self) -> int:
        """Do one unit of work; returns how many records were settled (0 when idle)."""
        poller = self.poller
        self._handled = 0
        if self.settler.settled:
            self._fetch()
            if not self.buffer:
                if self.reached_end and not self.finished:
                    poller.checkpoints.put(self.key, ended=True)
                return 0
            now = poller.clock()
            window = float(poller.properties.get("MaximumBatchingWindowInSeconds", 0) or 0)
            full = len(self.buffer) >= poller.policy.batch_size
            waited = now - (self.buffered_since or now)
            if not full and not self.reached_end and waited < window:
                return 0
            self.settler.start(self.buffer[: poller.policy.batch_size])
        batch = self.settler.next_invocation()
        if batch is not None:
            self.settler.record_result(
                invoke_kinesis(
                    poller.function,
                    batch,
                    shard_id=self.shard_id,
                    stream_arn=poller.stream_arn,
                    report_item_failures=poller.policy.report_item_failures,
                )
            )
        return self._handled


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
        self.policy = MappingPolicy.of(mapping, base_backoff_s=0.1, max_backoff_s=max_backoff_s)
        self.stream_arn = mapping.source_arn
        self.stream_name = self.stream_arn.rsplit("/", 1)[1]
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

    def send_to_destination(
        self,
        shard_id: str,
        records: Sequence[DeliveredRecord],
        condition: str,
        error: str,
        retries: int,
    ) -> None:
        """The on-failure record AWS sends: batch coordinates, not the data itself."""
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
            attempts=retries,
        )
        SqsDestination(self.sqs, queue_url(self.sqs, destination)).send(document)


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
        self.concurrency = sqs_concurrency(self.properties)
        self.stats = MappingStats()
        self._stats_lock = threading.Lock()  # pollers of one mapping count together
        self.buffered = 0

    def _receive(self) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = []
        deadline = self.clock() + self.window
        while len(messages) < self.batch_size:
            # Gathering inside the window: long-poll (as Lambda's pollers do) for whole
            # seconds of it, instead of asking again every 50 ms.
            remaining = deadline - self.clock()
            wait = int(min(20.0, remaining)) if messages and remaining >= 1 else 0
            reply = self.sqs.receive_message(
                QueueUrl=self.queue_url,
                MaxNumberOfMessages=min(10, self.batch_size - len(messages)),
                AttributeNames=["All"],
                MessageAttributeNames=["All"],
                WaitTimeSeconds=wait,
            )
            got = reply.get("Messages", [])
            messages.extend(got)
            if not got and (not messages or self.clock() >= deadline):
                break
            if not got and not wait:
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
        ids = [m["MessageId"] for m in messages]
        partial = False
        if result.failed:
            failed: set[str] | None = set(ids)
        elif self.reports_item_failures:
            failed = batch_item_failures(result.response, ids)
            if failed is None:
                failed = set(ids)
            partial = bool(failed)
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
        with self._stats_lock:
            self.stats.invocations += 1
            self.stats.function_errors += int(result.failed)
            self.stats.partial_failures += int(partial)
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
        handlers: Mapping[str, Handler | BindableHandler] | None = None,
        functions: set[str] | None = None,
        idle_sleep_s: float = 0.1,
        max_backoff_s: float = 1.0,
        clock: Clock = time.time,
        log_dir: Path | None = None,
        batching_windows: bool = True,
        environment: Mapping[str, str] | None = None,
    ) -> None:
        """``environment``: variables every function gets on top of the template's (the
        bus a local run publishes to). ``batching_windows=False`` invokes at once with what
        is there instead of waiting ``MaximumBatchingWindowInSeconds`` for a fuller batch
        (``run --once`` in lockstep, where every window is processed before the next is
        published)."""
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
            **(environment or {}),
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
            # Output while importing (module-level loggers) goes to the function's log too.
            with function_output(function_log):
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
        """Poll every mapping in its own thread until :meth:`stop`; an SQS mapping in
        ``concurrency`` threads (its batches in flight at once, as Lambda scales pollers)."""
        for poller in self.pollers:
            copies = poller.concurrency if isinstance(poller, SqsPoller) else 1
            for index in range(copies):
                name = poller.mapping.logical_id + (f"-{index}" if copies > 1 else "")
                thread = threading.Thread(target=self._loop, args=(poller,), name=name, daemon=True)
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
        """Stop polling; wait at most ``timeout_s`` in all for in-flight calls to return.

        One deadline for every thread, not ``timeout_s`` each: a mapping may poll in
        several threads (SQS concurrency), and Ctrl-C must not wait for each in turn. A call
        still running then is abandoned (its thread is a daemon); its records were not
        committed, so they come again on the next start.
        """
        self._stop.set()
        deadline = time.monotonic() + timeout_s
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        running = [thread.name for thread in self._threads if thread.is_alive()]
        if running:
            log.warning("stopped with calls still running in: %s", ", ".join(running))
        self._threads.clear()
        for log_file in self._logs.values():
            log_file.flush()

    def stats(self) -> dict[str, MappingStats]:
        return {p.mapping.logical_id: p.stats for p in self.pollers}
