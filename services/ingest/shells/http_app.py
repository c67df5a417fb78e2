"""The ingest HTTP API: meters and home gateways POST readings (JSON or UCI CSV).

A thin shell: it reads the body, asks :mod:`services.ingest.core.intake` for a verdict,
quarantines what was refused, publishes what was accepted, and answers with one outcome
per reading. Everything it talks to is injected (:class:`IngestHttpDeps`), so the same
app runs on Lambda (``http_lambda``), under uvicorn, or in tests with fakes.

Status codes: 200 every reading accepted (duplicates are not errors), 207 some rejected,
400 none accepted or the payload unusable, 413 too large or too many readings, 415 not
JSON nor CSV, 503 our side failed (publishing or the quarantine): nothing is claimed as
accepted and the client should retry the same payload (replays are idempotent
downstream: the archive keeps one reading per household and timestamp).

Every answer carries ``X-Content-Type-Options: nosniff`` and its JSON holds no raw
``<``, ``>`` or ``&`` (:mod:`shared.http_safety`): reasons echo client input, bounded.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Annotated, Any, Final, Literal

from aws_lambda_powertools.metrics import MetricUnit
from fastapi import FastAPI, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, TypeAdapter

from services.ingest.core.intake import (
    DEFAULT_INTAKE_LIMITS,
    IntakeLimits,
    IntakeResult,
    intake_json,
    intake_uci,
    reject_payload,
)
from services.ingest.ports import QuarantineSink
from shared.http_safety import SECURITY_HEADERS, SafeJSONResponse, SecurityHeadersMiddleware
from shared.publishing import DEFAULT_READINGS_PER_RECORD, stream_records
from shared.schema import MeterReading
from shared.shell import ShellDeps
from shared.streams.ports import PublishError, StreamPublisher
from shared.uci import UCI_HEADER
from shared.validation import Rejection

__all__ = [
    "ErrorBody",
    "IngestHttpDeps",
    "IntakeResponse",
    "ReadingOutcome",
    "Totals",
    "UnavailableResponse",
    "create_app",
]

SOURCE: Final = "http"
_STATUS_BY_CODE: Final = {
    "payload_too_large": 413,
    "too_many_items": 413,
    "unsupported_media_type": 415,
}
_JSON, _CSV = "application/json", "text/csv"


@dataclass(frozen=True)
class IngestHttpDeps(ShellDeps):
    """The app's ports (telemetry and clock: :class:`shared.shell.ShellDeps`)."""

    publisher: StreamPublisher
    quarantine: QuarantineSink
    limits: IntakeLimits = DEFAULT_INTAKE_LIMITS
    readings_per_record: int = DEFAULT_READINGS_PER_RECORD


# ---------------------------------------------------------------------- wire models


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ReadingsEnvelope(_Model):
    """The wrapped form of a JSON body."""

    readings: list[MeterReading]


class ReadingOutcome(_Model):
    """The verdict on one reading: ``index`` is its list index, or its CSV line number."""

    index: int | None
    status: Literal["accepted", "rejected", "duplicate", "superseded"]
    household_id: str | None = None
    timestamp: dt.datetime | None = None
    code: str | None = None
    reason: str | None = None


class Totals(_Model):
    """Counts over the payload; ``missing`` counts UCI gap rows (``?``), never invented;
    ``superseded`` counts readings replaced by a later one of the same household and
    timestamp with different values (the last value wins)."""

    received: int
    accepted: int
    rejected: int
    duplicates: int
    missing: int
    rejected_by_code: dict[str, int]
    superseded: int = 0


class ErrorBody(_Model):
    """Why the payload as a whole was refused, or what failed on our side."""

    code: str
    reason: str


class IntakeResponse(_Model):
    """The answer to ``POST /readings`` (200, 207, 400, 413, 415)."""

    status: Literal["accepted", "partial", "rejected"]
    totals: Totals
    outcomes: list[ReadingOutcome]
    error: ErrorBody | None = None


class UnavailableResponse(_Model):
    """503: nothing was accepted; retry the same payload later."""

    status: Literal["unavailable"] = "unavailable"
    error: ErrorBody


class HealthResponse(_Model):
    status: Literal["ok"] = "ok"


