"""The in-process MAP backend: the same optimum as Stan's, warm starts, refusals."""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import pandas as pd
import pytest
from prophet import Prophet
from prophet.serialize import model_to_json

from services.monthly.core.forecast import predict_mean
from services.monthly.core.prophet_map import (
    MapBackend,
    MapOptions,
    MapProphet,
    _design,
    _objective,
    model_json,
    negative_log_posterior,
)
from tests.services.monthly.fakes import daily_kwh

logging.getLogger("cmdstanpy").setLevel(logging.WARNING)


def frame(days: int = 240, seed: int = 0) -> pd.DataFrame:
    return pd.DataFrame(
        {"ds": pd.date_range("2024-01-01", periods=days, freq="D"), "y": daily_kwh(days, seed=seed)}
    )


def objective(model: Prophet, data: pd.DataFrame) -> float:
    """The Stan program's objective at the model's fitted parameters."""
    inputs = dataclasses.asdict(Prophet(**_same_options(model)).preprocess(data))
    z, precision, n_changes = _design(inputs)
    p = model.params
    theta = np.concatenate([p["k"][0], p["m"][0], p["delta"][0], p["beta"][0]])
    return negative_log_posterior(
        theta,
        float(p["sigma_obs"][0][0]),
        z,
        np.asarray(inputs["y"]),
        precision,
        n_changes,
        float(inputs["tau"]),
    )


def _same_options(model: Prophet) -> dict[str, object]:
    return {"yearly_seasonality": model.yearly_seasonality, "uncertainty_samples": 0}


def map_model(data: pd.DataFrame, options: MapOptions | None = None, **fit: object) -> Prophet:
    model = Prophet(yearly_seasonality=False, uncertainty_samples=0)
    model.stan_backend = MapBackend(options)
    return model.fit(data, **fit)


def test_map_backend_reaches_at_least_stans_posterior_mode():
    data = frame()
    stan = Prophet(yearly_seasonality=False, uncertainty_samples=0).fit(data)

    ours = map_model(data, MapOptions(max_iter=500, tol=1e-10))

    assert objective(ours, data) <= objective(stan, data) + 1e-3 * abs(objective(stan, data))
    days = pd.DataFrame({"ds": pd.date_range("2024-08-28", periods=30, freq="D")})
    gap = np.abs(ours.predict(days)["yhat"] - stan.predict(days)["yhat"]).max()
    assert gap < 0.05 * float(data["y"].mean())


def test_map_backend_warm_start_from_its_own_optimum_converges_at_once():
    data = frame()
    cold = map_model(data, MapOptions(max_iter=1000, tol=1e-12))
    init = {name: cold.params[name][0] for name in ("delta", "beta")}
    init |= {name: cold.params[name][0][0] for name in ("k", "m", "sigma_obs")}

    warm = map_model(data, MapOptions(max_iter=1000, tol=1e-12), init=init)

    assert cold.stan_backend.last_fit.warm_started is False
    assert warm.stan_backend.last_fit.warm_started is True
    assert warm.stan_backend.last_fit.iterations < cold.stan_backend.last_fit.iterations
    # the same optimum (the warm fit can only go further down the same objective)
    assert warm.stan_backend.last_fit.objective <= cold.stan_backend.last_fit.objective
    assert warm.stan_backend.last_fit.objective == pytest.approx(
        cold.stan_backend.last_fit.objective, rel=1e-7
    )


def test_map_backend_ignores_a_warm_start_of_another_shape():
    data = frame()
    init = {"k": 0.1, "m": 0.5, "sigma_obs": 0.1, "delta": np.zeros(3), "beta": np.zeros(2)}

    model = map_model(data, init=init)

    assert model.stan_backend.last_fit.warm_started is False


def test_map_backend_refuses_multiplicative_seasonality():
    model = Prophet(seasonality_mode="multiplicative", uncertainty_samples=0)
    model.stan_backend = MapBackend()

    with pytest.raises(NotImplementedError, match="additive"):
        model.fit(frame())


