"""``python -m wattstream.kcl run ArchiveFunction``: the consumers' commands without the CLI."""

from __future__ import annotations

from wattstream.cli.kcl import kcl

if __name__ == "__main__":
    kcl()
