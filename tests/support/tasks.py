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


async def within(done: Callable[[], bool], timeout: float = WAIT_S) -> bool:
    """Wait until `done()`, for at most `timeout` seconds; whether it came. For a wait after
    which the test goes on either way (its assertions say what was missing)."""
    try:
        await until(done, "", timeout)
    except AssertionError:
        return False
    return True


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


async def ticks_during(work: Coroutine[Any, Any, Any]) -> tuple[Any, int]:
    """`work`'s result, and how often a 5 ms ticker ran meanwhile: 0 when `work` held the
    loop the whole time."""
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.005)
            ticks += 1

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    try:
        return await work, ticks
    finally:
        task.cancel()
