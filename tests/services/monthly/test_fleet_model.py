"""The fleet model's features, artifact, calibrated quantiles and sample paths."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from services.monthly.core.fleet_model import (
    FEATURES,
    LEVELS,
    FleetModel,
    HouseholdInfo,
    history_bucket,
    situation,
    span_months,
)
from services.monthly.core.series import DailySeries
from tests.services.monthly.fakes import daily_kwh, series_of

AS_OF = dt.date(2024, 3, 10)


def toy_model(offsets: float = 0.0) -> FleetModel:
    """A linear 'network' whose quantiles of y are fixed: 0.7, 0.9, 1.0, 1.1, 1.4."""
    w = np.zeros((len(FEATURES), len(LEVELS)))
    b = np.array([0.7, 0.9, 1.0, 1.1, 1.4])
    return FleetModel(
        layers=((w, b),),
        mean=np.zeros(len(FEATURES)),
        scale=np.ones(len(FEATURES)),
        offsets=np.full((2, 5), offsets),
        meta={"note": "toy"},
    )


def test_situation_reads_nothing_after_the_as_of_day():
    kwh = daily_kwh(100)
    series = series_of(kwh)
    changed = series_of(kwh[:70] + [99.0] * 30)

    a, b = situation(series, AS_OF), situation(changed, AS_OF)

    assert a is not None
    assert b is not None
    assert (AS_OF - series.start).days == 69
    np.testing.assert_array_equal(a.x, b.x)
    assert a.base == b.base


def test_situation_features_are_finite_for_any_history_length():
    kwh = daily_kwh(400)
    for days in (1, 2, 7, 13, 30, 90, 400):
        series = series_of(kwh[:days])
        s = situation(series, series.end, HouseholdInfo("Affluent", "ToU"))
        assert s is not None
        assert s.x.shape == (len(FEATURES),)
        assert np.all(np.isfinite(s.x)), days
        assert len(s.rest_dates) == len(s.shape)
        if len(s.shape):
            assert s.shape.mean() == pytest.approx(1.0)


def test_situation_none_without_usable_positive_days():
    days = [dt.date(2024, 1, 1) + dt.timedelta(days=i) for i in range(10)]
    assert situation(DailySeries.from_days("h", days, [0.0] * 10), days[-1]) is None
    assert situation(DailySeries.from_days("h", days, [5.0] * 10, [0.2] * 10), days[-1]) is None


def test_fleet_model_json_round_trip_is_exact():
    model = toy_model(0.05)
    again = FleetModel.from_json(model.to_json())
    x = np.random.default_rng(0).normal(size=(3, len(FEATURES)))

    np.testing.assert_array_equal(
        model.quantiles(x, [10, 50, 500]), again.quantiles(x, [10, 50, 500])
    )
    assert again.version == model.version


def test_fleet_model_refuses_an_artifact_of_other_features():
    text = toy_model().to_json().replace('"log_r7"', '"log_r8"')
    with pytest.raises(ValueError, match="other features"):
        FleetModel.from_json(text)


def test_fleet_model_offsets_widen_each_band_per_history_bucket():
    model = toy_model()
    offsets = np.array([[0.1, 0.1, 0.0, 0.0, 0.0], [0.3, 0.3, 0.0, 0.0, 0.0]])
    wide = FleetModel(model.layers, model.mean, model.scale, offsets, {})
    x = np.zeros((2, len(FEATURES)))

    q = wide.quantiles(x, [5, 400])

    np.testing.assert_allclose(q[0], [0.4, 0.8, 1.0, 1.2, 1.7])  # bucket 0
    np.testing.assert_allclose(q[1], [0.7, 0.9, 1.0, 1.1, 1.4])  # bucket 4
    assert history_bucket(5) == 0
    assert history_bucket(400) == 4


def test_fleet_model_paths_are_distinct_and_keep_the_calibrated_band():
    series = series_of(daily_kwh(34))  # ~one month: the history that collapsed before
    s = situation(series, series.end)
    assert s is not None
    point, paths = toy_model().paths(s, 500, np.random.default_rng(1))
    totals = paths.sum(axis=1)

    assert len(np.unique(np.round(totals, 6))) == 500
    lo, hi = np.quantile(totals, [0.10, 0.90]) / (s.base * len(s.rest_dates))
    assert lo == pytest.approx(0.9, abs=0.02)
    assert hi == pytest.approx(1.1, abs=0.02)
    assert point.sum() == pytest.approx(s.base * len(s.rest_dates))
    assert np.all(paths >= 0)


def test_span_months_from_the_meta_or_the_first_and_last_training_months():
    model = toy_model()
    assert model.span_months is None  # the artifact does not say
    dated = FleetModel(
        model.layers,
        model.mean,
        model.scale,
        model.offsets,
        {"first_month_end": "2011-12-31", "last_month_end": "2013-06-30"},
    )
    assert dated.span_months == 19.0
    assert FleetModel.from_json(dated.to_json()).span_months == 19.0
    assert span_months("2013-01-31", "2013-01-31") == 1.0


def test_shipped_fleet_model_records_its_training_span():
    from services.monthly.artifacts import default_fleet_model

    model = default_fleet_model()
    assert model.meta["span_months"] == model.span_months
    assert model.span_months is not None
    assert model.span_months >= 24
