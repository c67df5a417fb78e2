"""Hostile input mixed into a valid stream: all of it quarantined with a reason, no crash.

The default run uses a few hundred hypothesis-generated items; the slow run uses 10,000.
"""

from __future__ import annotations

import pytest

from testing.reliability.scenarios import ScenarioResult, hostile_http, hostile_stream


def _assert_all_quarantined(result: ScenarioResult) -> None:
    row = result.row()
    assert result.lost == 0  # every valid reading archived, unaffected
    assert result.duplicated == 0
    assert row["without_reason"] == 0
    assert row["quarantined_fraction"] == 1.0


def _assert_http(result: ScenarioResult, items: int) -> None:
    row = result.row()
    assert row["hostile_items"] == items
    assert row["server_errors"] == 0, row["statuses"]
    assert row["accepted_hostile"] == 0
    assert row["refused"] == result.faults_injected
    # one quarantine message per rejected item or refused payload, nothing more or less
    assert row["quarantined_items"] == result.faults_injected
    _assert_all_quarantined(result)


def test_ingest_http_hostile_items_quarantined_valid_archived(deploy_stack, clients, tmp_path):
    stack = deploy_stack()

    result = hostile_http(stack, clients, tmp_path, items=300, bodies=20, seed=2)

    _assert_http(result, 300)


def test_archive_hostile_stream_records_quarantined_valid_archived(deploy_stack, clients, tmp_path):
    stack = deploy_stack()

    result = hostile_stream(stack, clients, tmp_path, records=100, seed=2)

    assert result.row()["quarantined_items"] == 100
    assert result.row()["sent_to_failure_queue"] == 0
    _assert_all_quarantined(result)


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_ingest_http_hostile_10000_items_quarantined_valid_archived(
    deploy_stack, clients, tmp_path
):
    stack = deploy_stack()

    result = hostile_http(stack, clients, tmp_path, items=10_000, bodies=60, seed=3, days=2)

    _assert_http(result, 10_000)


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_archive_hostile_10000_stream_records_quarantined_valid_archived(
    deploy_stack, clients, tmp_path
):
    stack = deploy_stack()

    result = hostile_stream(stack, clients, tmp_path, records=10_000, seed=3, days=2)

    assert result.row()["quarantined_items"] == 10_000
    _assert_all_quarantined(result)


@pytest.mark.slow
def test_readings_consumers_quarantine_an_undecodable_record_once(deploy_stack, clients, tmp_path):
    stack = deploy_stack()
    consumers = frozenset({"ArchiveFunction", "GatewayReadingsFunction"})

    result = hostile_stream(stack, clients, tmp_path, records=20, seed=5, consumers=consumers)

    assert result.lost == 0
    assert result.row()["quarantined_items"] == 20  # the archive's, in S3
    # the archive's only, not the gateway's (batched: pointer messages count their items)
    assert result.row()["quarantine_message_items"] == 20
