"""Debouncing rules: keys, the as-of day, fingerprints and the summaries cache."""

from __future__ import annotations

import datetime as dt

import pytest

from services.monthly.core.debounce import (
    CachedSummary,
    checkpoint_key,
    decode_cache,
    encode_cache,
    input_fingerprint,
    month_prefix,
    plan_forecast,
    result_key,
    target_day,
)

D = dt.date


def test_keys_are_deterministic_per_household_and_as_of_day():
    assert result_key("MAC000002", D(2013, 6, 14)) == (
        "results/monthly/household=MAC000002/month=2013-06/as_of=2013-06-14.json"
    )
    assert month_prefix("MAC000002", "2013-06") == (
        "results/monthly/household=MAC000002/month=2013-06/"
    )
    assert checkpoint_key("uci-sceaux") == "checkpoints/monthly/household=uci-sceaux/model.json"
    assert result_key("a:b", D(2024, 1, 2)).startswith("results/monthly/household=a%3Ab/")


@pytest.mark.parametrize(
    ("coverage", "expected"),
    [
        ({}, None),
        ({D(2024, 5, 1): 0.3}, None),  # the only day is still filling up
        ({D(2024, 5, 1): 0.995}, D(2024, 5, 1)),  # complete (a few minutes missing)
        ({D(2024, 5, 1): 0.3, D(2024, 5, 2): 0.1}, D(2024, 5, 1)),  # superseded: final
        ({D(2024, 5, 1): 1.0, D(2024, 5, 3): 1.0}, D(2024, 5, 3)),
    ],
)
def test_target_day_is_the_newest_final_day(coverage, expected):
    assert target_day(coverage) == expected


def entries(*days: tuple[int, str], coverage: float = 1.0) -> dict[dt.date, CachedSummary]:
    return {D(2024, 5, d): CachedSummary(etag, 10.0, coverage) for d, etag in days}


def test_plan_for_an_older_or_repeated_event_is_the_same_plan():
    summaries = entries((1, "a"), (2, "b"), (3, "c"))

    first = plan_forecast("h1", summaries, settings_fingerprint="s", history_days=None)
    again = plan_forecast(
        "h1", dict(reversed(summaries.items())), settings_fingerprint="s", history_days=None
    )

    assert first.as_of == D(2024, 5, 3)
    assert first == again


def test_fingerprint_changes_with_any_input_in_the_window_only():
    base = plan_forecast(
        "h1", entries((1, "a"), (2, "b"), (3, "c")), settings_fingerprint="s", history_days=2
    )
    corrected = plan_forecast(
        "h1", entries((1, "a"), (2, "B"), (3, "c")), settings_fingerprint="s", history_days=2
    )
    outside = plan_forecast(
        "h1", entries((1, "A"), (2, "b"), (3, "c")), settings_fingerprint="s", history_days=2
    )
    other_model = plan_forecast(
        "h1", entries((1, "a"), (2, "b"), (3, "c")), settings_fingerprint="t", history_days=2
    )

    assert base.window == (D(2024, 5, 2), D(2024, 5, 3))
    assert corrected.fingerprint != base.fingerprint
    assert outside.fingerprint == base.fingerprint
    assert other_model.fingerprint != base.fingerprint


def test_plan_ignores_invalid_summaries_for_the_as_of_day_but_fingerprints_them():
    summaries = entries((1, "a"), (2, "b"))
    summaries[D(2024, 5, 3)] = CachedSummary("bad", None, None)

    plan = plan_forecast("h1", summaries, settings_fingerprint="s", history_days=None)

    assert plan.as_of == D(2024, 5, 2)
    assert plan.fingerprint == input_fingerprint(
        "s", D(2024, 5, 2), {D(2024, 5, 1): "a", D(2024, 5, 2): "b"}
    )


def test_plan_without_a_final_day_skips():
    plan = plan_forecast(
        "h1", entries((1, "a"), coverage=0.4), settings_fingerprint="s", history_days=None
    )

    assert (plan.as_of, plan.fingerprint, plan.skip_reason) == (None, None, "no final day yet")


def test_cache_round_trips_and_garbage_is_an_empty_cache():
    cache = entries((1, "a"), (2, "b"))
    cache[D(2024, 5, 3)] = CachedSummary("bad", None, None)

    assert decode_cache(encode_cache(cache)) == cache
    assert encode_cache(cache) == encode_cache(dict(reversed(cache.items())))
    for garbage in (None, b"", b"{", b"[]", b'{"version": 99, "days": {}}', b'{"version": 1}'):
        assert decode_cache(garbage) == {}
