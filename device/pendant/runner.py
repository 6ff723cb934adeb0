"""`pendant run`: every component in one process and one asyncio loop.

On the device the same components run as separate services (services.py); here they share a
loop but still talk only through the bus, so the code paths are the ones the device uses.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from pathlib import Path

from pendant.audio import AudioSource
from pendant.config import Config
from pendant.link import Link
from pendant.services import EarsService

log = logging.getLogger(__name__)

DRAIN_TIMEOUT_S = 10.0
BUS_READY_TIMEOUT_S = 10.0


class Pendant:
    def __init__(
        self,
        config: Config,
        config_path: Path | None = None,
        source: AudioSource | None = None,
    ) -> None:
        self.config = config
        self.ears = EarsService(config, config_path, source)
        self.link = Link(config)

    async def run(self) -> None:
        """Until the audio source ends, or until cancelled; drains the link before returning."""
        link_task = asyncio.create_task(self.link.run(), name="link")

        async def link_listening() -> None:
            # The link must be listening before the first event, or it would be lost.
            await asyncio.wait_for(self.link.bus_ready.wait(), BUS_READY_TIMEOUT_S)

        try:
            await self.ears.run(before_audio=link_listening)
            await self._drain()
        finally:
            link_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await link_task

    async def _drain(self) -> None:
        """Wait until the link has handled every event the ears sent."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + DRAIN_TIMEOUT_S
        while loop.time() < deadline:
            if self.link.received >= self.ears.sent and self.link.idle:
                return
            await asyncio.sleep(0.02)
        log.warning("link did not hand on every event within %.0f s", DRAIN_TIMEOUT_S)


def install_signal_handlers(task: asyncio.Task[object]) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, task.cancel)
