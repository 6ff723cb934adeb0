"""`pendant run`: every component in one process and one asyncio loop.

On the device the same components run as separate services (`pendant.app.services`); here
they are built by the same factories and share a loop, but still talk only through the bus,
so the code paths are the ones the device uses. `Pendant` is itself a component
(`pendant.core.supervise.Component`): `pendant run` supervises it as a unit would one service.

The components start one after another, each once the one before is ready: the link first, so
that it listens before anything is said, the ears last, since their audio starts as soon as
they are ready. The ears lead: when their audio source ends (a simulation's WAV files), the
others stop once the link has handed on everything. Any other component ending is a failure,
and takes the whole process down with it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection
from pathlib import Path

from pendant.app.services import load
from pendant.core import systemd as notify
from pendant.core.config import Config
from pendant.core.errors import PendantError
from pendant.core.supervise import Component, Ready, first_to_end, start, unobserved
from pendant.ears import service as ears_service
from pendant.ears.audio import AudioSource
from pendant.link import service as link_service

log = logging.getLogger(__name__)

DRAIN_TIMEOUT_S = 10.0
PARTS = ("ears", "eyes", "body", "link")


class Pendant:
    """The ears, the link and (where asked for) the eyes and the body, as one component."""

    name = "pendant"

    def __init__(
        self,
        config: Config,
        config_path: Path | None = None,
        source: AudioSource | None = None,
        parts: Collection[str] = PARTS,
    ) -> None:
        """`parts`: the ears and the link always; the eyes and the body where asked for.
        `source`: audio for the ears instead of the configured one (a simulation's)."""
        self.config = config
        # The ears' and the link's own factories, typed: callers look into both (the ears'
        # recogniser, the link's counts). The others come through the registry, imported only
        # when asked for.
        self.ears = ears_service.component(config, config_path, source)
        self.link = link_service.component(config, config_path)
        others = [load(name)(config, config_path) for name in ("eyes", "body") if name in parts]
        self.components: list[Component] = [self.link, *others, self.ears]
        """In the order they start; the ears, who lead, last."""
        self.heartbeat = notify.Heartbeats(*(c.heartbeat for c in self.components))

    @property
    def sent(self) -> int:
        """Public events the components published, which the link is to hand on."""
        speakers = (c for c in self.components if c is not self.link)
        return sum(getattr(c, "sent", 0) for c in speakers)

    async def run(self, ready: Ready = unobserved) -> None:
        """Until the audio source ends, or until cancelled; drains the link before returning.

        `ready` once every component is; one that ends or fails meanwhile ends this with it.
        """
        tasks: list[asyncio.Task[None]] = []
        try:
            for component in self.components:
                tasks.append(await start(component))
            ready("running " + ", ".join(c.name for c in self.components))
            *others, ears = tasks
            heard = asyncio.create_task(self._heard_and_handed_on(ears))
            ended = await first_to_end(heard, *reversed(others))
            if ended is not heard:  # nothing but the ears ends by itself: this one failed
                raise PendantError(f"{ended.get_name()}: stopped unexpectedly")
        finally:
            for task in reversed(tasks):
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _heard_and_handed_on(self, ears: asyncio.Task[None]) -> None:
        await ears
        await self._drain()

    async def _drain(self) -> None:
        """Wait until the link has handled every event the components sent."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + DRAIN_TIMEOUT_S
        while loop.time() < deadline:
            if self.link.received >= self.sent and self.link.idle:
                return
            await asyncio.sleep(0.02)
        log.warning("link did not hand on every event within %.0f s", DRAIN_TIMEOUT_S)
