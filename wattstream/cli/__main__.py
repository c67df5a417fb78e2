"""``python -m wattstream.cli``: the same commands as the ``wattstream`` script."""

from __future__ import annotations

from wattstream.cli.root import main

if __name__ == "__main__":
    main()
