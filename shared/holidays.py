"""Bank holidays of England and Wales, by rule (the London fleet's calendar).

Why rules and not the data set's list: the London package's ``uk_bank_holidays`` file
covers 2012-2014 only and has day and month swapped in several rows (its "Easter Monday
2013" is 2013-01-04, its "Early May bank holiday 2012" 2012-07-05), while forecasts run
for any year. The rules (gov.uk): New Year's Day, Good Friday, Easter Monday, the first
and the last Monday of May, the last Monday of August, Christmas Day and Boxing Day;
a holiday on a weekend moves to the next free weekday. One-off holidays (jubilees,
royal weddings, the 2020 VE day move) are listed in :data:`SPECIAL`.

Example:
    >>> import datetime as dt
    >>> sorted(d.isoformat() for d in bank_holidays(2013))[:3]
    ['2013-01-01', '2013-03-29', '2013-04-01']
"""

from __future__ import annotations

import datetime as dt
import functools
from typing import Final

__all__ = ["SPECIAL", "bank_holidays", "easter_sunday", "french_public_holidays", "is_bank_holiday"]

SPECIAL: Final[dict[int, tuple[tuple[dt.date, ...], tuple[dt.date, ...]]]] = {
    # year: (added days, removed days)
    2002: ((dt.date(2002, 6, 3), dt.date(2002, 6, 4)), (dt.date(2002, 5, 27),)),
    2011: ((dt.date(2011, 4, 29),), ()),
    2012: ((dt.date(2012, 6, 4), dt.date(2012, 6, 5)), (dt.date(2012, 5, 28),)),
    2020: ((dt.date(2020, 5, 8),), (dt.date(2020, 5, 4),)),
    2022: (
        (dt.date(2022, 6, 2), dt.date(2022, 6, 3), dt.date(2022, 9, 19)),
        (dt.date(2022, 5, 30),),
    ),
    2023: ((dt.date(2023, 5, 8),), ()),
}


def easter_sunday(year: int) -> dt.date:
    """Western Easter (the anonymous Gregorian algorithm)."""
    a, b, c = year % 19, year // 100, year % 100
    d, e = b // 4, b % 4
    f = (b + 8) // 25
    g = (b - f + 1) // 3
    h = (19 * a + b - d - g + 15) % 30
    i, k = c // 4, c % 4
    ell = (32 + 2 * e + 2 * i - h - k) % 7
    m = (a + 11 * h + 22 * ell) // 451
    month = (h + ell - 7 * m + 114) // 31
    day = (h + ell - 7 * m + 114) % 31 + 1
    return dt.date(year, month, day)


def _monday(year: int, month: int, last: bool) -> dt.date:
    if last:
        day = dt.date(year + (month == 12), month % 12 + 1, 1) - dt.timedelta(days=1)
        return day - dt.timedelta(days=day.weekday())
    day = dt.date(year, month, 1)
    return day + dt.timedelta(days=(7 - day.weekday()) % 7)


@functools.lru_cache(maxsize=64)
def bank_holidays(year: int) -> frozenset[dt.date]:
    """The bank holidays of ``year`` in England and Wales (substitute days included)."""
    easter = easter_sunday(year)
    days = {
        easter - dt.timedelta(days=2),
        easter + dt.timedelta(days=1),
        _monday(year, 5, last=False),
        _monday(year, 5, last=True),
        _monday(year, 8, last=True),
    }
    new_year = dt.date(year, 1, 1)
    days.add(
        new_year + dt.timedelta(days=(7 - new_year.weekday()) % 7 if new_year.weekday() >= 5 else 0)
    )
    christmas, boxing = dt.date(year, 12, 25), dt.date(year, 12, 26)
    if christmas.weekday() == 5:  # Saturday: Monday 27 and Tuesday 28
        days |= {dt.date(year, 12, 27), dt.date(year, 12, 28)}
    elif christmas.weekday() == 6:  # Sunday: Boxing Day Monday, Christmas Tuesday
        days |= {boxing, dt.date(year, 12, 27)}
    elif christmas.weekday() == 4:  # Friday: Boxing Day (Saturday) moves to Monday 28
        days |= {christmas, dt.date(year, 12, 28)}
    else:
        days |= {christmas, boxing}
    added, removed = SPECIAL.get(year, ((), ()))
    return frozenset((days | set(added)) - set(removed))


def is_bank_holiday(day: dt.date) -> bool:
    """Whether ``day`` is a bank holiday in England and Wales."""
    return day in bank_holidays(day.year)


@functools.lru_cache(maxsize=64)
def french_public_holidays(year: int) -> frozenset[dt.date]:
    """France's eleven public holidays of ``year`` (the UCI household is near Paris)."""
    easter = easter_sunday(year)
    fixed = ((1, 1), (5, 1), (5, 8), (7, 14), (8, 15), (11, 1), (11, 11), (12, 25))
    moving = (easter + dt.timedelta(days=n) for n in (1, 39, 50))  # Monday, Ascension, Whit
    return frozenset({dt.date(year, m, d) for m, d in fixed} | set(moving))
