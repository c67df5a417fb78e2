"""The replay benchmark runs the real pipeline and checks its own books."""

from __future__ import annotations

import pytest

from bench import replay
from tests.conftest import APRIL_2007


def _check_books(result: dict[str, object], total_rows: int) -> None:
    assert result["rows_total"] == total_rows
    assert result["readings_published"] + result["rows_missing"] == total_rows  # type: ignore[operator]
    assert result["archived_rows"] == result["readings_published"]  # nothing lost or doubled
    assert result["archive_errors"] == 0
    for field in ("seconds", "peak_rss_mb", "ratio"):
        assert result[field] > 0  # type: ignore[operator]


def test_replay_bench_april_slice_archives_every_reading():
    _check_books(replay.run(APRIL_2007, shards=2), 43_200)


@pytest.mark.slow
def test_replay_bench_full_uci_file_archives_every_reading(full_uci):
    _check_books(replay.run(full_uci, shards=4), 2_075_259)
