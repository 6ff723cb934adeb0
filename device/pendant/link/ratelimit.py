"""A token bucket: a burst at once, then a steady rate (the link's errors, the gate's types)."""

from __future__ import annotations

import time
from collections.abc import Callable


class TokenBucket:
    """`burst` tokens, refilled one per `every_s` seconds of `clock` (monotonic), at most
    `burst`. `take()` spends one if there is one."""

    def __init__(
        self, burst: int, every_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.burst = burst
        self.every_s = every_s
        self.clock = clock
        self._tokens = float(burst)
        self._at = clock()

    def _refill(self) -> None:
        now = self.clock()
        self._tokens = min(float(self.burst), self._tokens + (now - self._at) / self.every_s)
        self._at = now

    def take(self) -> bool:
        """Spend a token if there is one: True when the caller may go ahead."""
        self._refill()
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True

    def wait_s(self) -> float:
        """Seconds until a token will be there (0: one is)."""
        self._refill()
        return max(0.0, (1.0 - self._tokens) * self.every_s)
