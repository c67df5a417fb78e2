"""The intake core: per-item verdicts, duplicates, limits, and the malformed-input corpus."""

from __future__ import annotations

import datetime as dt
import doctest
import gzip
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.ingest.core import intake
from services.ingest.core.intake import (
    EMPTY_SEEN,
    IntakeLimits,
    IntakeResult,
    IntakeTotals,
    LineTap,
    intake_json,
    intake_uci,
    intake_uci_chunk,
)
from shared.uci import UCI_HEADER, iter_uci
from testing.reliability.bad_batch import BAD_KINDS, bad_batch_body
from tests.conftest import APRIL_2007

CORPUS = Path(__file__).parent / "corpus"
NOW = dt.datetime(2024, 6, 1, tzinfo=dt.UTC)
ROW = "1/4/2007;00:{:02d}:00;3.480;0.238;239.530;14.400;2.000;1.000;18.000\r\n"


def reading(minute: int = 0, **fields: Any) -> dict[str, Any]:
    item = {
        "household_id": "h1",
        "timestamp": f"2007-04-01T00:{minute:02d}:00Z",
        "global_active_power_kw": 3.48,
        "voltage_v": 239.5,
    }
    item.update(fields)
    return item


def body(items: Any) -> bytes:
    return json.dumps(items).encode()


def uci(*rows: str) -> bytes:
    return (UCI_HEADER + "\r\n" + "".join(rows)).encode()


def assert_nothing_lost(result: IntakeResult, payload: bytes, items_in: int) -> None:
    """Every item is accepted, quarantined, a dropped duplicate or a counted gap row."""
    if result.payload_rejection is not None:
        assert result.accepted == []
        (item,) = result.quarantined
        assert item.original == payload
        assert item.reason.startswith(result.payload_rejection.code + ": ")
        return
    totals = result.totals
    assert totals.received == items_in
    assert (
        result.accepted_count
        + len(result.quarantined)
        + totals.duplicates
        + totals.superseded
        + totals.missing
        == items_in
    )
    assert totals.accepted == result.accepted_count
    assert totals.rejected == len(result.quarantined) == sum(totals.rejected_by_code.values())


# ------------------------------------------------------------------------------ corpus


@dataclass(frozen=True)
class Expect:
    """What a corpus file must give: reject codes, and the payload-level code if any."""

    codes: dict[str, int]
    payload: str | None = None
    accepted: int = 0
    duplicates: int = 0
    missing: int = 0
    items: int = 0
    superseded: int = 0  # data items in the file (JSON list items or non-blank CSV data lines)


