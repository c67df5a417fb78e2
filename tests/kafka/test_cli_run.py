"""``wattstream run --bus kafka``: the whole pipeline on the broker, from the CLI."""

from __future__ import annotations

import gzip
import re

import pytest
from click.testing import CliRunner

from testing.entries import reset_lambda_entries
from tests.conftest import APRIL_2007
from tests.test_cli import _restore_environment  # noqa: F401  # autouse: undoes os.environ
from wattstream.cli import main


@pytest.fixture(autouse=True)
def _forget_handlers():
    """The S3-event functions built Kafka publishers in this process: drop them after."""
    yield
    reset_lambda_entries()


@pytest.mark.slow  # ~35 s: four worker processes join, then the archive's 5 s window
def test_cli_run_bus_kafka_once_archives_and_reports_every_worker(
    tmp_path, monkeypatch, kafka_broker
):
    source = tmp_path / "two_days.txt.gz"
    with gzip.open(APRIL_2007, "rt") as full, gzip.open(source, "wt") as part:
        part.writelines(line for _, line in zip(range(1 + 2 * 1440), full, strict=False))
    monkeypatch.setenv("WATTSTREAM_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("WATTSTREAM_PORT", "0")

    result = CliRunner().invoke(
        main,
        [
            *("run", "--once", "--data", str(source)),
            *("--bus", "kafka", "--bootstrap", kafka_broker.bootstrap),
        ],
        terminal_width=200,
    )

    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "4 faust workers" in text
    published = re.search(r"published ([\d,]+) readings", text)
    assert published
    archived = re.search(r"ArchiveFunction \(faust\): \d+ invocations, (\d+) records", text)
    assert archived
    # every publish line (the UCI replay, the demo's London fleet) reached the archive;
    # the demo upload's own record may still be on its way when the summary is printed
    records = re.findall(r"published [\d,]+ readings of \d+ households in ([\d,]+) records", text)
    assert len(records) == 2
    assert int(archived.group(1)) >= sum(int(r.replace(",", "")) for r in records)
    assert "status=processed" in text  # the demo upload
    assert re.search(r"archive: [1-9]\d* household-day Parquet files", text)
    assert "0 dead-lettered" in text
    assert not (tmp_path / "state" / "stack.json").exists()


def test_cli_run_bus_kafka_without_bootstrap_is_refused(monkeypatch):
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
    result = CliRunner().invoke(main, ["run", "--once", "--bus", "kafka"])
    assert result.exit_code == 2
    assert "--bootstrap" in result.output
