"""The monthly Lambda shell with in-memory ports: debouncing, idempotence, errors as data."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from aws_lambda_powertools import Logger, Metrics

from services.monthly.core.debounce import checkpoint_key, result_key
from services.monthly.core.ports import ForecastConflict
from services.monthly.shells.lambda_handler import (
    MAX_CONFLICTS,
    MonthlyDeps,
    forecast_household,
    households_of,
)
from services.monthly.shells.lambda_handler import handler as monthly_entry
from shared.monthly_plot import PNG_MAGIC
from shared.monthly_results import MonthlyAccuracy, MonthlyComponents, accuracy_key, components_key
from tests.services.monthly.fakes import (
    MemoryArchive,
    MemoryRejects,
    MemoryResults,
    daily_kwh,
    s3_event,
    sqs_event,
    summary,
)
from wattstream.hosting.lambda_model import LambdaContext

EVENTS = Path(__file__).resolve().parents[2] / "events"
START = dt.date(2024, 1, 1)
NOW = dt.datetime(2024, 10, 1, tzinfo=dt.UTC)


def context() -> LambdaContext:
    return LambdaContext(
        function_name="MonthlyFunction",
        invoked_function_arn="arn:aws:lambda:us-east-1:123456789012:function:MonthlyFunction",
        memory_limit_in_mb=2048,
        timeout_s=300,
    )


def key(household: str, day: dt.date) -> str:
    return f"summaries/household={household}/date={day.isoformat()}.json"


def archive_with(days: int, household: str = "h1", *, seed: int = 0) -> MemoryArchive:
    archive = MemoryArchive()
    for i, kwh in enumerate(daily_kwh(days, seed=seed)):
        archive.put(summary(household, START + dt.timedelta(days=i), kwh))
    return archive


def deps_for(
    archive: MemoryArchive,
    results: MemoryResults | None = None,
    rejects: MemoryRejects | None = None,
    **overrides: Any,
) -> MonthlyDeps:
    metrics = Metrics(namespace="wattstream-test")
    metrics.clear_metrics()
    return MonthlyDeps(
        source=archive,
        results=results or MemoryResults(),
        rejects=rejects or MemoryRejects(),
        clock=lambda: NOW,
        logger=Logger(service="monthly-test"),
        metrics=metrics,
        **overrides,
    )


def invoke(deps: MonthlyDeps, *bodies: str) -> dict[str, Any]:
    return dict(monthly_entry.build(deps)(sqs_event(list(bodies)), context()))


LAST = START + dt.timedelta(days=99)  # 2024-04-09


def test_handler_forecasts_the_newest_final_day_and_writes_json_plot_checkpoint():
    deps = deps_for(archive_with(100))

    response = invoke(deps, s3_event([key("h1", LAST)]))

    assert response == {"batchItemFailures": []}
    results: MemoryResults = deps.results  # type: ignore[assignment]
    written = results.forecasts()
    assert list(written) == [result_key("h1", LAST)]
    forecast = written[result_key("h1", LAST)]
    assert forecast["as_of"] == "2024-04-09"
    assert forecast["month"] == "2024-04"
    assert forecast["plot_keys"] == {"components": components_key("h1", LAST)}
    plot = MonthlyComponents.model_validate_json(results.objects[components_key("h1", LAST)][0])
    assert plot.as_of == LAST
    assert plot.weekly is not None
    assert json.loads(results.objects[checkpoint_key("h1")][0])["params"]["k"]
    # the forecast JSON is written last: its presence means everything else is there
    assert results.writes[-1] == result_key("h1", LAST)


def test_handler_repeated_events_make_one_forecast_per_household_day():
    deps = deps_for(archive_with(100))
    results: MemoryResults = deps.results  # type: ignore[assignment]
    event = s3_event([key("h1", LAST)])

    invoke(deps, event, event, event)  # three copies in one batch
    writes = len(results.writes)
    invoke(deps, event)  # and a redelivery later

    assert len(results.forecasts()) == 1
    assert len(results.writes) == writes  # the duplicate wrote nothing


def test_handler_older_event_after_a_newer_one_does_not_overwrite_it():
    archive = archive_with(100)
    deps = deps_for(archive)
    results: MemoryResults = deps.results  # type: ignore[assignment]
    invoke(deps, s3_event([key("h1", LAST)]))
    newest = results.objects[result_key("h1", LAST)]
    writes = len(results.writes)

    invoke(deps, s3_event([key("h1", LAST - dt.timedelta(days=3))]))  # late, out of order

    assert list(results.forecasts()) == [result_key("h1", LAST)]
    assert results.objects[result_key("h1", LAST)] == newest
    assert len(results.writes) == writes


def test_handler_next_days_make_their_own_forecasts_warm_started():
    archive = archive_with(100)
    deps = deps_for(archive)
    results: MemoryResults = deps.results  # type: ignore[assignment]
    invoke(deps, s3_event([key("h1", LAST)]))
    archive.put(summary("h1", LAST + dt.timedelta(days=1), 11.0))

    outcome = forecast_household(deps, "h1")

    assert outcome.status == "forecast"
    assert outcome.warm_started
    assert outcome.summaries_read == 1  # only the new summary was read
    assert sorted(results.forecasts()) == [
        result_key("h1", LAST),
        result_key("h1", LAST + dt.timedelta(days=1)),
    ]


def test_handler_a_day_still_filling_up_is_not_forecast_from():
    archive = archive_with(100)
    archive.put(summary("h1", LAST + dt.timedelta(days=1), 2.0, coverage=0.2))
    deps = deps_for(archive)

    invoke(deps, s3_event([key("h1", LAST + dt.timedelta(days=1))]))

    assert list(deps.results.forecasts()) == [result_key("h1", LAST)]  # type: ignore[attr-defined]


def test_handler_correction_of_a_day_in_the_window_recomputes_the_same_key():
    archive = archive_with(100)
    deps = deps_for(archive)
    results: MemoryResults = deps.results  # type: ignore[assignment]
    invoke(deps, s3_event([key("h1", LAST)]))
    before = results.forecasts()[result_key("h1", LAST)]

    archive.put(summary("h1", LAST - dt.timedelta(days=2), 40.0))  # late data for that day
    invoke(deps, s3_event([key("h1", LAST - dt.timedelta(days=2))]))

    after = results.forecasts()[result_key("h1", LAST)]
    assert list(results.forecasts()) == [result_key("h1", LAST)]
    assert after["actual_to_date_kwh"] > before["actual_to_date_kwh"]


def test_handler_redelivery_after_a_failed_write_gives_the_same_keys_and_content():
    archive = archive_with(100)
    # everything but the forecast JSON gets written (it is written last)
    broken = MemoryResults(fail_on=result_key("h1", LAST))
    deps = deps_for(archive, broken)

    failed = invoke(deps, s3_event([key("h1", LAST)]))
    healthy = MemoryResults()
    healthy.objects = dict(broken.objects)
    retried = invoke(deps_for(archive, healthy), s3_event([key("h1", LAST)]))
    fresh = MemoryResults()
    invoke(deps_for(archive_with(100), fresh), s3_event([key("h1", LAST)]))

    assert failed == {"batchItemFailures": [{"itemIdentifier": "m0"}]}
    assert components_key("h1", LAST) in broken.objects
    assert checkpoint_key("h1") in broken.objects
    assert retried == {"batchItemFailures": []}
    assert set(healthy.objects) == set(fresh.objects)
    forecast_key = result_key("h1", LAST)
    assert json.loads(healthy.objects[forecast_key][0])["month_total_kwh"] == pytest.approx(
        json.loads(fresh.objects[forecast_key][0])["month_total_kwh"], rel=1e-4
    )


def test_handler_failure_of_one_household_fails_only_its_messages():
    archive = archive_with(100, "h1")
    for i, kwh in enumerate(daily_kwh(60, seed=2)):
        archive.put(summary("bad", START + dt.timedelta(days=i), kwh))
    results = MemoryResults(fail_on="household=bad/")
    deps = deps_for(archive, results)

    response = invoke(deps, s3_event([key("h1", LAST)]), s3_event([key("bad", START)]))

    assert response == {"batchItemFailures": [{"itemIdentifier": "m1"}]}
    assert list(results.forecasts()) == [result_key("h1", LAST)]


def test_handler_skips_the_s3_test_event():
    deps = deps_for(MemoryArchive())
    event = json.loads((EVENTS / "sqs_s3_test_event.json").read_text())

    response = monthly_entry.build(deps)(event, context())

    assert response == {"batchItemFailures": []}
    assert deps.rejects.items == []  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("not json", "not_json"),
        ("[1, 2]", "not_an_s3_event"),
        ('{"Records": [{"eventName": "ObjectCreated:Put"}]}', "not_an_s3_event"),
        (s3_event(["summaries/household=h1/notes.txt"]), "not_a_summary_key"),
    ],
)
def test_handler_refuses_bad_messages_as_data(body, reason):
    rejects = MemoryRejects()
    deps = deps_for(MemoryArchive(), rejects=rejects)

    response = invoke(deps, body)

    assert response == {"batchItemFailures": []}
    [item] = rejects.items
    assert item.reason.startswith(reason)
    assert item.original == body.encode()
    assert item.coordinates is not None
    assert item.coordinates.sequence_or_offset == "m0"


def test_handler_fails_bad_messages_when_the_reject_sink_fails():
    deps = deps_for(MemoryArchive(), rejects=MemoryRejects(fail=True))

    response = invoke(deps, "not json")

    assert response == {"batchItemFailures": [{"itemIdentifier": "m0"}]}


def test_handler_invalid_summary_is_rejected_and_left_out_of_the_history():
    archive = archive_with(100)
    bad_day = LAST - dt.timedelta(days=1)
    archive.put_raw("h1", bad_day, b'{"household_id": "h1", "kwh": "lots"}')
    rejects = MemoryRejects()
    deps = deps_for(archive, rejects=rejects)

    response = invoke(deps, s3_event([key("h1", LAST)]))

    assert response == {"batchItemFailures": []}
    [item] = rejects.items
    assert item.reason.startswith("invalid_summary")
    assert item.source.endswith(key("h1", bad_day))
    forecast = deps.results.forecasts()[result_key("h1", LAST)]  # type: ignore[attr-defined]
    by_day = {p["date"]: p for p in forecast["daily"]}
    assert by_day[bad_day.isoformat()]["is_actual"] is False  # estimated, not trusted


def test_handler_short_history_falls_back_and_says_so():
    deps = deps_for(archive_with(6))

    invoke(deps, s3_event([key("h1", START + dt.timedelta(days=5))]))

    [forecast] = deps.results.forecasts().values()  # type: ignore[attr-defined]
    assert forecast["fallback_reason"].startswith("short_history")
    assert forecast["model_version"].startswith("fleet-mlp-")  # Prophet not fitted


def test_households_of_decodes_url_encoded_keys_and_ignores_removals():
    body = json.dumps(
        {
            "Records": [
                {
                    "eventName": "ObjectCreated:Put",
                    "s3": {"object": {"key": "summaries/household%3Dh.1/date%3D2024-05-01.json"}},
                },
                {
                    "eventName": "ObjectRemoved:Delete",
                    "s3": {"object": {"key": "summaries/household=h2/date=2024-05-01.json"}},
                },
            ]
        }
    )

    assert households_of(body) == (["h.1"], None, False)


def test_deps_from_environment_reads_the_template_variables(monkeypatch):
    from services.monthly.adapters.s3 import S3ArchiveReader, S3ResultStore
    from services.monthly.shells.lambda_handler import deps_from_environment

    monkeypatch.setenv("ARCHIVE_BUCKET", "archive-bucket")
    monkeypatch.setenv("MODELS_BUCKET", "models-bucket")
    monkeypatch.setenv("MONTHLY_PLOTS", "false")
    monkeypatch.setenv("AWS_REGION", "us-east-1")

    deps = deps_from_environment()

    assert isinstance(deps.source, S3ArchiveReader)
    assert deps.source.bucket == "archive-bucket"
    assert isinstance(deps.results, S3ResultStore)
    assert deps.results.bucket == "models-bucket"
    assert deps.plots is False


# ------------------------------------------------------------- plots and month actuals


def test_handler_writes_no_png_on_any_event_only_plot_data():
    archive = archive_with(100)
    deps = deps_for(archive)
    results: MemoryResults = deps.results  # type: ignore[assignment]
    for i in range(1, 4):  # three summary events of three new days: three forecasts
        archive.put(summary("h1", LAST + dt.timedelta(days=i), 10.0))
        invoke(deps, s3_event([key("h1", LAST + dt.timedelta(days=i))]))

    assert len(results.forecasts()) == 3
    assert not [k for k, (body, _) in results.objects.items() if body.startswith(PNG_MAGIC)]
    assert len([k for k in results.objects if k.endswith("components.json")]) == 3


def _accuracy(results: MemoryResults, household: str = "h1") -> MonthlyAccuracy:
    return MonthlyAccuracy.model_validate_json(results.objects[accuracy_key(household)][0])


def test_handler_records_a_months_actual_next_to_each_forecast_when_it_completes():
    april_end = dt.date(2024, 4, 30)
    archive = archive_with((april_end - START).days - 2)  # through 2024-04-27
    deps = deps_for(archive)
    results: MemoryResults = deps.results  # type: ignore[assignment]
    invoke(deps, s3_event([key("h1", dt.date(2024, 4, 27))]))
    for day in (dt.date(2024, 4, 28), dt.date(2024, 4, 29)):
        archive.put(summary("h1", day, 12.0))
        invoke(deps, s3_event([key("h1", day)]))
    april = [m for m in _accuracy(results).months if m.month == "2024-04"]
    assert april == []  # April is not complete yet

    archive.put(summary("h1", april_end, 12.0))  # its last day arrives, complete
    invoke(deps, s3_event([key("h1", april_end)]))

    record = next(m for m in _accuracy(results).months if m.month == "2024-04")
    actual = sum(
        json.loads(archive.objects[("h1", d)])["kwh"] for (_, d) in archive.objects if d.month == 4
    )
    assert record.actual_kwh == pytest.approx(actual)
    assert record.complete_because == "last_day_final"
    assert [f.as_of for f in record.forecasts] == [
        dt.date(2024, 4, 27),
        dt.date(2024, 4, 28),
        dt.date(2024, 4, 29),
        april_end,
    ]
    first = record.forecasts[0]
    forecast = results.forecasts()[result_key("h1", dt.date(2024, 4, 27))]
    assert first.error_kwh == pytest.approx(forecast["month_total_kwh"] - actual)
    assert first.abs_pct_error == pytest.approx(abs(first.error_kwh) / actual * 100)
    assert first.days_ahead == 3
    assert record.forecasts[-1].days_ahead == 0
    assert record.mape == pytest.approx(
        sum(f.abs_pct_error for f in record.forecasts[:3]) / 3  # type: ignore[misc]
    )


def test_handler_month_actual_is_recorded_once_under_redelivery():
    march_end = dt.date(2024, 3, 31)
    results = MemoryResults()
    march = deps_for(archive_with((march_end - START).days + 1), results)
    completing = s3_event([key("h1", march_end)])  # March's last day: March is complete

    invoke(march, completing, completing)  # twice in one batch
    invoke(march, completing)  # and redelivered later
    stored = results.objects[accuracy_key("h1")][0]
    april = deps_for(archive_with(100), results)  # April's days arrive (through 04-09)
    invoke(april, s3_event([key("h1", LAST)]))
    invoke(april, s3_event([key("h1", LAST)]))

    assert results.writes.count(accuracy_key("h1")) == 1
    assert results.objects[accuracy_key("h1")][0] == stored
    record = next(m for m in _accuracy(results).months if m.month == "2024-03")
    assert [f.as_of for f in record.forecasts] == [march_end]


def test_handler_late_correction_of_a_completed_month_rescores_it():
    archive = archive_with(100)
    deps = deps_for(archive)
    results: MemoryResults = deps.results  # type: ignore[assignment]
    invoke(deps, s3_event([key("h1", LAST)]))
    march_before = next(m for m in _accuracy(results).months if m.month == "2024-03")

    archive.put(summary("h1", dt.date(2024, 3, 15), 99.0))  # a corrected March day
    archive.put(summary("h1", LAST + dt.timedelta(days=1), 10.0))
    invoke(deps, s3_event([key("h1", LAST + dt.timedelta(days=1))]))

    march_after = next(m for m in _accuracy(results).months if m.month == "2024-03")
    assert march_after.actual_kwh > march_before.actual_kwh
    assert march_after.inputs != march_before.inputs


class _Interleaved:
    """The archive, but the first call of ``method`` first lets ``meanwhile`` run: another
    call of the same household, in between two steps of this one."""

    def __init__(self, archive: MemoryArchive, method: str, meanwhile: Any) -> None:
        self.archive, self.method, self.meanwhile = archive, method, meanwhile
        self.pending = True

    def __getattr__(self, name: str) -> Any:
        inner = getattr(self.archive, name)
        if name != self.method:
            return inner

        def step(*args: Any, **kwargs: Any) -> Any:
            reply = inner(*args, **kwargs)  # this call's view: taken before the other's
            if self.pending:
                self.pending = False
                self.meanwhile()
            return reply

        return step


@pytest.mark.parametrize("between", ["list_summaries", "hourly"])
def test_forecast_household_concurrent_call_with_an_older_view_does_not_overwrite_a_newer(
    between,
):
    # Call A lists the summaries; a correction of a day lands and call B (its event)
    # forecasts from it; then A goes on. B finishes before A reads the stored
    # fingerprint ("list_summaries") or before A writes ("hourly"). A's older view must
    # not end up stored.
    archive = archive_with(100)
    results = MemoryResults()
    corrected = LAST - dt.timedelta(days=2)

    def call_b() -> None:
        archive.put(summary("h1", corrected, 40.0))
        forecast_household(deps_for(archive, results), "h1")

    call_b_alone = MemoryResults()
    forecast_household(deps_for(archive_with(100), call_b_alone), "h1")
    before = call_b_alone.forecasts()[result_key("h1", LAST)]

    forecast_household(deps_for(_Interleaved(archive, between, call_b), results), "h1")  # type: ignore[arg-type]

    stored = results.forecasts()[result_key("h1", LAST)]
    assert stored["actual_to_date_kwh"] > before["actual_to_date_kwh"]  # B's inputs
    again = forecast_household(deps_for(archive, results), "h1")
    assert again.status == "duplicate"  # the stored fingerprint is that of the newest inputs


class _AlwaysOvertaken(MemoryResults):
    """A store where another call always writes the forecast first."""

    def __init__(self) -> None:
        super().__init__()
        self.tries = 0

    def put_forecast(self, forecast: Any, fingerprint: str, expected: Any = ...) -> str:
        self.tries += 1
        raise ForecastConflict("overtaken")


def test_handler_household_overtaken_every_time_fails_its_messages_for_redelivery():
    results = _AlwaysOvertaken()
    deps = deps_for(archive_with(100), results)

    response = invoke(deps, s3_event([key("h1", LAST)]))

    assert response == {"batchItemFailures": [{"itemIdentifier": "m0"}]}  # SQS comes back
    assert results.tries == MAX_CONFLICTS
