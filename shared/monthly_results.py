"""What the monthly service writes besides its forecasts, and where: plot data, accuracy.

Why here: the monthly service writes these documents and the gateway reads them; services
never import each other, so the models and the keys are part of the wire contract.

* **Components** (:class:`MonthlyComponents`): the numbers behind the Prophet components
  plot (trend, weekly, daily, yearly) of one forecast, a few kB of JSON. The monthly
  service writes only this (rendering a PNG costs ten times the forecast itself); the
  gateway renders the PNG the first time somebody asks for it
  (:mod:`shared.monthly_plot`) and keeps it at :func:`rendered_plot_key`.
* **Accuracy** (:class:`MonthlyAccuracy`): once a month is complete, its actual total next
  to every forecast made for it (error, absolute % error, interval hits), one document per
  household (:func:`accuracy_key`).

Keys are outside ``results/``: the gateway indexes every ``results/**.json`` as a
:class:`~shared.schema.MonthlyForecast`, and these are not.

Example:
    >>> import datetime as dt
    >>> components_key("site:7", dt.date(2007, 4, 30))
    'plots/monthly/household=site%3A7/month=2007-04/as_of=2007-04-30/components.json'
    >>> rendered_plot_key(components_key("h1", dt.date(2007, 4, 30)), b"{}")
    'plots/monthly/household=h1/month=2007-04/as_of=2007-04-30/components-44136fa355b3678a.png'
    >>> accuracy_key("h1")
    'accuracy/monthly/household=h1.json'
"""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Annotated, Final, Literal

from pydantic import Field, StringConstraints

from shared.archive_layout import hive_value
from shared.schema import HouseholdId, _WireModel

__all__ = [
    "ACCURACY_PREFIX",
    "PLOTS_PREFIX",
    "ForecastError",
    "MonthAccuracy",
    "MonthlyAccuracy",
    "MonthlyComponents",
    "accuracy_key",
    "components_key",
    "is_plot_data",
    "rendered_plot_key",
]

PLOTS_PREFIX: Final = "plots/monthly/"
ACCURACY_PREFIX: Final = "accuracy/monthly/"
_DATA_SUFFIX: Final = ".json"
_PNG_SUFFIX: Final = ".png"

Month = Annotated[str, StringConstraints(pattern=r"^\d{4}-(0[1-9]|1[0-2])$")]


def components_key(household_id: str, as_of: dt.date) -> str:
    """The components data of the forecast of (household, as-of day)."""
    return (
        f"{PLOTS_PREFIX}household={hive_value(household_id)}/month={as_of:%Y-%m}/"
        f"as_of={as_of.isoformat()}/components{_DATA_SUFFIX}"
    )


def rendered_plot_key(source_key: str, data: bytes) -> str:
    """Where the PNG rendered from ``data`` (the object at ``source_key``) is cached.

    The key carries a digest of the data: a forecast recomputed in place (a late
    correction) rewrites its plot data, and the next request renders it anew instead of
    serving the old picture.
    """
    if not source_key.endswith(_DATA_SUFFIX):
        raise ValueError(f"not a plot data key: {source_key!r}")
    digest = hashlib.sha256(data).hexdigest()[:16]
    return f"{source_key.removesuffix(_DATA_SUFFIX)}-{digest}{_PNG_SUFFIX}"


def is_plot_data(key: str) -> bool:
    """Whether a ``plot_keys`` value names plot data (rendered on demand), not a PNG."""
    return key.startswith(PLOTS_PREFIX) and key.endswith(_DATA_SUFFIX)


def accuracy_key(household_id: str) -> str:
    """The household's :class:`MonthlyAccuracy` (every completed month)."""
    return f"{ACCURACY_PREFIX}household={hive_value(household_id)}{_DATA_SUFFIX}"


class MonthlyComponents(_WireModel):
    """The numbers of a components plot, in the units of the fit.

    ``trend`` covers the fitted history and the forecast days (None where the model has
    no trend, e.g. the fallback); ``forecast_from`` is the first forecast day;
    ``observed`` are the usable daily kWh. ``weekly`` (Monday first, kWh/day), ``daily``
    (hour 0..23 UTC, kW) and ``yearly`` (day of year, kWh/day) are None when not fitted,
    and ``notes`` say why. ``fallback_reason`` is the forecast's own.
    """

    household_id: HouseholdId
    as_of: dt.date
    title: str = ""
    forecast_from: dt.date
    trend_dates: list[dt.date]
    trend: list[float | None]
    observed_dates: list[dt.date]
    observed: list[float]
    weekly: list[float] | None = None
    daily: list[float] | None = None
    yearly: list[float] | None = None
    notes: dict[str, str] = Field(default_factory=dict)
    fallback_reason: str | None = None


class ForecastError(_WireModel):
    """One forecast made for a completed month, next to the month's actual total.

    ``error_kwh`` is forecast minus actual; ``abs_pct_error`` is None when the actual
    total is 0. ``days_ahead`` is how many days of the month were still to come.
    """

    as_of: dt.date
    days_ahead: Annotated[int, Field(ge=0)]
    month_total_kwh: float
    lower_80: float
    upper_80: float
    lower_95: float
    upper_95: float
    error_kwh: float
    abs_pct_error: float | None
    inside_80: bool
    inside_95: bool
    model_version: str
    fallback_reason: str | None = None


class MonthAccuracy(_WireModel):
    """A completed month of one household: the actual total and every forecast of it.

    ``days_observed`` days had a valid summary (``coverage``: their mean coverage over
    all the month's days, missing ones as 0), so a month with gaps says so. ``mape`` is
    the mean ``abs_pct_error`` over the forecasts with days still ahead (None if none).
    ``inputs`` fingerprints the summaries the actual was computed from.
    """

    month: Month
    actual_kwh: float
    days: Annotated[int, Field(ge=28, le=31)]
    days_observed: Annotated[int, Field(ge=0, le=31)]
    coverage: Annotated[float, Field(ge=0, le=1)]
    complete_because: Literal["last_day_final", "later_month_started"]
    inputs: str
    forecasts: list[ForecastError]
    mape: float | None = None


class MonthlyAccuracy(_WireModel):
    """Every completed month of a household that had forecasts, oldest first."""

    household_id: HouseholdId
    months: list[MonthAccuracy]
