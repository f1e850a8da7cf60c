"""Request limits (sans-IO): per-agent rate (MS-LIM-5) and failed enrollments per address
(MS-LIM-6). Both answer "retry after N seconds" (4001, MS-HTTP-9) or None (go ahead).

Per agent: a token bucket holding `per_minute` requests, refilled at `per_minute` per minute,
so an agent may always send at least `per_minute` requests in any minute (the spec's floor is
60). Failed enrollments: at most `failures` in a sliding minute per client address; beyond
that every enrollment from the address waits until the oldest failure is a minute old.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable

MIN_PER_MINUTE = 60  # MS-LIM-5: a manager accepts at least this many requests per agent
MAX_KEYS = 100_000  # forget idle keys beyond this many (memory bound under a flood)


class RateLimiter:
    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        if per_minute < MIN_PER_MINUTE:
            raise ValueError(f"the rate limit must allow at least {MIN_PER_MINUTE} per minute")
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0  # tokens per second
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, at)

    def take(self, key: str) -> int | None:
        """None when the request may proceed; else whole seconds until it may."""
        now = self.clock()
        tokens, at = self._buckets.get(key, (self.capacity, now))
        tokens = min(self.capacity, tokens + (now - at) * self.rate)
        if tokens >= 1.0:
            if len(self._buckets) >= MAX_KEYS and key not in self._buckets:
                self._buckets.clear()
            self._buckets[key] = (tokens - 1.0, now)
            return None
        self._buckets[key] = (tokens, now)
        return max(1, math.ceil((1.0 - tokens) / self.rate))


class FailureWindow:
    def __init__(
        self, failures: int, window: float = 60.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.failures = failures
        self.window = window
        self.clock = clock
        self._seen: dict[str, deque[float]] = {}

    def _recent(self, key: str) -> deque[float]:
        q = self._seen.get(key)
        if q is None:
            if len(self._seen) >= MAX_KEYS:
                self._seen.clear()
            q = self._seen[key] = deque()
        edge = self.clock() - self.window
        while q and q[0] <= edge:
            q.popleft()
        return q

    def blocked(self, key: str) -> int | None:
        """None when an attempt from `key` may proceed; else whole seconds to wait."""
        q = self._recent(key)
        if len(q) < self.failures:
            return None
        return max(1, math.ceil(q[0] + self.window - self.clock()))

    def failed(self, key: str) -> None:
        self._recent(key).append(self.clock())


class InProcessLimits:
    """Both limits of one process (SQLite), behind the interface cluster.SharedLimits shares
    through PostgreSQL: `take(key)`, `blocked(addr)`, `failed(addr)`."""

    def __init__(self, per_minute: int, failures: int) -> None:
        self.rate = RateLimiter(per_minute)
        self.failures = FailureWindow(failures)

    async def take(self, key: str) -> int | None:
        return self.rate.take(key)

    async def blocked(self, addr: str) -> int | None:
        return self.failures.blocked(addr)

    async def failed(self, addr: str) -> None:
        self.failures.failed(addr)
