"""The components plot: four panels, PNG bytes, deterministic, notes where not fitted."""

from __future__ import annotations

import datetime as dt
import io

import numpy as np
from matplotlib.image import imread

from services.monthly.core.forecast import forecast_month
from services.monthly.core.plot import PANELS, PNG_MAGIC, components_figure, render_png
from services.monthly.core.series import HourlySeries
from tests.services.monthly.fakes import daily_kwh, series_of

AS_OF = dt.date(2024, 9, 10)


def test_components_plot_has_four_panels_in_order():
    hours = np.datetime64("2024-08-20T00", "h") + np.arange(24 * 21)
    hourly = HourlySeries(hours, 0.5 + (np.arange(len(hours)) % 24 == 19).astype(float))
    result = forecast_month(series_of(daily_kwh(254)), AS_OF, hourly=hourly, checkpoint=False)

    figure = components_figure(result.components)

    titles = [ax.get_title().split(" ")[0] for ax in figure.axes]
    assert titles == list(PANELS)
    assert all(ax.lines for ax in figure.axes[:3])  # trend, weekly, daily drawn
    assert "730" in figure.axes[3].texts[0].get_text()  # yearly: says why it is absent


def test_render_png_is_a_png_and_the_same_for_the_same_forecast():
    result = forecast_month(series_of(daily_kwh(254)), AS_OF, checkpoint=False)

    png = render_png(result.components)

    assert png.startswith(PNG_MAGIC)
    assert imread(io.BytesIO(png)).shape[:2] == (720, 640)
    assert render_png(result.components) == png


def test_fallback_plot_says_it_is_the_fallback():
    result = forecast_month(series_of(daily_kwh(5)), dt.date(2024, 1, 5), checkpoint=False)

    figure = components_figure(result.components)

    assert "fallback" in figure.axes[0].texts[0].get_text()
    assert render_png(result.components).startswith(PNG_MAGIC)
