"""The components plot: the data document, then the PNG drawn from it (shared renderer)."""

from __future__ import annotations

import datetime as dt
import io

import numpy as np
from matplotlib.image import imread

from services.monthly.core.forecast import forecast_month
from services.monthly.core.plot import components_document
from services.monthly.core.series import HourlySeries
from shared.monthly_plot import PNG_MAGIC, components_figure, drawn_panels, render_png
from shared.monthly_results import MonthlyComponents
from tests.services.monthly.fakes import daily_kwh, series_of

AS_OF = dt.date(2024, 9, 10)


def _document(days: int, as_of: dt.date, **kwargs: object) -> MonthlyComponents:
    result = forecast_month(series_of(daily_kwh(days)), as_of, checkpoint=False, **kwargs)  # type: ignore[arg-type]
    return components_document(
        result.components, "h1", as_of, fallback_reason=result.forecast.fallback_reason
    )


def test_components_document_round_trips_as_json_with_the_fitted_parts():
    hours = np.datetime64("2024-08-20T00", "h") + np.arange(24 * 21)
    hourly = HourlySeries(hours, 0.5 + (np.arange(len(hours)) % 24 == 19).astype(float))
    document = _document(254, AS_OF, hourly=hourly)

    again = MonthlyComponents.model_validate_json(document.model_dump_json())

    assert again == document
    assert len(document.weekly or []) == 7
    assert len(document.daily or []) == 24
    assert document.yearly is None
    assert "730" in document.notes["yearly"]
    assert document.forecast_from == AS_OF + dt.timedelta(days=1)
    assert len(document.trend) == len(document.trend_dates)


def test_components_plot_draws_only_fitted_panels_in_order_and_says_what_is_missing():
    hours = np.datetime64("2024-08-20T00", "h") + np.arange(24 * 21)
    hourly = HourlySeries(hours, 0.5 + (np.arange(len(hours)) % 24 == 19).astype(float))
    document = _document(254, AS_OF, hourly=hourly)

    figure = components_figure(document)

    titles = [ax.get_title().split(" ")[0] for ax in figure.axes]
    assert titles == ["trend", "weekly", "daily"] == list(drawn_panels(document))
    assert all(ax.lines for ax in figure.axes)  # no empty panel
    assert "730" in figure.get_supxlabel()  # yearly: says why it is absent


def test_render_png_is_a_png_and_the_same_for_the_same_components():
    document = _document(254, AS_OF)

    png = render_png(document)

    assert png.startswith(PNG_MAGIC)
    assert imread(io.BytesIO(png)).shape[1] == 640
    assert render_png(document) == png


def test_fallback_plot_is_one_panel_titled_fallback():
    document = _document(5, dt.date(2024, 1, 5))

    figure = components_figure(document)

    assert document.fallback_reason
    assert len(figure.axes) == 1  # no empty component panels
    assert "FALLBACK" in figure.get_suptitle()
    assert render_png(document).startswith(PNG_MAGIC)
