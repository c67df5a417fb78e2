"""The archive's key layout: what the ingest archive writes and the monthly service reads."""

from __future__ import annotations

import datetime as dt

import pytest

from shared.archive_layout import (
    hive_value,
    parse_summary_key,
    readings_key,
    summary_key,
    summary_prefix,
)

D = dt.date
APRIL_1 = D(2007, 4, 1)


def test_keys_are_hive_style_and_deterministic():
    assert readings_key("MAC000002", APRIL_1) == (
        "readings/household=MAC000002/date=2007-04-01/data.parquet"
    )
    assert summary_key("MAC000002", APRIL_1, prefix="t/") == (
        "t/summaries/household=MAC000002/date=2007-04-01.json"
    )
    assert summary_key("MAC000002", APRIL_1).startswith(summary_prefix("MAC000002"))


def test_keys_escape_a_colon_like_hive():
    assert hive_value("site:7") == "site%3A7"
    assert readings_key("site:7", APRIL_1).startswith("readings/household=site%3A7/")
    assert summary_prefix("site:7") == "summaries/household=site%3A7/"


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("summaries/household=h1/date=2024-05-01.json", ("h1", D(2024, 5, 1))),
        ("summaries/household=uci-sceaux/date=2007-04-30.json", ("uci-sceaux", D(2007, 4, 30))),
        ("summaries/household=h1/date=2024-02-30.json", None),  # no such day
        ("summaries/household=h 1/date=2024-05-01.json", None),
        ("summaries/household=h1/date=2024-05-01.json.tmp", None),
        ("readings/household=h1/date=2024-05-01/data.parquet", None),
        ("summaries/household=../x/date=2024-05-01.json", None),
        ("summaries/household=a%3Ab/date=2024-05-01.json", ("a:b", D(2024, 5, 1))),
        ("summaries/household=a%2Fb/date=2024-05-01.json", None),
    ],
)
def test_parse_summary_key(key, expected):
    assert parse_summary_key(key) == expected


@pytest.mark.parametrize("household", ["h1", "MAC000002", "site:7", "a.b_c-d"])
def test_parse_summary_key_inverts_summary_key(household):
    assert parse_summary_key(summary_key(household, APRIL_1)) == (household, APRIL_1)
