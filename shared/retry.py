"""Retry timing: the one capped exponential backoff every retry loop uses.

Adapters that resend failed entries (Kinesis, SQS, DynamoDB) draw a jittered delay from
:class:`RetryPolicy`; the event-source settler (:mod:`wattstream.hosting.settler`) and the
hosts call :func:`backoff_delay` without jitter (one shard retries alone, so there is no
herd to spread).
"""

from __future__ import annotations

import random
from dataclasses import dataclass


def backoff_delay(
    attempt: int, *, base_s: float, max_s: float, rng: random.Random | None = None
) -> float:
    """Delay before retry number ``attempt`` (1-based): ``base_s * 2**(attempt - 1)``, capped.

    With ``rng`` the delay is drawn uniformly below that ("full jitter", the AWS
    Architecture Blog variant), so many clients retrying together spread out.
    """
    capped = min(max_s, base_s * 2 ** min(max(attempt, 1) - 1, 62))
    return rng.uniform(0.0, capped) if rng is not None else capped


@dataclass(frozen=True)
class RetryPolicy:
    """How often an adapter resends failed entries, and how long it waits in between."""

    max_attempts: int = 8
    base_delay_s: float = 0.05
    max_delay_s: float = 2.0

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Delay before retry number ``attempt`` (1-based), with full jitter."""
        return backoff_delay(attempt, base_s=self.base_delay_s, max_s=self.max_delay_s, rng=rng)
