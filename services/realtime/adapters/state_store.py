"""Window states in the DynamoDB state table (``RealtimeStateTable``, hash key household_id).

One item per household::

    household_id  S   the key
    position      S   stream position of the newest record applied (Kinesis sequence
                      number, zero-padded to 130 digits so that string order = number
                      order: sequence numbers have up to 129 digits, beyond DynamoDB's
                      38-digit numbers)
    last_ts       N   newest reading timestamp applied (UTC µs), for operators
    mode          S   "model" or "fallback"
    state         B   WindowState.to_bytes()

Writes are conditional, ``attribute_not_exists(household_id) OR position < :position``:
a state only ever moves forward in the stream, so a redelivered or retried batch (or a
slower concurrent invocation) can never roll a household back. The condition is on the
stream position rather than the newest reading time because late readings change a
state without moving its newest time; positions of one partition key only increase
(Kinesis guarantees it per key, across reshards too).

Reads use BatchGetItem (100 keys per request, strongly consistent) and retry the
``UnprocessedKeys`` with capped, jittered backoff; writes are PutItem calls in a small
thread pool (conditional writes cannot be batched).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Final

from botocore.exceptions import ClientError

from services.realtime.core.window import StateDecodeError, WindowState
from services.realtime.ports import LoadReport, SaveReport
from shared.retry import backoff_delay

__all__ = ["POSITION_DIGITS", "DynamoStateStore", "StateStoreError", "position_key"]

POSITION_DIGITS: Final = 130
MAX_KEYS_PER_BATCH_GET: Final = 100
_CONDITION: Final = "attribute_not_exists(household_id) OR #position < :position"


class StateStoreError(RuntimeError):
    """States could not be read (after retries): the batch must be retried."""


def position_key(position: int) -> str:
    """A stream position as a string whose order is the numeric order.

    >>> position_key(42) < position_key(100)
    True
    """
    if position < 0 or len(str(position)) > POSITION_DIGITS:
        raise ValueError(f"position {position} is out of range")
    return f"{position:0{POSITION_DIGITS}d}"


class DynamoStateStore:
    """The :class:`~services.realtime.ports.StateStore` port on a DynamoDB table."""

    def __init__(
        self,
        table_name: str,
        client: Any,
        *,
        max_workers: int = 8,
        max_attempts: int = 6,
        base_delay_s: float = 0.05,
        max_delay_s: float = 2.0,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        if max_workers < 1 or max_attempts < 1:
            raise ValueError("max_workers and max_attempts must be >= 1")
        self.table_name = table_name
        self._client = client
        self._max_workers = max_workers
        self._max_attempts = max_attempts
        self._base_delay_s = base_delay_s
        self._max_delay_s = max_delay_s
        self._sleep = sleep
        self._rng = rng or random.Random()

    def _backoff(self, attempt: int) -> None:
        self._sleep(
            backoff_delay(
                attempt, base_s=self._base_delay_s, max_s=self._max_delay_s, rng=self._rng
            )
        )

    def load(self, household_ids: Sequence[str]) -> LoadReport:
        """The stored states of these households (missing ones are simply absent)."""
        report = LoadReport()
        unique = list(dict.fromkeys(household_ids))
        for start in range(0, len(unique), MAX_KEYS_PER_BATCH_GET):
            keys = [
                {"household_id": {"S": h}} for h in unique[start : start + MAX_KEYS_PER_BATCH_GET]
            ]
            for item in self._batch_get(keys):
                household = item["household_id"]["S"]
                try:
                    report.states[household] = WindowState.from_bytes(item["state"]["B"])
                except (StateDecodeError, KeyError) as error:
                    report.unreadable[household] = f"{type(error).__name__}: {error}"
        return report

    def _batch_get(self, keys: list[dict[str, Any]]) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        pending: dict[str, Any] = {self.table_name: {"Keys": keys, "ConsistentRead": True}}
        for attempt in range(1, self._max_attempts + 1):
            if attempt > 1:
                self._backoff(attempt - 1)
            response = self._client.batch_get_item(RequestItems=pending)
            items.extend(response.get("Responses", {}).get(self.table_name, []))
            pending = response.get("UnprocessedKeys") or {}
            if not pending:
                return items
        missing = len(pending.get(self.table_name, {}).get("Keys", []))
        raise StateStoreError(
            f"{missing} states of table {self.table_name!r} still unprocessed after "
            f"{self._max_attempts} BatchGetItem attempts"
        )

    def save(self, states: Sequence[WindowState]) -> SaveReport:
        """Write each state unless one at the same or a later position is stored."""
        report = SaveReport()
        if not states:
            return report
        workers = max(1, min(self._max_workers, len(states)))
        with ThreadPoolExecutor(max_workers=workers) as pool:
            outcomes = list(pool.map(self._put, states))
        for state, outcome in zip(states, outcomes, strict=True):
            if outcome == "written":
                report.written.append(state.household_id)
            elif outcome == "stale":
                report.stale.append(state.household_id)
            else:
                report.failed[state.household_id] = outcome
        return report

    def _put(self, state: WindowState) -> str:
        """``"written"``, ``"stale"``, or the reason it failed."""
        item: dict[str, Any] = {
            "household_id": {"S": state.household_id},
            "position": {"S": position_key(state.position)},
            "mode": {"S": state.mode},
            "state": {"B": state.to_bytes()},
        }
        if state.last_ts_us is not None:
            item["last_ts"] = {"N": str(state.last_ts_us)}
        reason = "no attempt"
        for attempt in range(1, self._max_attempts + 1):
            if attempt > 1:
                self._backoff(attempt - 1)
            try:
                self._client.put_item(
                    TableName=self.table_name,
                    Item=item,
                    ConditionExpression=_CONDITION,
                    ExpressionAttributeNames={"#position": "position"},
                    ExpressionAttributeValues={":position": item["position"]},
                )
                return "written"
            except ClientError as error:
                code = error.response.get("Error", {}).get("Code", "")
                if code == "ConditionalCheckFailedException":
                    return "stale"
                reason = f"{code}: {error}"
                if code not in _RETRYABLE:
                    return reason
        return f"{reason} (after {self._max_attempts} attempts)"


_RETRYABLE: Final = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        "InternalServerError",
        "ServiceUnavailable",
        "TransactionConflictException",
    }
)
