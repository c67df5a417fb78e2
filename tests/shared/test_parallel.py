"""``shared.parallel.each``: every item's result or its own exception."""

from __future__ import annotations

import threading

from shared.parallel import each


def test_each_keeps_a_failure_as_its_items_value_and_runs_the_others():
    def call(x: int) -> int:
        if x == 2:
            raise OSError("throttled")
        return x * 10

    result = each([1, 2, 3, 1], call, max_workers=4)

    assert list(result) == [1, 2, 3]  # in order, each item once
    assert result[1] == 10
    assert result[3] == 30
    assert isinstance(result[2], OSError)


def test_each_runs_up_to_max_workers_at_a_time():
    active, peak, lock = [0], [0], threading.Lock()
    release = threading.Barrier(3, timeout=10)

    def call(x: int) -> int:
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        if x < 3:
            release.wait()  # the first three meet: they ran at the same time
        with lock:
            active[0] -= 1
        return x

    assert list(each(range(6), call, max_workers=3).values()) == list(range(6))
    assert peak[0] == 3
