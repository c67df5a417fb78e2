"""The ports of the ingest service: where rejected input goes, and where archives live.

Errors are data: everything ingest rejects becomes a :class:`~shared.schema.Quarantined`
item (original bytes, reason, source, coordinates) handed to a ``QuarantineSink``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from shared.schema import Quarantined


class QuarantineSink(Protocol):
    """Keeps rejected input with its reason; must not lose an item (raise instead)."""

    def quarantine(self, items: Sequence[Quarantined]) -> None: ...