EXPECTED: dict[str, Expect] = {
    "bad_json.json": Expect({"malformed_json": 1}, payload="malformed_json"),
    "deeply_nested.json": Expect({"malformed_json": 1}, payload="malformed_json"),
    "empty_body.json": Expect({"malformed_json": 1}, payload="malformed_json"),
    "single_object.json": Expect({"wrong_type": 1}, payload="wrong_type"),
    "envelope_unknown_field.json": Expect({"unknown_field": 1}, payload="unknown_field"),
    "latin1.bin": Expect({"bad_encoding": 1}, payload="bad_encoding"),
    "utf16.bin": Expect({"bad_encoding": 1}, payload="bad_encoding"),
    "envelope.json": Expect({}, accepted=2, items=2),
    "wrong_types.json": Expect({"wrong_type": 3, "bad_household_id": 1}, accepted=2, items=6),
    "items_not_objects.json": Expect({"wrong_type": 5}, accepted=1, items=6),
    "nan.json": Expect({"not_finite": 3}, accepted=1, items=4),
    "negative_power.json": Expect({"negative_power": 2}, accepted=1, items=3),
    "voltage_zero.json": Expect({"implausible_voltage": 1}, accepted=1, items=2),
    "voltage_10000.json": Expect({"implausible_voltage": 1}, accepted=1, items=2),
    "future_timestamp.json": Expect({"future_timestamp": 2}, accepted=1, items=3),
    "unknown_field.json": Expect(
        {"unknown_field": 1, "unsupported_schema_version": 1}, accepted=1, items=3
    ),
    "missing_fields.json": Expect({"missing_field": 2, "naive_timestamp": 1}, items=3),
    "injection_household_ids.json": Expect({"bad_household_id": 10}, accepted=1, items=11),
    # item 2 repeats item 0's time with other values: the last wins, item 0 is superseded
    "duplicates.json": Expect(
        {"implausible_voltage": 1}, accepted=3, duplicates=1, superseded=1, items=6
    ),
    # issue 13: the HTTP/JSON cases of the hostile-input run, each with its outcome
    "implausible_timestamps.json": Expect({"implausible_timestamp": 5}, accepted=1, items=6),
    "huge_magnitudes.json": Expect(
        {"implausible_power": 2, "implausible_current": 1, "bad_interval": 2},
        accepted=1,
        items=6,
    ),
    "timestamp_numbers.json": Expect({"bad_timestamp": 3}, accepted=2, items=5),
    "conflict.json": Expect({}, accepted=2, duplicates=1, superseded=1, items=4),
    "duplicate_keys.json": Expect({"malformed_json": 3}, accepted=1, items=4),
    "duplicate_envelope.json": Expect({"malformed_json": 1}, payload="malformed_json"),
    "uci_malformed_lines.csv": Expect({"malformed_line": 3}, accepted=2, items=5),
    "uci_voltage_zero.csv": Expect({"implausible_voltage": 2}, accepted=1, items=3),
    "uci_negative_power.csv": Expect({"negative_power": 1}, accepted=1, items=2),
    "uci_latin1_line.csv": Expect({"bad_encoding": 1}, accepted=2, items=3),
    "uci_future.csv": Expect({"future_timestamp": 1}, accepted=1, items=2),
    "uci_gaps_and_duplicates.csv": Expect({}, accepted=2, duplicates=1, missing=2, items=5),
    "uci_utf16.csv": Expect({"bad_encoding": 1}, payload="bad_encoding"),
    "uci_not_uci.csv": Expect({"malformed_csv": 1}, payload="malformed_csv"),
}


def intake_file(path: Path) -> IntakeResult:
    payload = path.read_bytes()
    if path.suffix == ".csv":
        return intake_uci(payload, household_id="h1", source="test", now=NOW, utc_offset="uci")
    return intake_json(payload, source="test", now=NOW)


def test_corpus_every_file_has_an_expectation():
    assert sorted(p.name for p in CORPUS.iterdir()) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_intake_corpus_gives_expected_codes_and_loses_nothing(name):
    expect = EXPECTED[name]
    payload = (CORPUS / name).read_bytes()

    result = intake_file(CORPUS / name)

    assert (result.payload_rejection.code if result.payload_rejection else None) == expect.payload
    assert dict(result.totals.rejected_by_code) == expect.codes
    assert result.accepted_count == expect.accepted
    assert result.totals.duplicates == expect.duplicates
    assert result.totals.superseded == expect.superseded
    assert result.totals.missing == expect.missing
    assert_nothing_lost(result, payload, expect.items)
    assert all(q.source == "test" and q.quarantined_at == NOW for q in result.quarantined)


@pytest.mark.parametrize("name", sorted(n for n, e in EXPECTED.items() if e.items))
def test_intake_corpus_quarantined_items_are_the_original_items(name):
    payload = (CORPUS / name).read_bytes()
    result = intake_file(CORPUS / name)

    for item in result.quarantined:
        position = int(item.coordinates.sequence_or_offset)
        if name.endswith(".csv"):
            assert item.coordinates.shard_or_partition == "line"
            assert item.original == payload.split(b"\n")[position - 1].rstrip(b"\r")
        else:
            original = json.loads(payload)
            original = original["readings"] if isinstance(original, dict) else original
            assert item.coordinates.shard_or_partition == "item"
            # NaN != NaN, so compare the canonical re-serialisations
            assert json.loads(item.original) == original[position] or (
                json.dumps(json.loads(item.original)) == json.dumps(original[position])
            )


