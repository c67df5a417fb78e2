"""The ``wattstream`` command line: the composition root of the local tooling.

One module per command group (:mod:`~wattstream.cli.stack`, :mod:`~wattstream.cli.run`,
:mod:`~wattstream.cli.ingest`, :mod:`~wattstream.cli.gateway`, :mod:`~wattstream.cli.train`,
:mod:`~wattstream.cli.realtime`, :mod:`~wattstream.cli.monthly`, :mod:`~wattstream.cli.kafka`,
:mod:`~wattstream.cli.kcl`) over :mod:`~wattstream.cli.common`; :mod:`~wattstream.cli.root`
assembles them. ``main`` is imported on first use, so ``python -m wattstream.kcl`` (the
KCL record processor) loads only the group it runs.
"""

from __future__ import annotations

from typing import Any

__all__ = ["main"]


def __getattr__(name: str) -> Any:
    """``wattstream.cli.main`` (the console script's entry point), imported lazily."""
    if name == "main":
        from wattstream.cli.root import main

        return main
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
