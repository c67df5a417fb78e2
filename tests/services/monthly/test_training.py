"""Training the fleet model: samples, honest splits, reproducibility, calibration."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from services.monthly.core.fleet_model import FEATURES, HouseholdInfo
from services.monthly.core.series import DailySeries
from services.monthly.training import (
    INFO_FEATURES,
    SampleSet,
    TrainOptions,
    household_samples,
    household_split,
    mask_info,
    roles,
    sample_fleet,
    train,
)

START = dt.date(2012, 1, 1)


def fleet(n: int = 60, days: int = 500) -> list[DailySeries]:
    """Households with a level, a weekend bump, a shared winter swing and noise (seeded)."""
    out = []
    dates = [START + dt.timedelta(days=i) for i in range(days)]
    winter = np.array([np.cos(2 * np.pi * (d.timetuple().tm_yday - 15) / 365) for d in dates])
    for h in range(n):
        rng = np.random.default_rng(h)
        level = rng.uniform(5, 20)
        weekend = np.array([d.weekday() >= 5 for d in dates])
        kwh = level * (1 + 0.25 * winter + 0.2 * weekend) * rng.lognormal(0, 0.15, days)
        first = int(rng.integers(0, 60))
        out.append(DailySeries.from_days(f"H{h:03d}", dates[first:], kwh[first:]))
    return out


@pytest.fixture(scope="module")
def samples() -> SampleSet:
    return sample_fleet(fleet(), {"H000": HouseholdInfo("Affluent", "ToU")}, seed=0)


def test_household_samples_target_is_the_rest_mean_over_the_recent_level():
    series = fleet(1)[0]
    s = household_samples(series, None, np.random.default_rng(0))

    assert len(s) > 0
    i = 0
    as_of = s.as_of[i].astype(object)
    end = s.month_end[i].astype(object)
    rest = series.between(as_of + dt.timedelta(days=1), end).kwh
    recent = series.between(as_of - dt.timedelta(days=27), as_of).kwh
    assert s.y[i] == pytest.approx(rest.mean() / np.nanmean(recent))
    assert np.all(s.month_end > s.as_of)
    assert s.x.shape == (len(s), len(FEATURES))


def test_household_samples_include_the_first_weeks_of_a_new_household():
    s = household_samples(fleet(1)[0], None, np.random.default_rng(0))
    assert (s.usable_days < 28).sum() >= 5


def test_sample_fleet_is_seeded_by_household(samples):
    again = sample_fleet(fleet(), {"H000": HouseholdInfo("Affluent", "ToU")}, seed=0)
    np.testing.assert_array_equal(samples.x, again.x)
    np.testing.assert_array_equal(samples.as_of, again.as_of)


def test_roles_split_households_not_samples(samples):
    options = TrainOptions(holdout=0.2)
    r = roles(samples, options)
    for household in np.unique(samples.household):
        assert len(set(r[samples.household == household])) == 1
    assert {"train", "holdout"} == set(r)
    assert household_split("H001") == household_split("H001")


def test_mask_info_hides_ids_consistently(samples):
    masked = mask_info(samples, 0, share=1.0)
    assert not masked.x[:, INFO_FEATURES].any()
    assert samples.x[samples.household == "H000"][:, INFO_FEATURES].any()


def test_train_is_reproducible_and_honest_in_time(samples):
    options = TrainOptions(until=dt.date(2013, 1, 1), epochs=2, holdout=0.2)

    a = train(samples, options)
    b = train(samples, options)

    assert a.to_json() == b.to_json()
    assert a.meta["last_month_end"] < "2013-01-01"
    assert a.meta["calibration_from"] < a.meta["last_month_end"]  # calibrated out of time
    assert a.meta["until"] == "2013-01-01"
    assert a.meta["first_month_end"] <= a.meta["last_month_end"]
    assert a.span_months == a.meta["span_months"] >= 1  # the blend weighs it by this


def test_train_calibrates_the_bands_on_unseen_households(samples):
    options = TrainOptions(epochs=4, holdout=0.3, seed=1)
    model = train(samples, options)
    test = samples.take(roles(samples, options) == "holdout")

    q = model.quantiles(test.x, test.usable_days)
    in80 = np.mean((test.y >= q[:, 1]) & (test.y <= q[:, 3]))
    in95 = np.mean((test.y >= q[:, 0]) & (test.y <= q[:, 4]))

    assert 0.65 <= in80 <= 0.95
    assert in95 >= 0.85
    assert in80 < in95


def test_train_refuses_too_few_samples(samples):
    with pytest.raises(ValueError, match="too few samples"):
        train(samples, TrainOptions(until=dt.date(2012, 2, 1)))