def test_intake_corpus_conflict_keeps_the_last_value_and_names_the_winner():
    result = intake_file(CORPUS / "conflict.json")

    assert [(o.index, o.status, o.code) for o in result.outcomes] == [
        (0, "superseded", "conflict"),
        (1, "accepted", None),
        (2, "duplicate", "duplicate"),
        (3, "accepted", None),
    ]
    assert "item 1" in result.outcomes[0].reason
    by_household = {b.household_id: b for b in result.accepted}
    assert by_household["h1"].columns["global_active_power_kw"].tolist() == [2.0]


def test_intake_corpus_duplicate_keys_name_the_key_and_keep_every_copy():
    result = intake_file(CORPUS / "duplicate_keys.json")

    reasons = [o.reason for o in result.outcomes if o.status == "rejected"]
    assert "'household_id'" in reasons[0]
    assert "'timestamp'" in reasons[1]
    assert b"victim/../attacker" in result.quarantined[0].original  # both copies kept
    assert result.quarantined[0].original.count(b"household_id") == 2


def test_intake_json_10000_bad_items_in_1_mib_are_each_refused_with_a_reason():
    body = bad_batch_body(10_000, target_bytes=1024 * 1024)

    result = intake_json(body, source="http", now=NOW)

    assert len(body) == 1024 * 1024
    assert result.payload_rejection is None
    assert (result.totals.received, result.totals.rejected) == (10_000, 10_000)
    assert result.totals.rejected_by_code == {code: 1_000 for code, _ in BAD_KINDS}
    assert len(result.quarantined) == 10_000
    assert all(o.reason for o in result.outcomes)


# --------------------------------------------------------------------------------- JSON


def test_intake_json_envelope_and_list_give_the_same_readings():
    items = [reading(1), reading(0)]

    listed = intake_json(body(items), source="http", now=NOW)
    wrapped = intake_json(body({"readings": items}), source="http", now=NOW)

    assert [len(b) for b in listed.accepted] == [len(b) for b in wrapped.accepted] == [2]
    assert np.array_equal(listed.accepted[0].timestamps_us, wrapped.accepted[0].timestamps_us)


def test_intake_json_out_of_order_and_late_readings_are_accepted_sorted_per_household():
    items = [reading(5), reading(1, household_id="h2"), reading(0), reading(3)]

    result = intake_json(body(items), source="http", now=NOW)

    by_household = {b.household_id: b for b in result.accepted}
    minutes = (by_household["h1"].timestamps_us - by_household["h1"].timestamps_us[0]) // 60e6
    assert minutes.tolist() == [0, 3, 5]
    assert len(by_household["h2"]) == 1
    assert [o.status for o in result.outcomes] == ["accepted"] * 4
    assert [o.index for o in result.outcomes] == [0, 1, 2, 3]


def test_intake_json_duplicate_keeps_first_occurrence_and_is_not_an_error():
    items = [reading(0, global_active_power_kw=1.0), reading(0, global_active_power_kw=1.0)]

    result = intake_json(body(items), source="http", now=NOW)

    assert [o.status for o in result.outcomes] == ["accepted", "duplicate"]
    assert "item 0" in result.outcomes[1].reason
    assert result.accepted[0].columns["global_active_power_kw"].tolist() == [1.0]
    assert result.quarantined == []
    assert result.totals.rejected == 0
    assert result.totals.superseded == 0


def test_intake_json_conflict_last_value_wins_and_is_reported():
    items = [
        reading(0, global_active_power_kw=1.0),
        reading(0, global_active_power_kw=2.0),
        reading(0, global_active_power_kw=1.0),  # back to the first value: that one wins
        reading(1, global_active_power_kw=5.0),
        reading(1, global_active_power_kw=6.0),
    ]

    result = intake_json(body(items), source="http", now=NOW)

    assert [(o.status, o.code) for o in result.outcomes] == [
        ("accepted", None),
        ("superseded", "conflict"),
        ("duplicate", "duplicate"),
        ("superseded", "conflict"),
        ("accepted", None),
    ]
    assert "item 0" in result.outcomes[1].reason
    assert "item 4" in result.outcomes[3].reason
    assert result.accepted[0].columns["global_active_power_kw"].tolist() == [1.0, 6.0]
    assert (result.totals.superseded, result.totals.duplicates) == (2, 1)
    assert result.totals.metric_counts()["ReadingsSuperseded"] == 2


