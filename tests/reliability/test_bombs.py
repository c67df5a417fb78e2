"""Upload bombs through the real batch path, and a large bad batch over HTTP: refused, once.

Figures only, never timings: the bad-batch latency is measured by the bench.
"""

from __future__ import annotations

from testing.reliability.scenarios import bad_batch_latency, bombs


def test_batch_upload_bombs_refused_cleanly_once_and_never_retried(deploy_stack, clients, tmp_path):
    result = bombs(deploy_stack(), clients, tmp_path)

    row = result.row()
    assert row["bombs_total"] == 5
    assert row["bombs_rejected"] == 5, row["bombs"]
    assert (row["failed_messages"], row["dead_lettered"], row["readings_published"]) == (0, 0, 0)


def test_ingest_http_bad_batch_every_item_refused(deploy_stack, clients, tmp_path):
    result = bad_batch_latency(deploy_stack(), clients, tmp_path, items=60, repeats=2)

    row = result.row()
    assert row["refused"] == 120
    assert row["statuses"] == {"400": 2}
    assert row["quarantined_items"] == 120  # nothing lost
    assert row["quarantine_objects_per_request"] == 1  # batched: one object per request
    assert row["oversize_status"] == 413
    assert row["bad_batch_p99_s"] >= row["bad_batch_median_s"] > 0
