"""The runnable examples in the module docstrings stay true."""

from __future__ import annotations

import doctest
from types import ModuleType

import pytest

from shared import (
    archive_layout,
    archive_parquet,
    batch,
    codec,
    http_safety,
    schema,
    uci,
    validation,
)


@pytest.mark.parametrize(
    "module",
    [schema, batch, validation, codec, uci, archive_layout, archive_parquet, http_safety],
)
def test_docstring_examples_run(module: ModuleType) -> None:
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0
    assert result.failed == 0