_CSV_EXAMPLE: Final = (
    UCI_HEADER + "\r\n1/4/2007;00:00:00;3.480;0.238;239.530;14.400;2.000;1.000;18.000\r\n"
)
_REQUEST_BODY: Final = {
    "required": True,
    "content": {
        _JSON: {"schema": {"$ref": "#/components/schemas/ReadingsPayload"}},
        _CSV: {
            "schema": {
                "type": "string",
                "description": "UCI household power format (';'-separated, header line), "
                "one household given by the `household` query parameter, the UTC offset "
                "of its naive times by `utc_offset` (required); '?' rows are counted as "
                "missing.",
            },
            "example": _CSV_EXAMPLE,
        },
    },
}


def _response(model: type[BaseModel], description: str) -> dict[str, Any]:
    return {"model": model, "description": description}


_RESPONSES: Final[dict[int | str, dict[str, Any]]] = {
    200: _response(IntakeResponse, "Every reading accepted (duplicates dropped)."),
    207: _response(IntakeResponse, "Some readings rejected (and quarantined), others accepted."),
    400: _response(IntakeResponse, "No reading accepted, or the payload is unusable."),
    413: _response(IntakeResponse, "The body is too large or holds too many readings."),
    415: _response(IntakeResponse, "Content-Type is neither application/json nor text/csv."),
    503: _response(UnavailableResponse, "Publishing or quarantining failed; retry later."),
}


# ---------------------------------------------------------------------------- the app


def create_app(deps: IngestHttpDeps) -> FastAPI:
    """The FastAPI app, bound to its dependencies."""
    app = FastAPI(
        title="wattstream ingest",
        version="1",
        description="Meters and home gateways POST smart-meter readings.",
        default_response_class=SafeJSONResponse,
    )
    app.add_middleware(SecurityHeadersMiddleware)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> JSONResponse:
        # Runs outside the middleware stack (Starlette's ServerErrorMiddleware), hence the
        # explicit headers.
        deps.logger.exception("unexpected error", extra={"path": request.url.path})
        body = UnavailableResponse(
            status="unavailable",
            error=ErrorBody(code="internal_error", reason="an unexpected error occurred"),
        )
        return SafeJSONResponse(
            body.model_dump(mode="json"), status_code=500, headers=dict(SECURITY_HEADERS)
        )

    @app.get("/health")
    def health() -> HealthResponse:
        """Liveness: the app is up (it checks no dependency)."""
        return HealthResponse()

    @app.post(
        "/readings",
        response_model=IntakeResponse,
        responses=_RESPONSES,
        openapi_extra={"requestBody": _REQUEST_BODY},
    )
    async def post_readings(
        request: Request,
        household: Annotated[
            str | None, Query(description="Household id of a text/csv (UCI) body.")
        ] = None,
        utc_offset: Annotated[
            str | None,
            Query(
                description="UTC offset of a text/csv body's naive times, required for "
                "CSV: +HH:MM or -HH:MM (URL-encode '+' as %2B), Z, or 'uci' (the UCI "
                "Sceaux file's fixed UTC+01:00). Without it the body is refused "
                "(naive_timestamp). JSON readings carry their zone in each timestamp.",
            ),
        ] = None,
    ) -> JSONResponse:
        """Validate readings, publish the accepted ones and quarantine the rest.

        JSON: a list of readings or ``{"readings": [...]}``; each is judged on its own.
        CSV: the UCI format, one household (``household`` query parameter), its times
        read with the declared ``utc_offset``.
        """
        limits = deps.limits
        body, size = await _read_body(
            request,
            limits.max_quarantined_bytes,
            stop_after=max(limits.max_quarantined_bytes, limits.max_body_bytes),
        )
        content_type = request.headers.get("content-type", "")
        return await run_in_threadpool(
            _handle, deps, body, size, content_type, household, utc_offset
        )

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            payload = TypeAdapter(list[MeterReading] | ReadingsEnvelope).json_schema(
                ref_template="#/components/schemas/{model}"
            )
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            components.update(payload.pop("$defs", {}))
            components["ReadingsPayload"] = payload
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


async def _read_body(request: Request, keep: int, *, stop_after: int) -> tuple[bytes, int]:
    """At most ``keep`` bytes of the body, and its size (a huge body is not held).

    Reading stops past ``stop_after`` bytes: such a body is refused by size whatever the
    rest holds, so a client streaming gigabytes cannot tie up the worker. The size is
    then the larger of what was read and the declared ``Content-Length``.
    """
    parts: list[bytes] = []
    kept = size = 0
    async for part in request.stream():
        size += len(part)
        if kept < keep:
            parts.append(part[: keep - kept])
            kept += len(parts[-1])
        if size > stop_after:
            break
    try:
        declared = int(request.headers.get("content-length") or 0)
    except ValueError:
        declared = 0
    return b"".join(parts), max(size, declared)


