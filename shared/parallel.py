"""Independent calls on a bounded thread pool, each call's failure kept as its result.

Shells and adapters that write many independent items (households, household-days)
wait on round trips, not CPU; one failed item must fail only its own records.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

__all__ = ["each"]

K = TypeVar("K")
R = TypeVar("R")


def each(items: Iterable[K], call: Callable[[K], R], *, max_workers: int) -> dict[K, R | Exception]:
    """``{item: call(item)}``, up to ``max_workers`` at a time; an ``Exception`` raised by
    a call is its item's value (returned, not raised), so the others are unaffected.

    Example:
        >>> each([1, 2, 0], lambda x: 2 // x, max_workers=2)[2]
        1
    """
    keys = list(dict.fromkeys(items))

    def guarded(item: K) -> R | Exception:
        try:
            return call(item)
        except Exception as error:  # the caller decides what a failed item means
            return error

    if len(keys) <= 1:
        return {key: guarded(key) for key in keys}
    with ThreadPoolExecutor(max_workers=max(1, min(max_workers, len(keys)))) as pool:
        return dict(zip(keys, pool.map(guarded, keys), strict=True))