def test_intake_json_rejected_item_does_not_claim_the_duplicate_slot():
    items = [reading(0, global_active_power_kw=-1.0), reading(0, global_active_power_kw=2.0)]

    result = intake_json(body(items), source="http", now=NOW)

    assert [o.status for o in result.outcomes] == ["rejected", "accepted"]
    assert result.accepted[0].columns["global_active_power_kw"].tolist() == [2.0]


def test_intake_json_same_payload_twice_gives_the_same_result():
    items = [reading(2), reading(0), reading(0), reading(1, voltage_v=0)]

    first = intake_json(body(items), source="http", now=NOW)
    second = intake_json(body(items), source="http", now=NOW)

    assert first.outcomes == second.outcomes
    assert first.quarantined == second.quarantined


def test_intake_json_rejection_names_code_field_and_coordinates():
    result = intake_json(body([reading(0), reading(1, voltage_v=0)]), source="http", now=NOW)

    (item,) = result.quarantined
    assert item.reason.startswith("implausible_voltage: voltage_v = 0.0 V")
    assert item.coordinates.stream == "http"
    assert item.coordinates.sequence_or_offset == "1"
    assert item.coordinates.partition_key == "h1"
    rejected = result.outcomes[1]
    assert (rejected.code, rejected.household_id) == ("implausible_voltage", "h1")
    assert rejected.timestamp == dt.datetime(2007, 4, 1, 0, 1, tzinfo=dt.UTC)


def test_intake_json_empty_list_is_accepted_with_nothing():
    result = intake_json(b"[]", source="http", now=NOW)

    assert result.payload_rejection is None
    assert result.totals == IntakeTotals()


def test_intake_json_too_many_items_rejects_and_keeps_the_whole_body():
    limits = IntakeLimits()
    payload = body([reading(i % 60, household_id=f"h{i}") for i in range(limits.max_items + 1)])

    result = intake_json(payload, source="http", now=NOW, limits=limits)

    assert result.payload_rejection.code == "too_many_items"
    assert str(limits.max_items + 1) in result.payload_rejection.reason
    assert result.totals.received == limits.max_items + 1
    assert_nothing_lost(result, payload, limits.max_items + 1)


def test_intake_json_at_the_item_limit_is_processed():
    payload = body([reading(i % 60, household_id=f"h{i}") for i in range(10_000)])

    result = intake_json(payload, source="http", now=NOW)

    assert result.payload_rejection is None
    assert result.accepted_count == 10_000


def test_intake_json_oversized_body_is_rejected_whole():
    limits = IntakeLimits()
    payload = b'["' + b"x" * limits.max_body_bytes + b'"]'

    result = intake_json(payload, source="http", now=NOW, limits=limits)

    assert result.payload_rejection.code == "payload_too_large"
    assert_nothing_lost(result, payload, 1)


def test_intake_json_original_truncated_past_quarantine_limit_says_so():
    limits = IntakeLimits(max_body_bytes=10, max_quarantined_bytes=16)
    payload = body([reading(0)])

    result = intake_json(payload, source="http", now=NOW, limits=limits)

    (item,) = result.quarantined
    assert item.original == payload[:16]
    assert f"truncated to its first 16 of {len(payload)} bytes" in item.reason


def test_intake_json_size_given_by_shell_counts_over_kept_prefix():
    result = intake_json(b"[", source="http", now=NOW, body_size=7 * 1024 * 1024)

    assert result.payload_rejection.code == "payload_too_large"


json_values = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=6,
)
reading_like = st.builds(
    reading,
    st.integers(0, 59),
    household_id=st.sampled_from(["h1", "h2", "bad id"]),
    voltage_v=st.sampled_from([0, 230.0, 10_000, float("nan")]),
    global_active_power_kw=st.sampled_from([-1, 0.5, 3, float("inf")]),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(reading_like | json_values, max_size=25))
