"""The query store on DynamoDB: one table (``pk``, ``sk``), coarse items, idempotent upserts.

Item layout (all keys deterministic, so a redelivered input lands on its own item):

====================  ====================  =============================================
``pk``                ``sk``                holds
====================  ====================  =============================================
``H#<household>``     ``D#<YYYY-MM-DD>``    the day's per-minute power (zlib float64),
                                            ``version`` for optimistic concurrency
``H#<household>``     ``FORECAST``          the latest forecast (JSON), ``issued_us``
``H#<household>``     ``A#<issued_us:020>`` one anomaly mark
``H#<household>``     ``M#<YYYY-MM>``       the latest monthly result (JSON), ``as_of``
``H#<household>``     ``T#<YYYY-MM-DD>``    forecast targets starting that day:
                                            ``targets``, one line per target
                                            ``<n|d><res>_<second of day> value,lower,
                                            upper,issued µs``; ``version``
``HOUSEHOLDS``        ``<household>``       the households index, ``last_reading_us``
``ACCURACY``          ``<household>``       the household's rolling accuracy (JSON) and
                                            its recomputation ticket (``seq``)
``PIPELINE``          ``C#<consumer>``      a consumer's progress
``PIPELINE``          ``T#<consumer>#<min>``records processed in that minute
====================  ====================  =============================================

A household-day is read, merged by the pure core and written back with a condition on
the version read (``attribute_not_exists`` for a new item), retried on conflict: two
writers can never lose each other's minutes, and re-applying the same minutes changes
nothing (the core reports "unchanged" and no write happens). Forecasts, monthly results,
the index and progress use conditional writes that only move forward in time.

Accuracy: a target is set by every copy of its forecast with the same value (a keyed
overwrite: read, merge, put conditional on the item's version; a copy that changes
nothing writes nothing); the rolling accuracy is recomputed from the stored targets and
minutes after each batch and written with a condition that its ticket is still the
newest (:meth:`DynamoGatewayStore.put_accuracy`), so a recomputation that read older
inputs never overwrites a newer one. The ticket (``seq``) lives on the accuracy item
itself: taking one is an ``ADD`` on it, keeping a result ONE conditional put of that
item (no transaction; an item with a ticket and no ``doc`` yet reads as no accuracy).

Round trips: the consumers' batched methods (``merge_days``, ``put_targets_of``,
``households_of``, ``accuracy_inputs``) read every item a batch needs with BatchGetItem
(100 keys a call) and write the changed items in parallel; a per-household read of each
was most of the forecasts consumer's time on the local stack.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Final

from botocore.exceptions import ClientError

from services.gateway.core.accuracy import HouseholdAccuracy, TargetForecast
from services.gateway.core.consumption import (
    DayKey,
    FloatArray,
    MinuteUpdate,
    decode_minutes,
    encode_minutes,
    merge_minutes,
)
from services.gateway.core.model import (
    AnomalyMark,
    ConsumerProgress,
    HouseholdSummary,
    StoredMonthly,
)
from shared.batch import datetime_to_us, us_to_datetime
from shared.parallel import each
from shared.schema import Forecast, MonthlyForecast

__all__ = ["DynamoGatewayStore", "StoreConflict"]

HOUSEHOLDS_PK: Final = "HOUSEHOLDS"
PIPELINE_PK: Final = "PIPELINE"
ACCURACY_PK: Final = "ACCURACY"
_HORIZON_CODE: Final = {"next": "n", "day_ahead": "d"}
_CODE_HORIZON: Final = {code: horizon for horizon, code in _HORIZON_CODE.items()}
_DAY_US: Final = 86_400_000_000
_BATCH_GET_KEYS: Final = 100
_CONDITION_FAILED: Final = "ConditionalCheckFailedException"
#: The attribute of a target-day item that holds its targets (:func:`_encode_targets`).
_TARGETS: Final = "targets"
_NOT_TARGETS: Final = frozenset({"pk", "sk", "version", _TARGETS})


class StoreConflict(RuntimeError):
    """A household-day kept changing under us; the caller's records are retried."""


