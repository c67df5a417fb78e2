"""The gateway's HTTP API: household-scoped reads of the query store, pipeline controls.

A thin shell over the query store (``GatewayStore``) and the pure cores: it checks the
bearer token (:mod:`services.gateway.core.tokens`), validates the query
(:mod:`services.gateway.core.queries`), reads through the injected ports and answers
JSON. The same app runs on Lambda (``api_lambda``, Mangum), under uvicorn, and in tests
with fakes; its OpenAPI schema is at ``/openapi.json`` (docs at ``/docs``).

Answers: 401 without a valid token (missing, forged, malformed or expired), 403 for a
valid token asking for another household's data or for an operator route, 422 for a
malformed or too large query (what is allowed is in the reason), 404 when there is
nothing yet (no forecast, no monthly result), 501 for a pipeline control this deployment
does not offer. Every error has the same JSON body: ``{"error": {"code", "reason"}}``.
"""

from __future__ import annotations

import datetime as dt
import mimetypes
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Final, Literal

from fastapi import Body, Depends, FastAPI, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from services.gateway.core.accuracy import (
    DEFINITIONS,
    HORIZON_DESCRIPTIONS,
    HORIZONS,
    Horizon,
    HorizonMetrics,
    fleet_accuracy,
    join,
)
from services.gateway.core.consumption import Resolution, aggregate
from services.gateway.core.model import HouseholdSummary, pipeline_health
from services.gateway.core.pipeline import (
    UPLOAD_PREFIX,
    ReplayJob,
    ReplayRequest,
    UploadStatus,
    report_key_of,
    upload_key,
    upload_metadata,
)
from services.gateway.core.queries import (
    QueryError,
    anomaly_range,
    consumption_range,
    days_of,
    history_range,
    parse_month,
)
from services.gateway.core.tokens import Principal, TokenError, verify_token
from services.gateway.ports import (
    GatewayStore,
    ObjectMissing,
    ObjectReader,
    ObjectWriter,
    QueueDepths,
    ReplayBusy,
    ReplayStarter,
    UploadStore,
)
from shared.batch import datetime_to_us, us_to_datetime
from shared.http_safety import SECURITY_HEADERS, SafeJSONResponse, SecurityHeadersMiddleware
from shared.monthly_results import (
    MonthAccuracy,
    MonthlyAccuracy,
    MonthlyComponents,
    accuracy_key,
    is_plot_data,
    rendered_plot_key,
)
from shared.schema import HOUSEHOLD_ID_PATTERN, Forecast, MonthlyForecast
from shared.shell import ShellDeps

__all__ = ["ApiDeps", "ApiError", "create_app"]

MONTH_PATTERN: Final = r"^\d{4}-(0[1-9]|1[0-2])$"
_PLOT_NAME: Final = r"^[A-Za-z0-9_.-]{1,64}$"
_UPLOAD_KEY: Final = r"^uploads/[A-Za-z0-9_.:/-]{1,300}$"


def _render_png(components: MonthlyComponents) -> bytes:
    """The shared renderer, imported on first use: matplotlib loads with the first plot."""
    from shared.monthly_plot import render_png

    return render_png(components)


@dataclass(frozen=True)
class ApiDeps(ShellDeps):
    """Everything the API talks to; ``replay``/``uploads`` are optional controls.

    ``render_plot`` draws a monthly components plot from its data (default
    :func:`shared.monthly_plot.render_png`, imported on first use: matplotlib loads only
    when a plot is first asked for); ``plot_cache`` keeps what was rendered (None: render
    on every request).
    """

    store: GatewayStore
    token_secret: str
    objects: ObjectReader | None = None
    models_bucket: str | None = None
    plot_cache: ObjectWriter | None = None
    render_plot: Callable[[MonthlyComponents], bytes] | None = None
    queues: QueueDepths | None = None
    replay: ReplayStarter | None = None
    uploads: UploadStore | None = None
    max_upload_bytes: int = 64 * 1024 * 1024
    throughput_window: dt.timedelta = dt.timedelta(minutes=5)


# ---------------------------------------------------------------------- wire models


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ErrorDetail(_Model):
    code: str
    reason: str
    field: str | None = None


class ErrorResponse(_Model):
    """The body of every 4xx/5xx answer."""

    error: ErrorDetail
    detail: list[dict[str, Any]] | None = None