def test_intake_json_any_items_nothing_lost_and_each_judged_alone(items):
    payload = json.dumps(items).encode()

    result = intake_json(payload, source="http", now=NOW)

    assert_nothing_lost(result, payload, len(items))
    assert [o.index for o in result.outcomes] == list(range(len(items)))
    for item in result.quarantined:
        original = items[int(item.coordinates.sequence_or_offset)]
        assert json.dumps(json.loads(item.original)) == json.dumps(original)
    # a good reading among bad ones is accepted unless it repeats an earlier timestamp
    alone = [intake_json(json.dumps([i]).encode(), source="http", now=NOW) for i in items]
    accepted_alone = {i for i, r in enumerate(alone) if r.accepted_count}
    judged = {o.index for o in result.outcomes if o.status in ("accepted", "duplicate")}
    assert judged == accepted_alone


# ---------------------------------------------------------------------------------- UCI


def test_intake_uci_requires_a_valid_household():
    missing = intake_uci(uci(ROW.format(0)), household_id=None, source="http", now=NOW)
    injected = intake_uci(uci(ROW.format(0)), household_id="h1;rm -rf", source="http", now=NOW)

    assert missing.payload_rejection.code == "missing_household"
    assert injected.payload_rejection.code == "bad_household_id"


def test_intake_uci_refuses_gzip_over_http():
    payload = gzip.compress(uci(ROW.format(0)))

    result = intake_uci(payload, household_id="h1", source="http", now=NOW)

    assert result.payload_rejection.code == "bad_encoding"
    assert_nothing_lost(result, payload, 1)


def test_intake_uci_header_only_is_empty_not_an_error():
    result = intake_uci(uci(), household_id="h1", source="http", now=NOW)

    assert result.payload_rejection is None
    assert result.totals == IntakeTotals()


def test_intake_uci_too_many_lines_rejects_the_whole_body():
    limits = IntakeLimits(max_items=3)
    payload = uci(*(ROW.format(m) for m in range(4)))

    result = intake_uci(
        payload, household_id="h1", source="http", now=NOW, limits=limits, utc_offset="uci"
    )

    assert result.payload_rejection.code == "too_many_items"
    assert_nothing_lost(result, payload, 4)


def test_intake_uci_outcomes_carry_line_numbers_across_blank_and_gap_lines():
    payload = uci(
        ROW.format(0),
        "\r\n",
        "1/4/2007;00:01:00;?;?;?;?;?;?;\r\n",
        ROW.format(2).replace("239.530", "0"),
        ROW.format(3),
    )

    result = intake_uci(payload, household_id="h1", source="http", now=NOW, utc_offset="uci")

    assert [(o.index, o.status) for o in result.outcomes] == [
        (2, "accepted"),
        (5, "rejected"),
        (6, "accepted"),
    ]
    assert result.quarantined[0].original == ROW.format(2).replace("239.530", "0").strip().encode()
    assert result.totals.missing == 1


def test_intake_uci_chunk_finds_duplicates_across_chunks():
    payload = uci(ROW.format(0), ROW.format(1), ROW.format(0), ROW.format(2), ROW.format(1))
    tap = LineTap(io.BytesIO(payload))
    seen = EMPTY_SEEN
    results = []

    for chunk in iter_uci(tap, household_id="h1", chunk_rows=2):
        result, seen = intake_uci_chunk(chunk, seen=seen, source="s", now=NOW, raw=tap.take())
        results.append(result)

    totals = sum((r.totals for r in results), IntakeTotals())
    assert (totals.accepted, totals.duplicates, totals.received) == (3, 2, 5)
    statuses = [(o.index, o.status) for r in results for o in r.outcomes]
    assert statuses == [
        (2, "accepted"),
        (3, "accepted"),
        (4, "duplicate"),
        (5, "accepted"),
        (6, "duplicate"),
    ]
    assert results[1].outcomes[0].reason.endswith("an earlier line; the first one is kept")
    assert len(seen) == 3


