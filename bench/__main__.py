"""Run one benchmark: ``python -m bench NAME [ARGS...]``.

Every module ``bench/NAME.py`` with a ``main(argv) -> int | None`` is a benchmark, found by
listing this folder, so adding a benchmark needs no change here. ``NAME`` may use ``-``
for ``_``. Modules whose name starts with ``_`` are helpers, not benchmarks.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path


def available() -> list[str]:
    """Benchmark names, as typed on the command line."""
    folder = Path(__file__).resolve().parent
    return sorted(
        info.name.replace("_", "-")
        for info in pkgutil.iter_modules([str(folder)])
        if not info.name.startswith("_")
    )


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    names = available()
    name = args[0].replace("_", "-") if args else ""
    if name not in names:
        print(
            f"usage: python -m bench NAME [ARGS...]\nbenchmarks: {', '.join(names)}",
            file=sys.stderr,
        )
        return 2
    module = importlib.import_module(f"{__package__ or 'bench'}.{name.replace('-', '_')}")
    return int(module.main(args[1:]) or 0)


if __name__ == "__main__":
    sys.exit(main())