class Household(_Model):
    household_id: str
    last_reading_at: dt.datetime | None = None


class HouseholdsResponse(_Model):
    households: list[Household]


class ConsumptionPoint(_Model):
    """The covered minutes of one step; ``minutes`` says how many (gaps are left out)."""

    start: dt.datetime
    kwh: float
    mean_kw: float
    min_kw: float
    max_kw: float
    minutes: int


Clock = Literal["event_time", "wall"]


class ConsumptionResponse(_Model):
    household_id: str
    start: dt.datetime
    end: dt.datetime
    resolution: Resolution
    total_kwh: float
    points: list[ConsumptionPoint]
    clock: Clock = Field(
        description="What a default end was: event_time = the household's latest reading "
        "(a replay runs ahead of or behind the wall clock), wall = now (no reading yet)."
    )


class ForecastResponse(_Model):
    """The latest real-time forecast (points with their interval) and how old it is."""

    household_id: str
    age_s: float = Field(
        description="Seconds from the forecast's issue to the household's latest reading "
        "(event time: how far the data has moved since); wall-clock seconds when it has none."
    )
    clock: Clock
    last_reading_at: dt.datetime | None = None
    forecast: Forecast


class Anomaly(_Model):
    """A flagged bin: when, its score, and (newer producers) what and how large: kind,
    energy above (+) or below (-) the household's usual consumption, duration, start."""

    timestamp: dt.datetime
    score: float
    model_version: str
    kind: str | None = None
    kwh: float | None = None
    duration_s: int | None = None
    started_at: dt.datetime | None = None


class AnomaliesResponse(_Model):
    household_id: str
    start: dt.datetime
    end: dt.datetime
    anomalies: list[Anomaly]


class MonthlyResponse(_Model):
    """The monthly forecast; ``plots`` maps each plot to an API path that streams it."""

    household_id: str
    month: str
    forecast: MonthlyForecast
    plots: dict[str, str]


class HorizonAccuracy(HorizonMetrics):
    """One horizon's rolling accuracy (None where nothing is scored yet)."""

    description: str

    @classmethod
    def of(cls, horizon: str, metrics: HorizonMetrics) -> HorizonAccuracy:
        return cls(description=HORIZON_DESCRIPTIONS[horizon], **metrics.model_dump())


class AccuracyResponse(_Model):
    """A household's rolling forecast accuracy per horizon, and what the numbers mean."""

    household_id: str
    window_start: dt.datetime
    window_end: dt.datetime
    resolutions_s: list[int]
    first_scored_at: dt.datetime | None
    last_scored_at: dt.datetime | None
    horizons: dict[str, HorizonAccuracy]
    definitions: dict[str, str]


class FleetHorizonAccuracy(_Model):
    """One horizon over the fleet: metrics pooled over every scored interval of every
    current household, and the spread of the households' own MASE."""

    description: str
    households: int
    pooled: HorizonAccuracy
    mean_household_mase: float | None
    median_household_mase: float | None
    share_beating_naive: float | None


class FleetAccuracyResponse(_Model):
    """The fleet's rolling accuracy; households quiet for over 7 days are left out."""

    checked_at: dt.datetime
    households: int
    stale_households: int
    newest_window_end: dt.datetime | None
    horizons: dict[str, FleetHorizonAccuracy]
    definitions: dict[str, str]


class HistoryPoint(_Model):
    """One past forecast interval against what happened (None: not known yet)."""

    start: dt.datetime
    end: dt.datetime
    issued_at: dt.datetime
    resolution_s: int
    value_kw: float
    lower_kw: float
    upper_kw: float
    actual_kw: float | None
    seasonal_naive_kw: float | None
    inside_interval: bool | None


class ForecastHistoryResponse(_Model):
    household_id: str
    start: dt.datetime
    end: dt.datetime
    horizon: Horizon
    description: str
    points: list[HistoryPoint]


class MonthlyAccuracyResponse(_Model):
    """Completed months with their actual total next to each forecast made for them.

    Pooled over the forecasts that still had days ahead: ``mape`` (mean absolute % error
    of the month total), ``coverage_80``/``coverage_95`` (share of actual totals inside
    the interval); None when there is no such forecast.
    """

    household_id: str
    months: list[MonthAccuracy]
    forecasts: int
    mape: float | None
    coverage_80: float | None
    coverage_95: float | None


