"""Duplicated and reordered S3 events and readings: the same outputs as a clean run."""

from __future__ import annotations

import pytest

from testing.reliability.scenarios import duplicates, readings_duplicates


def test_archive_and_query_store_duplicated_reordered_readings_identical_to_clean_run(
    deploy_stack, clients, tmp_path
):
    clean, faulty = deploy_stack(), deploy_stack()

    result = readings_duplicates(clean, faulty, clients, tmp_path, households=2, days=2)

    assert result.extra["duplicated_records"] > 10
    assert result.extra["archive_objects"] > 0
    assert result.extra["query_store_items"] > 0
    assert result.extra["differing_keys"] == {}
    assert result.lost == 0
    assert result.duplicated == 0


@pytest.mark.slow
def test_pipeline_duplicated_reordered_events_identical_to_clean_run(
    deploy_stack, clients, tmp_path
):
    clean, faulty = deploy_stack(), deploy_stack()

    result = duplicates(clean, faulty, clients, tmp_path, households=2, days=2, fraction=0.5)

    extra = result.extra
    assert result.faults_injected > 0
    assert extra["archive_objects"] > 0
    assert extra["forecasts"] > 0
    assert extra["monthly_results"] > 0
    assert extra["differing_keys"] == {}
    assert result.lost == 0
    assert result.duplicated == 0
