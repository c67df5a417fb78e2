"""The event-source semantics, decided once: the settler every host (runner, KCL, faust) drives.

What AWS documents for Kinesis event source mappings (see the module docstring of
:mod:`wattstream.hosting.settler` and the README's event-source section), proven here
through the step API with a fake clock, no handler and no stack.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest

from wattstream.hosting.lambda_model import MappingStats
from wattstream.hosting.settler import BatchSettler, DeliveredRecord, MappingPolicy, Outcome

NOW = 1_700_000_000.0


def batch(*numbers: int, arrived_at: float = NOW) -> list[DeliveredRecord]:
    return [DeliveredRecord(str(n), f"household-{n}", b"x", arrived_at) for n in numbers]


def ok() -> Outcome:
    return Outcome([], "", function_error=False)


def partial(*indexes: int) -> Outcome:
    return Outcome(list(indexes), "partial batch failure", function_error=False)


def crash(records: Sequence[DeliveredRecord]) -> Outcome:
    return Outcome(list(range(len(records))), "RuntimeError: boom", function_error=True)


@dataclass
class Host:
    """What a host does with the settler's decisions: commits and given-up batches."""

    now: float = NOW
    commits: list[str] = field(default_factory=list)
    given_up: list[tuple[list[str], str, int]] = field(default_factory=list)
    broken_destination: bool = False
    stats: MappingStats = field(default_factory=MappingStats)

    def settler(self, **policy: object) -> BatchSettler[DeliveredRecord]:
        return BatchSettler(
            MappingPolicy(**policy),  # type: ignore[arg-type]
            commit=lambda record, why: self.commits.append(record.sequence),
            give_up=self.give_up,
            stats=self.stats,
            clock=lambda: self.now,
        )

    def give_up(
        self, records: Sequence[DeliveredRecord], condition: str, error: str, retries: int
    ) -> None:
        if self.broken_destination:
            raise ConnectionError("the failure queue is unreachable")
        self.given_up.append(([r.sequence for r in records], condition, retries))


def sequences(records: Sequence[DeliveredRecord] | None) -> list[str] | None:
    return None if records is None else [r.sequence for r in records]


def test_settler_partial_failure_checkpoints_before_lowest_and_retries_from_it():
    host = Host()
    settler = host.settler(max_retry_attempts=5)
    settler.start(batch(1, 2, 3, 4))

    assert sequences(settler.next_invocation()) == ["1", "2", "3", "4"]
    settler.record_result(partial(3, 1))  # the lowest reported failure is the checkpoint

    assert host.commits == ["1"]
    assert settler.next_invocation() is None  # backing off
    host.now += settler.wait_s()
    assert sequences(settler.next_invocation()) == ["2", "3", "4"]
    settler.record_result(ok())
    assert host.commits == ["1", "4"]
    assert settler.settled
    assert (host.stats.invocations, host.stats.partial_failures, host.stats.records) == (2, 1, 4)


def test_settler_progress_starts_a_new_batch_with_a_fresh_retry_count():
    host = Host()
    settler = host.settler(max_retry_attempts=1)
    settler.start(batch(1, 2, 3))
    outcomes = iter([partial(1), partial(1), ok()])  # 2 fails, then 3 fails, then all pass

    while not settler.settled:
        records = settler.next_invocation()
        if records is None:
            host.now += settler.wait_s()
            continue
        settler.record_result(next(outcomes))

    assert host.given_up == []  # each failure after progress was its batch's first
    assert host.commits == ["1", "2", "3"]