def _household_pk(household_id: str) -> str:
    return f"H#{household_id}"


def _household_key(household_id: str, sk: str) -> dict[str, Any]:
    """The key of one of a household's items (``sk``: ``D#<day>``, ``T#<day>``, ...)."""
    return {"pk": {"S": _household_pk(household_id)}, "sk": {"S": sk}}


def _minute_label(moment: dt.datetime) -> str:
    return f"{moment.astimezone(dt.UTC):%Y%m%dT%H%M}"


def _conditional_failed(error: ClientError) -> bool:
    return error.response.get("Error", {}).get("Code") == _CONDITION_FAILED


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _target_attribute(target: TargetForecast) -> tuple[str, str]:
    """(day of the target, attribute name) of a target in its household-day item."""
    day, offset_us = divmod(target.start_us, _DAY_US)
    name = f"{_HORIZON_CODE[target.horizon]}{target.resolution_s}_{offset_us // 1_000_000}"
    return f"T#{dt.date(1970, 1, 1) + dt.timedelta(days=day)}", name


def _target_value(target: TargetForecast) -> str:
    """One string per target: a client parses a few thousand strings far faster than as
    many lists of numbers (the recomputation reads a week of targets)."""
    values = (target.value_kw, target.lower_kw, target.upper_kw)
    return ",".join([*(repr(float(v)) for v in values), str(target.issued_us)])


def _target_of(day_us: int, name: str, value: str) -> TargetForecast | None:
    """Inverse of :func:`_target_attribute` and :func:`_target_value` (None for an
    attribute that is not a target)."""
    code, rest = name[:1], name[1:]
    resolution, sep, second = rest.partition("_")
    if code not in _CODE_HORIZON or not sep or not resolution.isdigit() or not second.isdigit():
        return None
    kw, lower, upper, issued = value.split(",")
    return TargetForecast(
        _CODE_HORIZON[code],  # type: ignore[arg-type]
        int(resolution),
        day_us + int(second) * 1_000_000,
        float(kw),
        float(lower),
        float(upper),
        int(issued),
    )


def _item_id(item: Mapping[str, Any]) -> tuple[str, str]:
    return item["pk"]["S"], item["sk"]["S"]


def _encode_targets(named: Mapping[str, str]) -> str:
    """A target-day item's targets as one string: a ``<name> <value>`` line per target."""
    return "\n".join(f"{name} {value}" for name, value in sorted(named.items()))


def _stored_targets(item: Mapping[str, Any]) -> dict[str, str]:
    """Target name -> value of a target-day item; items written before the targets were
    one attribute (an attribute per target) are read too, and rewritten as one."""
    named = {n: v["S"] for n, v in item.items() if n not in _NOT_TARGETS and "S" in v}
    encoded = item.get(_TARGETS, {}).get("S")
    if encoded:
        for line in encoded.split("\n"):
            name, _, value = line.partition(" ")
            named[name] = value
    return named


def _days_of(items: Iterable[Mapping[str, Any]]) -> dict[dt.date, FloatArray]:
    """Household-day items -> the day's minutes, by day."""
    return {
        dt.date.fromisoformat(item["sk"]["S"].removeprefix("D#")): decode_minutes(
            item["minutes"]["B"]
        )
        for item in items
    }


def _targets_of(items: Iterable[Mapping[str, Any]]) -> list[TargetForecast]:
    """Target-day items -> their targets, in key order."""
    found = []
    for item in items:
        day = dt.date.fromisoformat(item["sk"]["S"].removeprefix("T#"))
        day_us = (day - dt.date(1970, 1, 1)).days * _DAY_US
        for name, value in _stored_targets(item).items():
            target = _target_of(day_us, name, value)
            if target is not None:
                found.append(target)
    return sorted(found, key=lambda t: t.key)


