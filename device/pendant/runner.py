"""`pendant run`: every component in one process and one asyncio loop.

On the device the same components run as separate services (ears, link, ...); here they share
a loop but still talk only through the bus, so the code paths are the ones the device uses.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from pathlib import Path

import aiomqtt

from pendant import bus
from pendant.asr import create_recognizer
from pendant.audio import AudioSource, create_source
from pendant.config import Config, load_config
from pendant.ears import Ears, Understanding
from pendant.errors import PendantError
from pendant.events import Button, Event, EventError, parse_event
from pendant.grammar import build_grammar
from pendant.link import Link
from pendant.models import model_path
from pendant.nlu import IntentParser
from pendant.vad import SileroVad

log = logging.getLogger(__name__)

CONFIG_POLL_S = 2.0
DRAIN_TIMEOUT_S = 10.0
BUS_READY_TIMEOUT_S = 10.0


def understand(config: Config) -> Understanding:
    grammar = build_grammar(config)
    return Understanding(config, create_recognizer(config, grammar), IntentParser(config))


class Pendant:
    def __init__(
        self,
        config: Config,
        config_path: Path | None = None,
        source: AudioSource | None = None,
    ) -> None:
        self.config = config
        self.config_path = config_path
        # Everything that can fail on bad config or a missing model fails here, before READY.
        self.silero = SileroVad(model_path(config, "silero-vad"))
        self.source = source or create_source(config.audio)
        self.understanding = understand(config)
        self.link = Link(config)
        self.sent = 0
        self.ears: Ears | None = None

    async def run(self) -> None:
        """Until the audio source ends, or until cancelled; drains the link before returning."""
        link_task = asyncio.create_task(self.link.run(), name="link")
        try:
            async with bus.bus_client(self.config.bus, "pendant-ears") as client:

                async def publish(event: Event) -> None:
                    self.sent += 1
                    await bus.publish(client, event)

                self.ears = Ears(self.understanding, self.source, self.silero, publish)
                await client.subscribe(bus.topic("button"), qos=bus.QOS)
                # The link must be listening before the first event, or it would be lost.
                await asyncio.wait_for(self.link.bus_ready.wait(), BUS_READY_TIMEOUT_S)
                helpers = [
                    asyncio.create_task(self._buttons(client), name="buttons"),
                    asyncio.create_task(self._watch_config(), name="config"),
                ]
                try:
                    await self.ears.run()
                    await self._drain()
                finally:
                    for task in helpers:
                        task.cancel()
                    await asyncio.gather(*helpers, return_exceptions=True)
        except aiomqtt.MqttError as exc:
            raise PendantError(
                f"bus at {self.config.bus.socket or self.config.bus.host}: {exc}"
            ) from None
        finally:
            self.source.close()
            link_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await link_task

    async def _drain(self) -> None:
        """Wait until the link has handled every event the ears sent."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + DRAIN_TIMEOUT_S
        while loop.time() < deadline:
            if self.link.received >= self.sent and self.link.idle:
                return
            await asyncio.sleep(0.02)
        log.warning("link did not hand on every event within %.0f s", DRAIN_TIMEOUT_S)

    async def _buttons(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            try:
                event = parse_event(bytes(message.payload))  # type: ignore[arg-type]
            except EventError as exc:
                log.warning("bus: ignored a bad button event: %s", exc)
                continue
            if isinstance(event, Button) and self.ears is not None:
                await self.ears.on_button(event)

    async def _watch_config(self) -> None:
        """Rebuild the grammar when the config file changes; keep the old one if it is bad."""
        if self.config_path is None:
            return
        seen = self.config_path.stat().st_mtime_ns
        while True:
            await asyncio.sleep(CONFIG_POLL_S)
            try:
                mtime = self.config_path.stat().st_mtime_ns
            except OSError:
                continue
            if mtime == seen:
                continue
            seen = mtime
            try:
                config = load_config(self.config_path)
                understanding = understand(config)
            except PendantError as exc:
                log.error("config change ignored, keeping the running one: %s", exc)
                continue
            if self.ears is not None:
                self.ears.understanding.recognizer.close()
                self.ears.understanding = understanding
            self.understanding = understanding
            log.info("config changed: grammar rebuilt")


def install_signal_handlers(task: asyncio.Task[object]) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, task.cancel)