def test_settler_retry_exhaustion_discards_the_whole_retried_batch():
    """AWS: when retries run out the batch being retried (lowest failure to its end) is
    discarded and its coordinates go to the destination; records after the last failure
    that succeeded in the last attempt are not committed apart from it."""
    host = Host()
    settler = host.settler(max_retry_attempts=2)
    settler.start(batch(1, 2, 3, 4))

    invocations = []
    while not settler.settled:
        records = settler.next_invocation()
        if records is None:
            host.now += settler.wait_s()
            continue
        invocations.append(sequences(records))
        settler.record_result(partial(records.index(batch(2)[0])))  # record 2 always fails

    assert invocations == [["1", "2", "3", "4"], ["2", "3", "4"], ["2", "3", "4"]]
    assert host.given_up == [(["2", "3", "4"], "RetryAttemptsExhausted", 2)]
    assert host.commits == ["1", "4"]
    assert host.stats.sent_to_destination == 3


def test_settler_bisects_function_errors_without_spending_retries():
    host = Host()
    settler = host.settler(
        bisect_on_function_error=True, max_retry_attempts=0, report_item_failures=False
    )
    settler.start(batch(1, 2, 3, 4))

    invocations = []
    while (records := settler.next_invocation()) is not None:
        invocations.append(sequences(records))
        poisoned = any(r.sequence == "3" for r in records)
        settler.record_result(crash(records) if poisoned else ok())

    assert invocations == [["1", "2", "3", "4"], ["1", "2"], ["3", "4"], ["3"], ["4"]]
    assert host.given_up == [(["3"], "RetryAttemptsExhausted", 0)]
    assert host.commits == ["2", "3", "4"]
    assert host.stats.bisects == 2
    assert settler.settled


def test_settler_without_bisect_retries_the_whole_batch_after_a_function_error():
    host = Host()
    settler = host.settler(max_retry_attempts=1)
    settler.start(batch(1, 2))

    settler.record_result(crash(settler.next_invocation() or []))
    host.now += settler.wait_s()
    settler.record_result(crash(settler.next_invocation() or []))

    assert host.given_up == [(["1", "2"], "RetryAttemptsExhausted", 1)]
    assert host.commits == ["2"]
    assert settler.settled


def test_settler_gives_up_records_older_than_the_maximum_age_before_invoking():
    host = Host()
    settler = host.settler(max_record_age_s=60)
    settler.start(batch(1, 2, arrived_at=NOW - 61) + batch(3, arrived_at=NOW))

    assert sequences(settler.next_invocation()) == ["3"]
    assert host.given_up == [(["1", "2"], "RecordAgeExceeded", 0)]
    assert host.commits == ["2"]


def test_settler_commits_nothing_while_the_destination_refuses_the_given_up_records():
    host = Host(broken_destination=True)
    settler = host.settler(max_retry_attempts=0)
    settler.start(batch(1, 2))

    with pytest.raises(ConnectionError):
        settler.record_result(crash(settler.next_invocation() or []))
    assert host.commits == []
    assert not settler.settled

    host.broken_destination = False  # the next attempt settles it
    settler.record_result(crash(settler.next_invocation() or []))
    assert host.given_up == [(["1", "2"], "RetryAttemptsExhausted", 1)]
    assert host.commits == ["2"]


def test_settler_backoff_grows_and_is_capped():
    host = Host()
    settler = host.settler(base_backoff_s=0.5, max_backoff_s=2.0)
    settler.start(batch(1))
    waits = []
    for _ in range(4):
        settler.record_result(crash(settler.next_invocation() or []))
        waits.append(settler.wait_s())
        host.now += settler.wait_s()

    assert waits == [0.5, 1.0, 2.0, 2.0]


def test_settler_settle_sleeps_through_backoffs_with_an_injected_sleep():
    host = Host()
    settler = host.settler(max_retry_attempts=-1)
    outcomes = iter([partial(0), partial(0), ok()])
    sleeps: list[float] = []

    settler.settle(batch(1, 2), lambda records: next(outcomes), sleeps.append)

    assert sleeps == [0.5, 1.0]
    assert host.commits == ["2"]


def test_settler_refuses_a_new_batch_before_the_last_is_settled():
    settler = Host().settler()
    settler.start(batch(1))

    with pytest.raises(RuntimeError):
        settler.start(batch(2))
