"""Asyncio helpers the delivery tests share: run tasks for a block, wait for a condition."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

WAIT_S = 30.0


async def until(done: Callable[[], bool], what: str, timeout: float = WAIT_S) -> None:
    """Return once `done()`; an AssertionError naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def first_seen(ids: list[str]) -> list[str]:
    """Order of first arrival: QoS 1 duplicates (same id) collapse into the first."""
    return list(dict.fromkeys(ids))


@contextlib.asynccontextmanager
async def running(*coros: Coroutine[Any, Any, Any]) -> AsyncIterator[list[asyncio.Task[Any]]]:
    """The coroutines as tasks for the block, cancelled and awaited after it."""
    tasks = [asyncio.create_task(c) for c in coros]
    try:
        yield tasks
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), WAIT_S)
