"""Bank holidays of England and Wales by rule."""

from __future__ import annotations

import datetime as dt

import pytest

from shared.holidays import bank_holidays, easter_sunday, is_bank_holiday

# gov.uk's lists (the London data set's file has day and month swapped in several rows)
GOV_UK = {
    2012: [
        "2012-01-02", "2012-04-06", "2012-04-09", "2012-05-07", "2012-06-04",
        "2012-06-05", "2012-08-27", "2012-12-25", "2012-12-26",
    ],
    2013: [
        "2013-01-01", "2013-03-29", "2013-04-01", "2013-05-06", "2013-05-27",
        "2013-08-26", "2013-12-25", "2013-12-26",
    ],
    2021: [
        "2021-01-01", "2021-04-02", "2021-04-05", "2021-05-03", "2021-05-31",
        "2021-08-30", "2021-12-27", "2021-12-28",
    ],
    2022: [
        "2022-01-03", "2022-04-15", "2022-04-18", "2022-05-02", "2022-06-02", "2022-06-03",
        "2022-08-29", "2022-09-19", "2022-12-26", "2022-12-27",
    ],
}  # fmt: skip


@pytest.mark.parametrize("year", sorted(GOV_UK))
def test_bank_holidays_match_gov_uk(year):
    assert sorted(d.isoformat() for d in bank_holidays(year)) == GOV_UK[year]


def test_easter_sunday_known_years():
    assert easter_sunday(2013) == dt.date(2013, 3, 31)
    assert easter_sunday(2024) == dt.date(2024, 3, 31)
    assert easter_sunday(2010) == dt.date(2010, 4, 4)


def test_is_bank_holiday_weekend_day_is_not_one():
    assert is_bank_holiday(dt.date(2013, 12, 25))
    assert not is_bank_holiday(dt.date(2021, 12, 25))  # a Saturday: moved to the 27th
