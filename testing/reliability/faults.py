"""Fault injectors that wrap the real (moto) clients the adapters are given.

Why wrap the client and not the adapter: the adapter's own retry logic is what is under
test, so the fault must come from below it, shaped exactly like AWS' answer.
"""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

THROTTLED = "ProvisionedThroughputExceededException"


class ThrottlingKinesis:
    """A Kinesis client whose PutRecords throttles a seeded share of the entries.

    Throttled entries never reach the stream; they come back with ``ErrorCode`` set, and
    ``FailedRecordCount`` counts them, as Kinesis answers when a shard is over its limit.
    Every other call goes to the real client.
    """

    def __init__(self, client: Any, *, fraction: float, seed: int = 0) -> None:
        if not 0.0 <= fraction < 1.0:
            raise ValueError("fraction must be in [0, 1)")
        self._client = client
        self.fraction = fraction
        self._rng = random.Random(seed)
        self.requests = 0
        self.entries = 0
        self.throttled = 0
        #: PutRecords sends per distinct entry (key, data): the retry bound, observed.
        self.sends: Counter[tuple[str, bytes]] = Counter()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def put_records(self, *, StreamName: str, Records: list[dict[str, Any]], **kw: Any) -> Any:
        self.requests += 1
        self.entries += len(Records)
        self.sends.update((r["PartitionKey"], bytes(r["Data"])) for r in Records)
        throttle = [self._rng.random() < self.fraction for _ in Records]
        passed = [r for r, t in zip(Records, throttle, strict=True) if not t]
        real: dict[str, Any] = (
            self._client.put_records(StreamName=StreamName, Records=passed, **kw)
            if passed
            else {"FailedRecordCount": 0, "Records": []}
        )
        answers = iter(real["Records"])
        entries = []
        for t in throttle:
            if t:
                self.throttled += 1
                entries.append({"ErrorCode": THROTTLED, "ErrorMessage": "Rate exceeded for shard"})
            else:
                entries.append(next(answers))
        failed = real.get("FailedRecordCount", 0) + sum(throttle)
        return {"FailedRecordCount": failed, "Records": entries}

    @property
    def max_sends_per_entry(self) -> int:
        return max(self.sends.values(), default=0)