class DynamoGatewayStore:
    """A ``GatewayStore`` on one DynamoDB table, through an injected boto3 client."""

    def __init__(
        self,
        table: str,
        *,
        client: Any,
        max_attempts: int = 5,
        max_workers: int = 8,
        clock: Callable[[], dt.datetime] = _now,
    ) -> None:
        """``max_workers``: items written at a time by the batched writes (``merge_days``,
        ``put_targets_of``), which wait on round trips."""
        self.table = table
        self._db = client
        self._max_attempts = max_attempts
        self._max_workers = max_workers
        self._clock = clock

    # ------------------------------------------------------------------ consumption

    def merge_day(self, key: DayKey, update: MinuteUpdate) -> bool:
        result = self.merge_days({key: update})[key]
        if isinstance(result, Exception):
            raise result
        return result

    def merge_days(self, updates: Mapping[DayKey, MinuteUpdate]) -> dict[DayKey, bool | Exception]:
        """Every household-day read in one batched read, then written (read again only
        on a conflict) up to ``max_workers`` at a time; a failure is that day's value."""
        keys = {key: self._day_key(key) for key in updates}
        try:
            stored = self._get_items(list(keys.values()), consistent=True)
        except Exception as error:  # nothing read: every day is retried
            return {key: error for key in updates}
        return each(
            updates,
            lambda key: self._merge_day(key, updates[key], stored.get(_item_id(keys[key]))),
            max_workers=self._max_workers,
        )

    @staticmethod
    def _day_key(key: DayKey) -> dict[str, Any]:
        return _household_key(key.household_id, f"D#{key.day}")

    def _merge_day(self, key: DayKey, update: MinuteUpdate, item: dict[str, Any] | None) -> bool:
        """Merge into the day as read (``item``); on a conflict read it again and retry."""
        for attempt in range(self._max_attempts):
            if attempt:
                item = self._db.get_item(
                    TableName=self.table, Key=self._day_key(key), ConsistentRead=True
                ).get("Item")
            stored = decode_minutes(item["minutes"]["B"]) if item is not None else None
            version = int(item["version"]["N"]) if item is not None else 0
            merged, changed = merge_minutes(stored, update)
            if not changed:
                return False
            condition = (
                {"ConditionExpression": "attribute_not_exists(pk)"}
                if stored is None
                else {
                    "ConditionExpression": "version = :v",
                    "ExpressionAttributeValues": {":v": {"N": str(version)}},
                }
            )
            try:
                self._db.put_item(
                    TableName=self.table,
                    Item={
                        **self._day_key(key),
                        "minutes": {"B": encode_minutes(merged)},
                        "version": {"N": str(version + 1)},
                        "updated_at": {"S": self._clock().isoformat()},
                    },
                    **condition,
                )
                return True
            except ClientError as error:
                if not _conditional_failed(error):
                    raise
        raise StoreConflict(f"{key} changed concurrently {self._max_attempts} times")

    def days(
        self, household_id: str, days: Sequence[dt.date], *, consistent: bool = False
    ) -> dict[dt.date, FloatArray]:
        items = self._get_items(
            [self._day_key(DayKey(household_id, day)) for day in days], consistent=consistent
        )
        return _days_of(items.values())

    def _get_items(
        self, keys: Sequence[dict[str, Any]], *, consistent: bool
    ) -> dict[tuple[str, str], dict[str, Any]]:
        """The items of ``keys`` that exist, by ``(pk, sk)``: BatchGetItem, 100 keys a
        call, unprocessed keys asked again."""
        wanted = list({_item_id(key): key for key in keys}.values())
        found: dict[tuple[str, str], dict[str, Any]] = {}
        for start in range(0, len(wanted), _BATCH_GET_KEYS):
            pending: dict[str, Any] = {
                self.table: {
                    "Keys": wanted[start : start + _BATCH_GET_KEYS],
                    "ConsistentRead": consistent,
                }
            }
            for _ in range(self._max_attempts):
                reply = self._db.batch_get_item(RequestItems=pending)
                for item in reply.get("Responses", {}).get(self.table, []):
                    found[_item_id(item)] = item
                pending = reply.get("UnprocessedKeys") or {}
                if not pending:
                    break
            else:
                raise RuntimeError("DynamoDB kept keys unprocessed; retry the query")
        return found

    # ------------------------------------------------------------------ households

    def note_household(self, household_id: str, last_reading_at: dt.datetime) -> None:
        stamp = str(datetime_to_us(last_reading_at))
        try:
            self._db.update_item(
                TableName=self.table,
                Key={"pk": {"S": HOUSEHOLDS_PK}, "sk": {"S": household_id}},
                UpdateExpression="SET last_reading_us = :t",
                ConditionExpression="attribute_not_exists(last_reading_us) OR last_reading_us < :t",
                ExpressionAttributeValues={":t": {"N": stamp}},
            )
        except ClientError as error:
            if not _conditional_failed(error):
                raise

    @staticmethod
    def _summary(item: dict[str, Any]) -> HouseholdSummary:
        last = item.get("last_reading_us")
        return HouseholdSummary(
            household_id=item["sk"]["S"],
            last_reading_at=us_to_datetime(int(last["N"])) if last else None,
        )

    def households(self) -> list[HouseholdSummary]:
        return [self._summary(item) for item in self._query(HOUSEHOLDS_PK)]

    def household(self, household_id: str) -> HouseholdSummary | None:
        item = self._db.get_item(
            TableName=self.table,
            Key={"pk": {"S": HOUSEHOLDS_PK}, "sk": {"S": household_id}},
            ConsistentRead=True,
        ).get("Item")
        return self._summary(item) if item else None

    def households_of(self, household_ids: Sequence[str]) -> dict[str, HouseholdSummary]:
        items = self._get_items(
            [{"pk": {"S": HOUSEHOLDS_PK}, "sk": {"S": h}} for h in household_ids], consistent=True
        )
        return {item["sk"]["S"]: self._summary(item) for item in items.values()}

    def _query(
        self, pk: str, *, between: tuple[str, str] | None = None, prefix: str | None = None
    ) -> list[dict[str, Any]]:
        expression = "pk = :pk"
        values: dict[str, Any] = {":pk": {"S": pk}}
        if between is not None:
            expression += " AND sk BETWEEN :lo AND :hi"
            values.update({":lo": {"S": between[0]}, ":hi": {"S": between[1]}})
        elif prefix is not None:
            expression += " AND begins_with(sk, :prefix)"
            values[":prefix"] = {"S": prefix}
        items: list[dict[str, Any]] = []
        args: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": expression,
            "ExpressionAttributeValues": values,
        }
        while True:
            reply = self._db.query(**args)
            items.extend(reply.get("Items", []))
            if "LastEvaluatedKey" not in reply:
                return items
            args["ExclusiveStartKey"] = reply["LastEvaluatedKey"]

    # ------------------------------------------------------------------ forecasts

    def put_forecast(self, forecast: Forecast) -> bool:
        issued = str(datetime_to_us(forecast.issued_at))
        try:
            self._db.put_item(
                TableName=self.table,
                Item={
                    "pk": {"S": _household_pk(forecast.household_id)},
                    "sk": {"S": "FORECAST"},
                    "issued_us": {"N": issued},
                    "doc": {"S": forecast.model_dump_json()},
                },
                ConditionExpression="attribute_not_exists(pk) OR issued_us < :t",
                ExpressionAttributeValues={":t": {"N": issued}},
            )
        except ClientError as error:
            if _conditional_failed(error):
                return False
            raise
        return True

    def latest_forecast(self, household_id: str) -> Forecast | None:
        item = self._db.get_item(
            TableName=self.table,
            Key={"pk": {"S": _household_pk(household_id)}, "sk": {"S": "FORECAST"}},
        ).get("Item")
        return Forecast.model_validate_json(item["doc"]["S"]) if item else None

    def put_anomaly(self, mark: AnomalyMark) -> None:
        stamp = datetime_to_us(mark.timestamp)
        item: dict[str, Any] = {
            "pk": {"S": _household_pk(mark.household_id)},
            "sk": {"S": f"A#{stamp:020d}"},
            "score": {"N": repr(float(mark.score))},
            "model_version": {"S": mark.model_version},
        }
        if mark.kind is not None:
            item["kind"] = {"S": mark.kind}
        if mark.kwh is not None:
            item["kwh"] = {"N": repr(float(mark.kwh))}
        if mark.duration_s is not None:
            item["duration_s"] = {"N": str(int(mark.duration_s))}
        if mark.started_at is not None:
            item["started_us"] = {"N": str(datetime_to_us(mark.started_at))}
        self._db.put_item(TableName=self.table, Item=item)

    def anomalies(
        self, household_id: str, start: dt.datetime, end: dt.datetime
    ) -> list[AnomalyMark]:
        lo, hi = datetime_to_us(start), datetime_to_us(end) - 1
        if hi < lo:
            return []
        items = self._query(_household_pk(household_id), between=(f"A#{lo:020d}", f"A#{hi:020d}"))
        return [
            AnomalyMark(
                household_id=household_id,
                timestamp=us_to_datetime(int(item["sk"]["S"].removeprefix("A#"))),
                score=float(item["score"]["N"]),
                model_version=item["model_version"]["S"],
                kind=item["kind"]["S"] if "kind" in item else None,
                kwh=float(item["kwh"]["N"]) if "kwh" in item else None,
                duration_s=int(item["duration_s"]["N"]) if "duration_s" in item else None,
                started_at=(
                    us_to_datetime(int(item["started_us"]["N"])) if "started_us" in item else None
                ),
            )
            for item in items
        ]

    # ------------------------------------------------------------------ accuracy

    def put_targets(self, household_id: str, targets: Sequence[TargetForecast]) -> None:
        failed = self.put_targets_of({household_id: targets})
        if household_id in failed:
            raise failed[household_id]

    def put_targets_of(
        self, targets: Mapping[str, Sequence[TargetForecast]]
    ) -> dict[str, Exception]:
        """The target-day items of every household read in one batched read, merged,
        and written up to ``max_workers`` at a time; the households that failed, with why."""
        named: dict[tuple[str, str], dict[str, str]] = {}
        for household_id, household_targets in targets.items():
            for target in household_targets:
                sk, name = _target_attribute(target)
                named.setdefault((household_id, sk), {})[name] = _target_value(target)
        keys = {day: _household_key(*day) for day in named}
        try:
            stored = self._get_items(list(keys.values()), consistent=True)
        except Exception as error:  # nothing read: every household is retried
            return {household_id: error for household_id in targets}
        written = each(
            sorted(named),
            lambda day: self._merge_targets(keys[day], named[day], stored.get(_item_id(keys[day]))),
            max_workers=self._max_workers,
        )
        return {day[0]: error for day, error in written.items() if isinstance(error, Exception)}

    def _merge_targets(
        self, key: dict[str, Any], named: dict[str, str], item: dict[str, Any] | None
    ) -> None:
        """Merge targets into one target-day item as read (``item``): one put conditional
        on the version read; on a conflict read it again and retry.

        The same keyed overwrite as an UpdateItem with a ``SET`` per target (what was
        there is kept, a redelivered target writes its own value again); when every
        target already holds its value (a redelivery) nothing is written. The targets
        are ONE string attribute (:func:`_encode_targets`), not an attribute each: a
        client parses one string far faster than a map of ~100 (moto answered a
        batched read of ten 96-attribute items in ~160 ms against ~10 ms), and a
        ``SET`` per target made moto take ~180 ms per update; on DynamoDB both layouts
        cost the item's size in units.
        """
        for attempt in range(self._max_attempts):
            if attempt:
                item = self._db.get_item(TableName=self.table, Key=key, ConsistentRead=True).get(
                    "Item"
                )
            stored = _stored_targets(item) if item is not None else {}
            if all(stored.get(name) == value for name, value in named.items()):
                return
            condition: dict[str, Any] = (
                {"ConditionExpression": "attribute_not_exists(pk)"}
                if item is None
                else {"ConditionExpression": "attribute_not_exists(version)"}
                if "version" not in item
                else {
                    "ConditionExpression": "version = :v",
                    "ExpressionAttributeValues": {":v": {"N": item["version"]["N"]}},
                }
            )
            version = int(item["version"]["N"]) if item is not None and "version" in item else 0
            try:
                self._db.put_item(
                    TableName=self.table,
                    Item={
                        **key,
                        _TARGETS: {"S": _encode_targets({**stored, **named})},
                        "version": {"N": str(version + 1)},
                    },
                    **condition,
                )
                return
            except ClientError as error:
                if not _conditional_failed(error):
                    raise
        raise StoreConflict(f"{key} changed concurrently {self._max_attempts} times")

    def targets(self, household_id: str, days: Sequence[dt.date]) -> list[TargetForecast]:
        items = self._get_items(
            [_household_key(household_id, f"T#{d}") for d in days],
            consistent=True,
        )
        return _targets_of(items.values())

    def accuracy_inputs(
        self, wanted: Mapping[str, tuple[Sequence[dt.date], Sequence[dt.date]]]
    ) -> dict[str, tuple[dict[dt.date, FloatArray], list[TargetForecast]]]:
        keys = [
            _household_key(household_id, f"{prefix}{day}")
            for household_id, (minute_days, target_days) in wanted.items()
            for prefix, days in (("D#", minute_days), ("T#", target_days))
            for day in days
        ]
        by_household: dict[str, list[dict[str, Any]]] = {}
        for (pk, _), item in self._get_items(keys, consistent=True).items():
            by_household.setdefault(pk.removeprefix("H#"), []).append(item)
        result = {}
        for household_id in wanted:
            items = by_household.get(household_id, [])
            days = _days_of(i for i in items if i["sk"]["S"].startswith("D#"))
            targets = _targets_of(i for i in items if i["sk"]["S"].startswith("T#"))
            result[household_id] = (days, targets)
        return result

    def _accuracy_key(self, household_id: str) -> dict[str, Any]:
        return {"pk": {"S": ACCURACY_PK}, "sk": {"S": household_id}}

    def accuracy_ticket(self, household_id: str) -> int:
        # The ticket lives on the accuracy item itself, so keeping a result is ONE
        # conditional put of one item (no transaction: half the write units on AWS, and
        # moto copies the whole table for every transaction, which made the local stack
        # quadratic in the fleet's size).
        reply = self._db.update_item(
            TableName=self.table,
            Key=self._accuracy_key(household_id),
            UpdateExpression="ADD seq :one",
            ExpressionAttributeValues={":one": {"N": "1"}},
            ReturnValues="UPDATED_NEW",
        )
        return int(reply["Attributes"]["seq"]["N"])

    def put_accuracy(self, accuracy: HouseholdAccuracy, ticket: int) -> bool:
        try:
            self._db.put_item(
                TableName=self.table,
                Item={
                    **self._accuracy_key(accuracy.household_id),
                    "doc": {"S": accuracy.model_dump_json()},
                    "seq": {"N": str(ticket)},
                },
                ConditionExpression="seq = :t",
                ExpressionAttributeValues={":t": {"N": str(ticket)}},
            )
        except ClientError as error:
            if _conditional_failed(error):
                return False  # a newer recomputation is under way and will write
            raise
        return True

    def accuracy(self, household_id: str) -> HouseholdAccuracy | None:
        item = self._db.get_item(TableName=self.table, Key=self._accuracy_key(household_id)).get(
            "Item"
        )
        # An item with a ticket and no document: a first recomputation is under way.
        return (
            HouseholdAccuracy.model_validate_json(item["doc"]["S"])
            if item and "doc" in item
            else None
        )

    def fleet_accuracy(self) -> list[HouseholdAccuracy]:
        return [
            HouseholdAccuracy.model_validate_json(item["doc"]["S"])
            for item in self._query(ACCURACY_PK)
            if "doc" in item
        ]

    # ------------------------------------------------------------------ monthly

    def put_monthly(self, result: StoredMonthly) -> bool:
        forecast = result.forecast
        try:
            self._db.put_item(
                TableName=self.table,
                Item={
                    "pk": {"S": _household_pk(forecast.household_id)},
                    "sk": {"S": f"M#{forecast.month}"},
                    "as_of": {"S": forecast.as_of.isoformat()},
                    "doc": {"S": forecast.model_dump_json()},
                    "bucket": {"S": result.bucket},
                    "key": {"S": result.key},
                },
                ConditionExpression="attribute_not_exists(pk) OR as_of <= :a",
                ExpressionAttributeValues={":a": {"S": forecast.as_of.isoformat()}},
            )
        except ClientError as error:
            if _conditional_failed(error):
                return False
            raise
        return True

    def monthly(self, household_id: str, month: str) -> StoredMonthly | None:
        item = self._db.get_item(
            TableName=self.table,
            Key={"pk": {"S": _household_pk(household_id)}, "sk": {"S": f"M#{month}"}},
        ).get("Item")
        if item is None:
            return None
        return StoredMonthly(
            forecast=MonthlyForecast.model_validate_json(item["doc"]["S"]),
            bucket=item["bucket"]["S"],
            key=item["key"]["S"],
        )

    # ------------------------------------------------------------------ pipeline

    def record_progress(self, progress: ConsumerProgress) -> None:
        arrival = str(datetime_to_us(progress.last_arrival_at))
        values: dict[str, Any] = {
            ":a": {"N": arrival},
            ":p": {"N": str(datetime_to_us(progress.processed_at))},
            ":n": {"N": str(progress.records)},
        }
        update = "SET last_arrival_us = :a, processed_us = :p"
        if progress.last_event_at is not None:
            update += ", last_event_us = :e"
            values[":e"] = {"N": str(datetime_to_us(progress.last_event_at))}
        key = {"pk": {"S": PIPELINE_PK}, "sk": {"S": f"C#{progress.consumer}"}}
        try:
            self._db.update_item(
                TableName=self.table,
                Key=key,
                UpdateExpression=f"{update} ADD records :n",
                ConditionExpression=(
                    "attribute_not_exists(last_arrival_us) OR last_arrival_us <= :a"
                ),
                ExpressionAttributeValues=values,
            )
        except ClientError as error:  # an older batch, processed late: count it only
            if not _conditional_failed(error):
                raise
            self._db.update_item(
                TableName=self.table,
                Key=key,
                UpdateExpression="ADD records :n",
                ExpressionAttributeValues={":n": values[":n"]},
            )
        label = _minute_label(progress.processed_at)
        self._db.update_item(
            TableName=self.table,
            Key={"pk": {"S": PIPELINE_PK}, "sk": {"S": f"T#{progress.consumer}#{label}"}},
            UpdateExpression="ADD records :n",
            ExpressionAttributeValues={":n": values[":n"]},
        )

    def progress(self) -> list[ConsumerProgress]:
        result = []
        for item in self._query(PIPELINE_PK, prefix="C#"):
            event = item.get("last_event_us")
            result.append(
                ConsumerProgress(
                    consumer=item["sk"]["S"].removeprefix("C#"),
                    last_arrival_at=us_to_datetime(int(item["last_arrival_us"]["N"])),
                    last_event_at=us_to_datetime(int(event["N"])) if event else None,
                    processed_at=us_to_datetime(int(item["processed_us"]["N"])),
                    records=int(item.get("records", {}).get("N", 0)),
                )
            )
        return result

    def recent_records(self, since: dt.datetime) -> dict[str, int]:
        counts: dict[str, int] = {}
        for consumer in (p.consumer for p in self.progress()):
            items = self._query(
                PIPELINE_PK, between=(f"T#{consumer}#{_minute_label(since)}", f"T#{consumer}#~")
            )
            counts[consumer] = sum(int(item["records"]["N"]) for item in items)
        return counts
