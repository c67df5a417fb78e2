"""The in-process MAP backend: the same optimum as Stan's, warm starts, refusals."""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import pandas as pd
import pytest
from prophet import Prophet

from services.monthly.core.forecast import predict_mean
from services.monthly.core.prophet_map import (
    MapBackend,
    MapOptions,
    _design,
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