def test_predict_mean_equals_prophets_predict():
    data = frame(800)
    model = Prophet(uncertainty_samples=0)  # yearly on: 800 days
    model.stan_backend = MapBackend()
    model.fit(data)
    days = np.arange(np.datetime64("2026-03-10"), np.datetime64("2026-04-10"))

    ours = predict_mean(model, days)

    expected = model.predict(pd.DataFrame({"ds": days.astype("datetime64[ns]")}))["yhat"]
    np.testing.assert_allclose(ours, expected.to_numpy(), rtol=1e-9, atol=1e-9)


def test_objective_from_rss_equals_negative_log_posterior():
    inputs = dataclasses.asdict(Prophet(uncertainty_samples=0).preprocess(frame()))
    z, precision, n_changes = _design(inputs)
    y = np.asarray(inputs["y"])
    theta = np.random.default_rng(3).normal(0, 0.1, z.shape[1])
    residual = y - z @ theta

    direct = negative_log_posterior(theta, 0.2, z, y, precision, n_changes, 0.05)
    from_rss = _objective(
        theta, 0.2, float(residual @ residual), len(y), precision, n_changes, 0.05
    )

    assert from_rss == direct


@pytest.mark.parametrize("days", [60, 240, 800])  # weekly only; weekly + yearly from 730
def test_map_prophet_fits_and_serialises_exactly_like_prophet(days):
    """The layout cache changes nothing: same parameters, tables and checkpoint bytes,
    for the first model of a layout and for later ones (served from the cache)."""
    for seed in (0, 1):
        data = frame(days, seed=seed)
        plain = Prophet(uncertainty_samples=0)
        plain.stan_backend = MapBackend()
        plain.fit(data)
        fast = MapProphet(uncertainty_samples=0)
        fast.stan_backend = MapBackend()
        fast.fit(data)

        assert fast.component_modes == plain.component_modes
        pd.testing.assert_frame_equal(fast.train_component_cols, plain.train_component_cols)
        for name, value in plain.params.items():
            np.testing.assert_array_equal(fast.params[name], value)
        assert model_to_json(fast) == model_to_json(plain)
        assert model_json(fast) == model_json(plain) == model_to_json(plain)  # cached twice
    future = pd.DataFrame({"ds": pd.date_range(data["ds"].max(), periods=5, freq="D")})
    pd.testing.assert_frame_equal(fast.predict(future), plain.predict(future))


def test_map_prophet_cached_layout_is_not_shared_between_models():
    first = MapProphet(uncertainty_samples=0)
    first.stan_backend = MapBackend()
    first.fit(frame(120))
    first.train_component_cols.iloc[0, 0] = 99  # a caller's change stays in its model
    first.component_modes["additive"].append("mine")

    second = MapProphet(uncertainty_samples=0)
    second.stan_backend = MapBackend()
    second.fit(frame(120, seed=4))

    assert (second.train_component_cols.to_numpy() <= 1).all()
    assert "mine" not in second.component_modes["additive"]


@pytest.mark.parametrize(("period", "order"), [(7, 3), (365.25, 10), (30.5, 5)])
def test_map_prophet_fourier_series_is_prophets_bit_for_bit(period, order):
    dates = pd.Series(pd.date_range("2011-11-23", periods=900, freq="D")).sample(
        frac=1.0, random_state=1
    )

    ours = MapProphet.fourier_series(dates, period, order)

    np.testing.assert_array_equal(ours, Prophet.fourier_series(dates, period, order))


def test_model_json_of_other_layouts_and_without_component_table():
    """Different layouts get their own component table; an unfitted model is refused."""
    weekly = map_model(frame(100))
    yearly = Prophet(uncertainty_samples=0)
    yearly.stan_backend = MapBackend()
    yearly.fit(frame(800))

    assert model_json(weekly) == model_to_json(weekly)
    assert model_json(yearly) == model_to_json(yearly)
    with pytest.raises(ValueError, match="fit"):
        model_json(Prophet())
