"""`pendant run`: every component in one process and one asyncio loop.

On the device the same components run as separate services (services.py); here they share a
loop but still talk only through the bus, so the code paths are the ones the device uses.
The ears lead: when their audio source ends (a simulation's WAV files), the others stop once
the link has handed on everything.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Collection
from pathlib import Path
from typing import Any

from pendant.core.config import Config
from pendant.ears.audio import AudioSource
from pendant.ears.service import EarsService
from pendant.link.service import Link

log = logging.getLogger(__name__)

DRAIN_TIMEOUT_S = 10.0
BUS_READY_TIMEOUT_S = 10.0
PARTS = ("ears", "eyes", "body", "link")


class Pendant:
    def __init__(
        self,
        config: Config,
        config_path: Path | None = None,
        source: AudioSource | None = None,
        parts: Collection[str] = PARTS,
    ) -> None:
        """`parts`: the ears and the link always; the eyes and the body where asked for."""
        self.config = config
        self.ears = EarsService(config, config_path, source)
        self.link = Link(config)
        self.others: list[Any] = []
        if "eyes" in parts:
            from pendant.eyes.service import EyesService

            self.eyes = EyesService(config)
            self.eyes.warm_up()
            self.others.append(self.eyes)
        if "body" in parts:
            from pendant.body.service import BodyService

            self.body = BodyService(config)
            self.others.append(self.body)

    @property
    def sent(self) -> int:
        """Public events the components published, which the link is to hand on."""
        return self.ears.sent + sum(getattr(o, "sent", 0) for o in self.others)

    async def run(self) -> None:
        """Until the audio source ends, or until cancelled; drains the link before returning."""
        link_task = asyncio.create_task(self.link.run(), name="link")
        others = [asyncio.create_task(o.run(), name=type(o).__name__) for o in self.others]

        async def link_listening() -> None:
            # The link must be listening before the first event, or it would be lost.
            async with asyncio.timeout(BUS_READY_TIMEOUT_S):
                await self.link.bus_ready.wait()

        try:
            await self.ears.run(before_audio=link_listening)
            await self._drain()
        finally:
            for task in (*others, link_task):
                task.cancel()
            for task in (*others, link_task):
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _drain(self) -> None:
        """Wait until the link has handled every event the components sent."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + DRAIN_TIMEOUT_S
        while loop.time() < deadline:
            if self.link.received >= self.sent and self.link.idle:
                return
            await asyncio.sleep(0.02)
        log.warning("link did not hand on every event within %.0f s", DRAIN_TIMEOUT_S)


def install_signal_handlers(task: asyncio.Task[object]) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, task.cancel)