def _media_type(content_type: str) -> tuple[str, str | None]:
    """``("application/json", "utf-8")`` from a Content-Type header."""
    media, *params = (part.strip() for part in content_type.split(";"))
    charset = None
    for param in params:
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset":
            charset = value.strip().strip('"').lower()
    return media.lower(), charset


def _intake(
    deps: IngestHttpDeps,
    body: bytes,
    size: int,
    content_type: str,
    household: str | None,
    utc_offset: str | None,
) -> IntakeResult:
    now = deps.clock()
    media, charset = _media_type(content_type)
    if media in (_JSON, _CSV) and charset in (None, "utf-8", "utf8"):
        if media == _JSON:
            return intake_json(body, source=SOURCE, now=now, limits=deps.limits, body_size=size)
        return intake_uci(
            body,
            household_id=household,
            source=SOURCE,
            now=now,
            limits=deps.limits,
            body_size=size,
            utc_offset=utc_offset,
        )
    rejection = Rejection(
        "unsupported_media_type",
        f"Content-Type {content_type[:100]!r} is not supported; send {_JSON} or {_CSV} "
        "(UCI format), in UTF-8",
        "content-type",
    )
    return reject_payload(
        body, rejection, source=SOURCE, now=now, limits=deps.limits, body_size=size
    )


def _handle(
    deps: IngestHttpDeps,
    body: bytes,
    size: int,
    content_type: str,
    household: str | None,
    utc_offset: str | None = None,
) -> JSONResponse:
    """Intake, then quarantine, then publish: a failure answers 503 and claims nothing."""
    result = _intake(deps, body, size, content_type, household, utc_offset)
    try:
        deps.quarantine.quarantine(result.quarantined)
    except Exception as error:  # any sink failure is our outage, reported, never swallowed
        deps.logger.exception("quarantine failed", extra={"items": len(result.quarantined)})
        deps.metrics.add_metric(name="QuarantineFailures", unit=MetricUnit.Count, value=1)
        return _unavailable(
            "quarantine_unavailable", f"rejected input could not be stored: {error}"
        )
    records = stream_records(result.accepted, readings_per_record=deps.readings_per_record)
    try:
        if records:
            report = deps.publisher.publish(records)
            for name, count in report.metric_counts().items():
                deps.metrics.add_metric(name=name, unit=MetricUnit.Count, value=count)
    except PublishError as error:
        deps.logger.exception("publish failed", extra={"records": len(records)})
        deps.metrics.add_metric(name="PublishFailures", unit=MetricUnit.Count, value=1)
        return _unavailable("publish_failed", f"readings could not be published: {error}")

    for name, count in result.totals.metric_counts().items():
        deps.metrics.add_metric(name=name, unit=MetricUnit.Count, value=count)
    status, code = _status(result)
    deps.logger.info(
        "intake",
        extra={"http_status": code, "records": len(records), **_totals(result).model_dump()},
    )
    return SafeJSONResponse(_answer(result, status).model_dump(mode="json"), status_code=code)


def _status(result: IntakeResult) -> tuple[Literal["accepted", "partial", "rejected"], int]:
    if result.payload_rejection is not None:
        return "rejected", _STATUS_BY_CODE.get(result.payload_rejection.code, 400)
    totals = result.totals
    if not totals.rejected:
        return "accepted", 200
    if totals.accepted or totals.duplicates:
        return "partial", 207
    return "rejected", 400


def _totals(result: IntakeResult) -> Totals:
    t = result.totals
    return Totals(
        received=t.received,
        accepted=t.accepted,
        rejected=t.rejected,
        duplicates=t.duplicates,
        missing=t.missing,
        rejected_by_code=dict(t.rejected_by_code),
        superseded=t.superseded,
    )


def _answer(
    result: IntakeResult, status: Literal["accepted", "partial", "rejected"]
) -> IntakeResponse:
    rejection = result.payload_rejection
    return IntakeResponse(
        status=status,
        totals=_totals(result),
        outcomes=[
            ReadingOutcome(
                index=o.index,
                status=o.status,
                household_id=o.household_id,
                timestamp=o.timestamp,
                code=o.code,
                reason=o.reason,
            )
            for o in result.outcomes
        ],
        error=ErrorBody(code=rejection.code, reason=rejection.reason) if rejection else None,
    )


def _unavailable(code: str, reason: str) -> JSONResponse:
    body = UnavailableResponse(error=ErrorBody(code=code, reason=reason[:2000]))
    return SafeJSONResponse(body.model_dump(mode="json"), status_code=503)
