"""Query validation: defaults, limits, and nothing but QueryError on bad input."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.gateway.core.pipeline import upload_key
from services.gateway.core.queries import (
    QueryError,
    anomaly_range,
    consumption_range,
    days_of,
    parse_month,
)

NOW = dt.datetime(2007, 4, 30, 12, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("resolution", "days", "allowed"),
    [("minute", 7, True), ("minute", 8, False), ("hour", 92, True), ("hour", 93, False)],
)
def test_consumption_range_limits_by_resolution(resolution, days, allowed):
    start = NOW - dt.timedelta(days=days)
    if allowed:
        assert consumption_range(start, NOW, resolution, now=NOW) == (start, NOW)
    else:
        with pytest.raises(QueryError) as error:
            consumption_range(start, NOW, resolution, now=NOW)
        assert error.value.code == "range_too_long"


def test_consumption_range_reads_naive_times_as_utc():
    start, end = consumption_range(dt.datetime(2007, 4, 1), None, "day", now=NOW)

    assert start == dt.datetime(2007, 4, 1, tzinfo=dt.UTC)
    assert end == NOW


def test_consumption_range_refuses_empty_and_out_of_range():
    with pytest.raises(QueryError, match="empty_range"):
        consumption_range(NOW, NOW, "hour", now=NOW)
    with pytest.raises(QueryError, match="out_of_range"):
        consumption_range(dt.datetime(1, 1, 1, tzinfo=dt.UTC), None, "day", now=NOW)


@given(st.datetimes(timezones=st.timezones()), st.datetimes(), st.sampled_from(["minute", "day"]))
def test_consumption_range_any_times_give_a_range_or_query_error(start, end, resolution):
    try:
        lo, hi = consumption_range(start, end, resolution, now=NOW)
    except QueryError:
        return
    assert lo < hi


def test_anomaly_range_defaults_to_a_week():
    assert anomaly_range(None, None, now=NOW) == (NOW - dt.timedelta(days=7), NOW)


def test_days_of_end_is_exclusive():
    start = dt.datetime(2007, 4, 1, 23, tzinfo=dt.UTC)

    assert days_of(start, dt.datetime(2007, 4, 3, tzinfo=dt.UTC)) == [
        dt.date(2007, 4, 1),
        dt.date(2007, 4, 2),
    ]


def test_parse_month_default_and_refusal():
    assert parse_month(None, now=NOW) == "2007-04"
    with pytest.raises(QueryError):
        parse_month("2007-13", now=NOW)


@pytest.mark.parametrize("name", ["../x.txt", "x.exe", ".hidden.txt", "a/b.txt"])
def test_upload_key_refuses_unsafe_or_unknown_names(name):
    with pytest.raises(QueryError):
        upload_key(name, None)
