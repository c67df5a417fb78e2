"""Fixtures for the wire-contract tests: the real UCI data, parsed once per session."""

from __future__ import annotations

import pytest

from shared.batch import ReadingBatch
from shared.uci import iter_uci
from tests.conftest import APRIL_2007


@pytest.fixture(scope="session")
def april_batch() -> ReadingBatch:
    """The 39,477 complete readings of April 2007 (real data, shipped in the repo)."""
    return ReadingBatch.concat([chunk.readings for chunk in iter_uci(APRIL_2007)])
