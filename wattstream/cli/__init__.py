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
        try:
            from wattstream.cli.root import main
        except ModuleNotFoundError as error:  # a base install: the Lambda code only
            return _missing_extra(error)
        return main
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _missing_extra(error: ModuleNotFoundError) -> Any:
    """The console script on an install without the command line's extra: one clear line."""

    def main() -> None:
        raise SystemExit(
            f"wattstream: the command line needs {error.name!r}, which the base install leaves "
            "out (it carries only what the Lambda functions need). Install an extra: "
            "pip install 'wattstream[local]' (stack, dashboard, CLI) or 'wattstream[cli]'."
        )

    return main
