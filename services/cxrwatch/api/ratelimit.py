"""Token-bucket rate limits, per principal and per client address.

Each bucket holds up to ``burst`` requests and refills at ``per_minute`` a
minute. Buckets live in the process: with several API replicas each enforces
its own share, which bounds a runaway client without a shared store.
"""

import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """Admits requests while the caller's bucket has a token."""

    def __init__(
        self,
        per_minute: float,
        burst: int,
        clock: Callable[[], float] = time.monotonic,
        max_buckets: int = 10_000,
    ) -> None:
        self._rate = per_minute / 60.0
        self._burst = float(burst)
        self._clock = clock
        self._max_buckets = max_buckets
        self._buckets: dict[str, _Bucket] = {}

    def _refilled(self, key: str, now: float) -> _Bucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self._max_buckets:
                self._forget_full(now)
            bucket = self._buckets[key] = _Bucket(self._burst, now)
        bucket.tokens = min(
            self._burst, bucket.tokens + (now - bucket.updated) * self._rate
        )
        bucket.updated = now
        return bucket

    def _forget_full(self, now: float) -> None:
        """Drop buckets that have refilled: they hold no information."""
        for key, bucket in list(self._buckets.items()):
            if bucket.tokens + (now - bucket.updated) * self._rate >= self._burst:
                del self._buckets[key]
        if len(self._buckets) >= self._max_buckets:
            # Every caller is active: forget the oldest rather than grow.
            oldest = min(self._buckets, key=lambda k: self._buckets[k].updated)
            del self._buckets[oldest]

    def take(self, key: str) -> float:
        """Spend a token: 0.0 when admitted, else seconds until one is due."""
        bucket = self._refilled(key, self._clock())
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / self._rate

    def exhausted(self, key: str) -> float:
        """Seconds until ``key`` has a token, without spending one."""
        bucket = self._refilled(key, self._clock())
        return 0.0 if bucket.tokens >= 1.0 else (1.0 - bucket.tokens) / self._rate