class ConsumerStatus(_Model):
    consumer: str
    lag_s: float
    idle_s: float
    last_arrival_at: dt.datetime
    last_event_at: dt.datetime | None
    records_per_s: float


class PipelineHealthResponse(_Model):
    """Per consumer: lag of the last batch behind the stream, idle time, throughput
    (approximate: redelivered records count again); queue depths (None: unreadable)."""

    checked_at: dt.datetime
    consumers: list[ConsumerStatus]
    queues: dict[str, int | None]


class ReplayJobsResponse(_Model):
    jobs: list[ReplayJob]


class HealthResponse(_Model):
    status: Literal["ok"] = "ok"


class ApiError(Exception):
    """An answer other than 2xx, with the common error body."""

    def __init__(self, status: int, code: str, reason: str, field: str | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.code = code
        self.reason = reason
        self.field = field


def _error_response(
    status: int,
    code: str,
    reason: str,
    field: str | None = None,
    *,
    detail: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = ErrorResponse(error=ErrorDetail(code=code, reason=reason, field=field), detail=detail)
    return SafeJSONResponse(
        jsonable_encoder(body.model_dump(exclude_none=True)), status_code=status, headers=headers
    )


_ERRORS: Final[dict[int | str, dict[str, Any]]] = {
    401: {"model": ErrorResponse, "description": "Missing, forged or expired token."},
    403: {"model": ErrorResponse, "description": "The token does not cover this data."},
    422: {"model": ErrorResponse, "description": "Malformed or too large query."},
}


def _with(*codes: int) -> dict[int | str, dict[str, Any]]:
    extra: dict[int | str, dict[str, Any]] = {
        code: {"model": ErrorResponse, "description": "See the error body."} for code in codes
    }
    return {**_ERRORS, **extra}


HouseholdPath = Annotated[
    str, Path(min_length=1, max_length=64, pattern=HOUSEHOLD_ID_PATTERN, examples=["uci-0001"])
]


# ----------------------------------------------------------------------- access control

_bearer = HTTPBearer(auto_error=False, description="A wattstream token (`wattstream token`).")


def _principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """The token's principal, or 401 (missing, malformed, forged, expired)."""
    deps: ApiDeps = request.app.state.deps
    try:
        token = credentials.credentials if credentials is not None else None
        return verify_token(token, deps.token_secret, now=deps.clock().timestamp())
    except TokenError as error:
        raise ApiError(401, f"token_{error.code}", error.reason) from error


Who = Annotated[Principal, Depends(_principal)]


def _operator(who: Who) -> Principal:
    if not who.operator:
        raise ApiError(403, "forbidden", "this route needs an operator token")
    return who


def _readable(household_id: HouseholdPath, who: Who) -> str:
    """The path's household, if the token covers it; 403 otherwise."""
    if not who.can_read(household_id):
        raise ApiError(403, "forbidden", f"the token does not cover household {household_id}")
    return household_id


Operator = Annotated[Principal, Depends(_operator)]
ReadableHousehold = Annotated[str, Depends(_readable)]


# ---------------------------------------------------------------------------- the app


def create_app(deps: ApiDeps) -> FastAPI:
    """The FastAPI app, bound to its dependencies."""
    app = FastAPI(
        title="wattstream gateway",
        version="1",
        description="Household-scoped consumption, forecasts, live forecast accuracy, "
        "anomalies and monthly results; fleet accuracy, pipeline health and controls for "
        "operators. Send "
        "'Authorization: Bearer <token>' (`wattstream token`).",
        default_response_class=SafeJSONResponse,
    )
    app.state.deps = deps
    app.add_middleware(SecurityHeadersMiddleware)

    @app.exception_handler(ApiError)
    async def api_error(request: Request, error: ApiError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if error.status == 401 else None
        return _error_response(error.status, error.code, error.reason, error.field, headers=headers)

    @app.exception_handler(QueryError)
    async def query_error(request: Request, error: QueryError) -> JSONResponse:
        return _error_response(422, error.code, error.reason, error.field)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
        details = [
            {"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": e.get("type")}
            for e in error.errors()
        ]
        where = ".".join(str(part) for part in details[0]["loc"]) if details else None
        reason = "; ".join(f"{'.'.join(map(str, d['loc']))}: {d['msg']}" for d in details)
        return _error_response(422, "invalid_request", reason[:2000], where, detail=details)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(error.status_code, "http_error")
        return _error_response(error.status_code, code, str(error.detail))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> JSONResponse:
        deps.logger.exception("unexpected error", extra={"path": request.url.path})
        # Runs outside the middleware stack (ServerErrorMiddleware): headers set here.
        return _error_response(
            500, "internal_error", "an unexpected error occurred", headers=dict(SECURITY_HEADERS)
        )

    def _last_reading(household_id: str) -> dt.datetime | None:
        summary = deps.store.household(household_id)
        return summary.last_reading_at if summary is not None else None

    def household_clock(household_id: str) -> tuple[dt.datetime, Clock]:
        """The household's now: just after its latest reading (one clock for replayed and
        live data, whatever the wall clock says); the wall clock before its first one."""
        last = _last_reading(household_id)
        if last is None:
            return deps.clock(), "wall"
        return last + dt.timedelta(minutes=1), "event_time"

    @app.get("/health")
    def health() -> HealthResponse:
        """Liveness: the app is up (it checks no dependency; no token needed)."""
        return HealthResponse()

    @app.get("/households", responses=_ERRORS)
    def households(who: Who) -> HouseholdsResponse:
        """All households (operator), or the token's own households."""
        if who.operator:
            rows = deps.store.households()
        else:
            rows = [
                deps.store.household(h) or HouseholdSummary(household_id=h)
                for h in sorted(who.households)
            ]
        return HouseholdsResponse(
            households=[
                Household(household_id=r.household_id, last_reading_at=r.last_reading_at)
                for r in rows
            ]
        )

    @app.get("/households/{household_id}/consumption", responses=_ERRORS)
    def consumption(
        household_id: ReadableHousehold,
        start: Annotated[
            dt.datetime | None, Query(description="Inclusive, ISO 8601 (default: end - span).")
        ] = None,
        end: Annotated[dt.datetime | None, Query(description="Exclusive (default: now).")] = None,
        resolution: Annotated[
            Resolution,
            Query(description="minute (<= 7 days), hour (<= 92 days) or day (<= 1830 days)."),
        ] = "hour",
    ) -> ConsumptionResponse:
        """Consumption over ``[start, end)``; steps without readings are left out."""
        data_now, clock = household_clock(household_id)
        lo, hi = consumption_range(
            start, end, resolution, now=data_now if end is None else deps.clock()
        )
        days = deps.store.days(household_id, days_of(lo, hi))
        points = aggregate(days, start=lo, end=hi, resolution=resolution)
        return ConsumptionResponse(
            household_id=household_id,
            start=lo,
            end=hi,
            resolution=resolution,
            total_kwh=sum(p.kwh for p in points),
            clock=clock if end is None else "wall",
            points=[
                ConsumptionPoint(
                    start=p.start,
                    kwh=p.kwh,
                    mean_kw=p.mean_kw,
                    min_kw=p.min_kw,
                    max_kw=p.max_kw,
                    minutes=p.minutes,
                )
                for p in points
            ],
        )

    @app.get("/households/{household_id}/forecast", responses=_with(404))
    def forecast(household_id: ReadableHousehold) -> ForecastResponse:
        """The latest real-time forecast, its points with their prediction interval."""
        latest = deps.store.latest_forecast(household_id)
        if latest is None:
            raise ApiError(404, "no_forecast", f"no forecast for {household_id} yet")
        last = _last_reading(household_id)
        age = ((last or deps.clock()) - latest.issued_at).total_seconds()
        return ForecastResponse(
            household_id=household_id,
            age_s=age,
            clock="event_time" if last else "wall",
            last_reading_at=last,
            forecast=latest,
        )

    @app.get("/households/{household_id}/accuracy", responses=_with(404))
    def accuracy(household_id: ReadableHousehold) -> AccuracyResponse:
        """Rolling forecast accuracy over the household's last 7 days: MAE, MASE against
        seasonal naive, interval coverage, per horizon (``next`` and ``day_ahead``)."""
        stored = deps.store.accuracy(household_id)
        if stored is None:
            raise ApiError(404, "no_accuracy", f"no readings scored for {household_id} yet")
        return AccuracyResponse(
            household_id=household_id,
            window_start=stored.window_start,
            window_end=stored.window_end,
            resolutions_s=stored.resolutions_s,
            first_scored_at=stored.first_scored_at,
            last_scored_at=stored.last_scored_at,
            horizons={
                h: HorizonAccuracy.of(h, stored.horizons[h].metrics())
                for h in HORIZONS
                if h in stored.horizons
            },
            definitions=dict(DEFINITIONS),
        )

    @app.get("/households/{household_id}/forecasts/history", responses=_ERRORS)
    def forecast_history(
        household_id: ReadableHousehold,
        start: Annotated[
            dt.datetime | None,
            Query(description="Targets starting at or after (default: end - 1 day)."),
        ] = None,
        end: Annotated[dt.datetime | None, Query(description="Exclusive (default: now).")] = None,
        horizon: Annotated[
            Horizon, Query(description="next (first step of each forecast) or day_ahead.")
        ] = "next",
    ) -> ForecastHistoryResponse:
        """Past forecasts of ``[start, end)`` (<= 31 days) against the actuals, with the
        interval band and the seasonal naive forecast, so a chart can show them."""
        lo, hi = history_range(start, end, now=deps.clock())
        lo_us, hi_us = datetime_to_us(lo), datetime_to_us(hi)
        targets = [
            t
            for t in deps.store.targets(household_id, days_of(lo, hi))
            if t.horizon == horizon and lo_us <= t.start_us < hi_us
        ]
        minute_days = days_of(lo - dt.timedelta(days=1), hi + dt.timedelta(days=1))
        pairs = join(targets, deps.store.days(household_id, minute_days)) if targets else []
        return ForecastHistoryResponse(
            household_id=household_id,
            start=lo,
            end=hi,
            horizon=horizon,
            description=HORIZON_DESCRIPTIONS[horizon],
            points=[
                HistoryPoint(
                    start=us_to_datetime(p.target.start_us),
                    end=us_to_datetime(p.target.end_us),
                    issued_at=us_to_datetime(p.target.issued_us),
                    resolution_s=p.target.resolution_s,
                    value_kw=p.target.value_kw,
                    lower_kw=p.target.lower_kw,
                    upper_kw=p.target.upper_kw,
                    actual_kw=p.actual_kw,
                    seasonal_naive_kw=p.naive_kw,
                    inside_interval=p.inside,
                )
                for p in sorted(pairs, key=lambda p: (p.target.start_us, p.target.resolution_s))
            ],
        )

    @app.get("/fleet/accuracy", responses=_ERRORS)
    def fleet(who: Operator) -> FleetAccuracyResponse:
        """The fleet's rolling forecast accuracy (operator): pooled metrics per horizon and
        the spread of household MASE; households quiet for over 7 days are left out."""
        summary = fleet_accuracy(deps.store.fleet_accuracy())
        return FleetAccuracyResponse(
            checked_at=deps.clock(),
            households=summary.households,
            stale_households=summary.stale_households,
            newest_window_end=summary.newest_window_end,
            horizons={
                h: FleetHorizonAccuracy(
                    description=HORIZON_DESCRIPTIONS[h],
                    households=f.households,
                    pooled=HorizonAccuracy.of(h, f.pooled),
                    mean_household_mase=f.mean_household_mase,
                    median_household_mase=f.median_household_mase,
                    share_beating_naive=f.share_beating_naive,
                )
                for h, f in summary.horizons.items()
            },
            definitions=dict(DEFINITIONS),
        )

    @app.get("/households/{household_id}/anomalies", responses=_ERRORS)
    def anomalies(
        household_id: ReadableHousehold,
        start: Annotated[dt.datetime | None, Query(description="Default: end - 7 days.")] = None,
        end: Annotated[dt.datetime | None, Query(description="Default: now.")] = None,
    ) -> AnomaliesResponse:
        """Anomalies flagged by the real-time forecasts in ``[start, end)`` (<= 92 days)."""
        lo, hi = anomaly_range(start, end, now=deps.clock())
        marks = deps.store.anomalies(household_id, lo, hi)
        return AnomaliesResponse(
            household_id=household_id,
            start=lo,
            end=hi,
            anomalies=[
                Anomaly(
                    timestamp=m.timestamp,
                    score=m.score,
                    model_version=m.model_version,
                    kind=m.kind,
                    kwh=m.kwh,
                    duration_s=m.duration_s,
                    started_at=m.started_at,
                )
                for m in marks
            ],
        )

    @app.get("/households/{household_id}/monthly", responses=_with(404))
    def monthly(
        household_id: ReadableHousehold,
        month: Annotated[
            str | None, Query(pattern=MONTH_PATTERN, description="YYYY-MM (default: this month).")
        ] = None,
    ) -> MonthlyResponse:
        """The monthly forecast: actual to date, rest of month, intervals, plot links."""
        wanted = parse_month(month, now=deps.clock())
        stored = deps.store.monthly(household_id, wanted)
        if stored is None:
            raise ApiError(404, "no_monthly", f"no monthly result for {household_id} {wanted}")
        plots = {
            name: f"/households/{household_id}/monthly/{wanted}/plots/{name}"
            for name in stored.forecast.plot_keys
        }
        return MonthlyResponse(
            household_id=household_id, month=wanted, forecast=stored.forecast, plots=plots
        )

    @app.get(
        "/households/{household_id}/monthly/{month}/plots/{name}",
        responses={**_with(404, 501), 200: {"content": {"image/png": {}}}},
        response_class=Response,
    )
    def monthly_plot(
        household_id: ReadableHousehold,
        month: Annotated[str, Path(pattern=MONTH_PATTERN)],
        name: Annotated[str, Path(pattern=_PLOT_NAME)],
    ) -> Response:
        """One plot of a monthly result (e.g. the Prophet components), streamed."""
        wanted = parse_month(month, now=deps.clock())
        stored = deps.store.monthly(household_id, wanted)
        key = stored.forecast.plot_keys.get(name) if stored else None
        if stored is None or key is None:
            raise ApiError(404, "no_plot", f"no plot {name!r} for {household_id} {wanted}")
        if deps.objects is None:
            raise ApiError(501, "not_configured", "plots are not served by this deployment")
        bucket = deps.models_bucket or stored.bucket
        try:
            data = deps.objects.read(bucket, key)
        except ObjectMissing as error:
            raise ApiError(404, "no_plot", f"the plot object is gone: {key}") from error
        if is_plot_data(key):
            return Response(content=_rendered(bucket, key, data), media_type="image/png")
        media = mimetypes.guess_type(key)[0] or "application/octet-stream"
        return Response(content=data, media_type=media)

    def _rendered(bucket: str, key: str, data: bytes) -> bytes:
        """The PNG of plot data: from the cache, else rendered now and cached."""
        assert deps.objects is not None
        cached = rendered_plot_key(key, data)
        try:
            return deps.objects.read(bucket, cached)
        except ObjectMissing:
            pass
        try:
            components = MonthlyComponents.model_validate_json(data)
        except ValidationError as error:
            deps.logger.error("unreadable plot data", extra={"key": key, "error": str(error)})
            raise ApiError(500, "bad_plot_data", f"the plot data is not readable: {key}") from error
        png = (deps.render_plot or _render_png)(components)
        if deps.plot_cache is not None:
            try:
                deps.plot_cache.write(bucket, cached, png, "image/png")
            except Exception:  # the picture is served anyway; the next request renders again
                deps.logger.exception("could not cache a rendered plot", extra={"key": cached})
        return png

    @app.get("/households/{household_id}/monthly/accuracy", responses=_with(404, 501))
    def monthly_accuracy(
        household_id: ReadableHousehold,
        month: Annotated[
            str | None, Query(pattern=MONTH_PATTERN, description="YYYY-MM (default: all).")
        ] = None,
    ) -> MonthlyAccuracyResponse:
        """Completed months: the actual total next to each forecast made for the month."""
        if deps.objects is None or deps.models_bucket is None:
            raise ApiError(501, "not_configured", "accuracy is not served by this deployment")
        try:
            raw = deps.objects.read(deps.models_bucket, accuracy_key(household_id))
        except ObjectMissing as error:
            raise ApiError(
                404, "no_monthly_accuracy", f"no completed month scored for {household_id} yet"
            ) from error
        document = MonthlyAccuracy.model_validate_json(raw)
        months = [m for m in document.months if m.forecasts and (month is None or m.month == month)]
        if not months:
            raise ApiError(404, "no_monthly_accuracy", f"no scored month for {household_id}")
        ahead = [f for m in months for f in m.forecasts if f.days_ahead > 0]
        errors = [f.abs_pct_error for f in ahead if f.abs_pct_error is not None]
        return MonthlyAccuracyResponse(
            household_id=household_id,
            months=months,
            forecasts=len(ahead),
            mape=sum(errors) / len(errors) if errors else None,
            coverage_80=sum(f.inside_80 for f in ahead) / len(ahead) if ahead else None,
            coverage_95=sum(f.inside_95 for f in ahead) / len(ahead) if ahead else None,
        )

    @app.get("/health/pipeline", responses=_ERRORS)
    def pipeline(who: Operator) -> PipelineHealthResponse:
        """Stream lag and throughput per consumer; quarantine and dead-letter queue depths."""
        now = deps.clock()
        since = now - deps.throughput_window
        health = pipeline_health(
            deps.store.progress(),
            deps.store.recent_records(since),
            deps.queues.depths() if deps.queues else {},
            now=now,
            window=deps.throughput_window,
        )
        return PipelineHealthResponse(
            checked_at=now,
            consumers=[ConsumerStatus(**vars(c)) for c in health.consumers],
            queues=health.queues,
        )

    @app.post("/pipeline/replay", status_code=202, responses=_with(409, 501))
    def start_replay(
        who: Operator, request: Annotated[ReplayRequest | None, Body()] = None
    ) -> ReplayJob:
        """Start replaying real data onto the readings stream (stream processing)."""
        if deps.replay is None:
            raise ApiError(501, "not_configured", "replays are not offered by this deployment")
        try:
            return deps.replay.start(request or ReplayRequest())
        except ReplayBusy as error:
            raise ApiError(409, "replay_running", str(error)) from error

    @app.get("/pipeline/replay", responses=_with(501))
    def replay_jobs(who: Operator) -> ReplayJobsResponse:
        """The replays started through the API, latest first, with their progress."""
        if deps.replay is None:
            raise ApiError(501, "not_configured", "replays are not offered by this deployment")
        return ReplayJobsResponse(jobs=deps.replay.jobs())

    @app.post(
        "/pipeline/uploads",
        status_code=202,
        responses=_with(413, 501),
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/octet-stream": {
                        "schema": {"type": "string", "format": "binary"},
                    }
                },
            }
        },
    )
    async def upload(
        request: Request,
        who: Operator,
        name: Annotated[str, Query(max_length=128, description="File name, e.g. april.txt.gz.")],
        household: Annotated[
            str | None, Query(max_length=64, description="Household of the file (UCI format).")
        ] = None,
        utc_offset: Annotated[
            str | None,
            Query(
                max_length=40,
                description="UTC offset of the file's naive times (required): +HH:MM, "
                "-HH:MM, Z, or 'uci' for the UCI Sceaux file's fixed UTC+01:00.",
            ),
        ] = None,
    ) -> UploadStatus:
        """Put a historical file in the raw bucket (batch processing); poll its report."""
        if deps.uploads is None:
            raise ApiError(501, "not_configured", "uploads are not offered by this deployment")
        key = upload_key(name, household)
        metadata = upload_metadata(utc_offset)
        body = bytearray()
        async for chunk in request.stream():
            body.extend(chunk)
            if len(body) > deps.max_upload_bytes:
                raise ApiError(413, "too_large", f"uploads are at most {deps.max_upload_bytes} B")
        if not body:
            raise ApiError(422, "empty_upload", "the upload is empty", "body")
        await run_in_threadpool(deps.uploads.put, key, bytes(body), metadata)
        return UploadStatus(key=key, report_key=report_key_of(key), state="pending")

    @app.get("/pipeline/uploads", responses=_with(501))
    def upload_status(
        who: Operator,
        key: Annotated[str, Query(pattern=_UPLOAD_KEY, description="The upload's key.")],
    ) -> UploadStatus:
        """An upload's state: pending until ingest's batch handler writes its report."""
        if deps.uploads is None:
            raise ApiError(501, "not_configured", "uploads are not offered by this deployment")
        if ".." in key or not key.startswith(UPLOAD_PREFIX):
            raise QueryError("bad_key", "key is an uploads/ key returned by POST", "key")
        report = deps.uploads.report(report_key_of(key))
        return UploadStatus(
            key=key,
            report_key=report_key_of(key),
            state="pending" if report is None else "done",
            report=report,
        )

    return app
