"""The fleet-day benchmark runs the whole local pipeline and accounts for every reading."""

from __future__ import annotations

import json

import pytest

from bench import fleet_day
from wattstream.settings import shipped_london_dir

CONTRACT = (
    "households",
    "readings",
    "seconds",
    "speed_vs_real_time",
    "stages",
    "lost",
    "duplicated",
    "max_lag_s",
)


def test_fleet_day_bench_few_households_loses_and_duplicates_nothing(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["--households", "3", "--data-dir", str(shipped_london_dir()), "--seed", "7"]

    assert fleet_day.main(argv) == 0

    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert all(field in result for field in CONTRACT)
    assert result["households"] == 3
    assert result["readings"] > 0
    assert result["lost"] == 0
    assert result["duplicated"] == 0
    assert result["archive"]["rows"] == result["readings"]
    assert result["query_store"]["readings"] == result["readings"]
    stages = result["stages"]
    assert {"ingest", "archive", "realtime", "gateway_readings", "gateway_forecasts"} <= set(stages)
    assert stages["archive"]["items"] == result["readings"]
    assert stages["gateway_forecasts"]["items"] == result["forecasts_published"] > 0
    assert result["monthly"]["results"] > 0
    assert result["runner_errors"] == {}
    cpu = result["cpu_s"]  # the local AWS runs in its own process: both are measured
    assert cpu["aws"] > 0
    assert cpu["pipeline"] > 0


def test_fleet_day_bench_rejects_an_empty_fleet(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        fleet_day.main(["--households", "0"])
    assert "--households" in capsys.readouterr().err


class _Runner:
    """A runner stand-in: records what ``settle`` asked of it."""

    def __init__(self) -> None:
        self.pollers: list[object] = []
        self.calls: list[str] = []

    def stop(self, timeout_s: float) -> None:
        self.calls.append("stop")

    def drain(self, timeout_s: float) -> int:
        self.calls.append("drain")
        return 0


def test_fleet_day_settle_waits_for_calls_in_flight_before_stopping() -> None:
    """The backlog runs on the runner's threads: ``settle`` stops them only once no call
    has been in flight (or ended) for the quiet time, then drains what is left."""
    import threading

    runner, clock = _Runner(), fleet_day.StageClock()
    clock.in_flight = 1
    finished = threading.Event()

    def finish_later() -> None:
        finished.wait(0.5)
        with clock.lock:
            clock.in_flight, clock.calls = 0, 1
        runner.calls.append("call ended")

    thread = threading.Thread(target=finish_later)
    thread.start()
    fleet_day.settle(runner, {"stage": clock}, timeout_s=30, quiet_s=0.3)
    thread.join()

    assert runner.calls == ["call ended", "stop", "drain"]


def test_fleet_day_request_counter_counts_per_operation_and_restores_botocore() -> None:
    from botocore.endpoint import Endpoint

    original = Endpoint.make_request
    with fleet_day.RequestCounter() as counter:
        assert Endpoint.make_request is not original
    assert Endpoint.make_request is original
    assert counter.report().startswith("0 AWS requests")