def test_intake_uci_chunk_conflicts_last_value_wins_within_and_across_chunks():
    other = ROW.replace("3.480", "2.000")
    payload = uci(
        ROW.format(0),
        other.format(0),  # same chunk, other value: line 2 is superseded by line 3
        ROW.format(1),
        ROW.format(1),  # next chunk: identical to an accepted row, a duplicate
        ROW.format(0),  # next chunk, other value than 00:00's winner: published again (the
        # last wins, and the archive records what it replaces)
    )
    tap = LineTap(io.BytesIO(payload))
    seen = EMPTY_SEEN
    results = []

    for chunk in iter_uci(tap, household_id="h1", chunk_rows=3):
        result, seen = intake_uci_chunk(chunk, seen=seen, source="s", now=NOW, raw=tap.take())
        results.append(result)

    statuses = [(o.index, o.status) for r in results for o in r.outcomes]
    assert statuses == [
        (2, "superseded"),
        (3, "accepted"),
        (4, "accepted"),
        (5, "duplicate"),
        (6, "accepted"),
    ]
    assert "line 3" in results[0].outcomes[0].reason
    totals = sum((r.totals for r in results), IntakeTotals())
    assert (totals.accepted, totals.duplicates, totals.superseded) == (3, 1, 1)
    published = [b.columns["global_active_power_kw"].tolist() for r in results for b in r.accepted]
    assert published == [[2.0, 3.48], [3.48]]
    assert len(seen) == 2


def test_intake_uci_chunk_without_raw_lines_reserialises_the_row():
    payload = uci(ROW.format(0).replace("3.480", "-1"))
    (chunk,) = iter_uci(io.BytesIO(payload), household_id="h1")

    result, _ = intake_uci_chunk(chunk, seen=EMPTY_SEEN, source="s", now=NOW)

    (item,) = result.quarantined
    assert item.coordinates is None
    assert json.loads(item.original)["global_active_power_kw"] == -1.0
    assert result.outcomes[0].index is None


def test_intake_uci_april_2007_slice_accepts_every_complete_row():
    tap = LineTap(APRIL_2007.open("rb"))
    seen, totals = EMPTY_SEEN, IntakeTotals()

    for chunk in iter_uci(tap, household_id="uci-sceaux", chunk_rows=10_000):
        result, seen = intake_uci_chunk(
            chunk, seen=seen, source="s", now=NOW, raw=tap.take(), with_outcomes=False
        )
        totals += result.totals
        assert result.outcomes == []

    assert totals == IntakeTotals(received=43_200, accepted=39_477, missing=3_723)


def test_line_tap_gunzips_and_numbers_lines():
    tap = LineTap(io.BytesIO(gzip.compress(b"a\nb\r\nc")))

    assert tap.readline() == b"a\n"
    assert list(tap) == [b"b\r\n", b"c"]
    raw = tap.take()
    assert (raw.get(1), raw.get(2), raw.get(3), raw.get(4)) == (b"a", b"b", b"c", None)
    assert tap.take().first_line_no == 4


# ------------------------------------------------------------------------------- totals


def test_intake_totals_add_up_and_name_metrics_per_code():
    a = IntakeTotals(received=3, accepted=1, rejected=2, rejected_by_code={"x": 2})
    b = IntakeTotals(received=2, rejected=1, duplicates=1, rejected_by_code={"x": 1})

    total = a + b

    assert total == IntakeTotals(
        received=5, accepted=1, rejected=3, duplicates=1, rejected_by_code={"x": 3}
    )
    assert total.metric_counts()["ReadingsRejected_x"] == 3
    assert total.metric_counts()["ReadingsAccepted"] == 1


def test_intake_future_limit_uses_injected_clock():
    item = reading(0, timestamp=(NOW + dt.timedelta(seconds=299)).isoformat())

    ok = intake_json(body([item]), source="http", now=NOW)
    early = intake_json(body([item]), source="http", now=NOW - dt.timedelta(seconds=2))

    assert ok.accepted_count == 1
    assert early.outcomes[0].code == "future_timestamp"


def test_intake_docstring_example_runs():
    result = doctest.testmod(intake)

    assert result.attempted > 0
    assert result.failed == 0
