"""How a service process runs its component: signals, the watchdog, and a clean stop.

`supervise_main` owns SIGINT/SIGTERM (a stop is reported to systemd, then the main task is
cancelled) and feeds systemd's watchdog only while the component's heartbeat says its loop is
doing its work (`pendant.core.systemd`).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Awaitable

from pendant.core import systemd as notify


async def supervise_main(main: Awaitable[object], heartbeat: notify.Heartbeat) -> None:
    """Run a service's main coroutine with the watchdog, until it ends or SIGTERM."""
    task = asyncio.ensure_future(main)
    loop = asyncio.get_running_loop()

    def stop() -> None:
        notify.stopping()
        task.cancel()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop)
    watchdog = asyncio.create_task(notify.watchdog(heartbeat), name="watchdog")
    try:
        await task
    except asyncio.CancelledError:
        pass
    finally:
        watchdog.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watchdog
