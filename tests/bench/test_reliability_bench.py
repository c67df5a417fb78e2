"""``python -m bench reliability``: runs on a tiny load and keeps its output contract."""

from __future__ import annotations

import json

import pytest

import bench.reliability
from bench.__main__ import available, main


def test_bench_reliability_prints_one_json_object_last(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert "reliability" in available()
    # without the kafka extra the faust row is listed as skipped, not dropped
    monkeypatch.setattr(bench.reliability, "faust_available", lambda: False)
    argv = ["reliability", "--households", "1", "--days", "1", "--hostile", "40", "--fuzz", "5"]
    argv += ["--bad-items", "20", "--bad-repeats", "2"]
    argv += ["--only", "hostile-http", "crash-faust", "api-access", "bombs", "bad-batch-latency"]

    assert main(argv) == 0

    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) > 1  # the table first
    result = json.loads(lines[-1])
    assert result["benchmark"] == "reliability"
    for key in ("lost", "duplicated", "quarantined_fraction", "cross_household_leaks", "load"):
        assert key in result, key
    rows = {row["scenario"]: row for row in result["scenarios"]}
    assert set(rows) == {"hostile-http", "crash-faust", "api-access", "bombs", "bad-batch-latency"}
    assert "skipped" in rows["crash-faust"]
    for name in ("hostile-http", "api-access"):
        for key in ("load", "faults_injected", "lost", "duplicated"):
            assert isinstance(rows[name][key], int), (name, key)
        assert rows[name]["faults_injected"] > 0
    assert result["lost"] == 0
    assert result["duplicated"] == 0
    assert result["quarantined_fraction"] == 1.0
    assert result["cross_household_leaks"] == 0
    assert result["load"] == sum(r["load"] for r in rows.values() if "load" in r)
    # every bomb refused cleanly: a rejected report, quarantined once, no failed message
    assert result["bombs_total"] == len(rows["bombs"]["bombs"]) == 5
    assert result["bombs_rejected"] == 5
    assert isinstance(result["bad_batch_p99_s"], float)  # measured, never asserted on
    assert rows["bad-batch-latency"]["refused"] == 40
    assert rows["bad-batch-latency"]["server_errors"] == 0


def test_bench_reliability_names_no_kcl_daemon_when_crash_kcl_is_skipped(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bench.reliability, "_kcl_missing", lambda: "the daemon needs Java")

    assert main(["reliability", "--only", "crash-kcl"]) == 0

    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["scenarios"] == [{"scenario": "crash-kcl", "skipped": "the daemon needs Java"}]
    assert result["kcl_daemon"] is None  # nothing ran: no daemon named


def test_bench_reliability_kcl_daemon_names_the_java_daemon_and_its_version() -> None:
    from wattstream.local.kcl_daemon import missing

    if missing():
        pytest.skip(missing())

    name = bench.reliability.kcl_daemon_name()

    assert name.startswith("amazon-kinesis-client-multilang 3.")
    assert name.endswith("(Java MultiLangDaemon)")
