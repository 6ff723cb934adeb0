"""The eyes on the bus: capture requests and mutes in, scenes and intents out.

One asyncio loop. A frame is taken only on request and only when neither the software mute
(phone, Home Assistant) nor the hardware switch (body, retained) is on; the switch wins. The
blocking camera call is awaited in a thread, and the models run in a reader process of their
own (`pendant.eyes.reader`), one frame at a time, so the loop keeps turning (bus keep-alives,
the watchdog, a mute) while a frame is read, and the service holds no model between requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import aiomqtt

from pendant.core import bus, heap, wire
from pendant.core import systemd as notify
from pendant.core.config import Config
from pendant.core.errors import PendantError
from pendant.core.events import (
    PUBLIC_NAMES,
    Activity,
    Camera,
    Command,
    Event,
    HardwareMute,
    Intent,
)
from pendant.core.model_cache import model_path
from pendant.core.supervise import Ready, unobserved
from pendant.eyes import OCR_MODEL
from pendant.eyes.camera import CameraBackend, CameraError, create_camera
from pendant.eyes.reader import Reader

if TYPE_CHECKING:
    from pendant.eyes.pipeline import Trigger

log = logging.getLogger(__name__)

BEAT_S = 1.0
# Requests queued for the eyes while they were down (a persistent session) are not acted on
# after this long: a frame nobody is waiting for any more is a frame nobody asked for.
STALE_REQUEST_S = 30.0
SPOKEN: dict[str, Trigger] = {"ReadThis": "read_this", "WhatIsThis": "what_is_this"}


class EyesService:
    """Camera, reader and mute state; `run()` serves the bus until cancelled.

    A component (`pendant.core.supervise.Component`): ready once its first camera state is
    on the bus.
    """

    name = "eyes"

    def __init__(self, config: Config, camera: CameraBackend | None = None) -> None:
        from pendant.core.state import MuteMemory

        self.config = config
        # Models first: a missing one fails here, before the camera or the bus is touched
        # (`warm_up` then loads each, in a reader, before READY).
        for name in ("retinaface", OCR_MODEL):
            model_path(config, name)
        self.reader = Reader(config)
        self.camera = camera or create_camera(config.eyes)
        self.heartbeat = notify.Heartbeat()
        self.mute_memory = MuteMemory(key="camera")
        self.muted = self.mute_memory.load()
        self.hardware_muted = False
        self.busy = False
        self.captures = 0
        self.sent = 0
        self._client: aiomqtt.Client | None = None

    @property
    def blocked(self) -> bool:
        """The camera may not be used: muted in software or by the hardware switch."""
        return self.muted or self.hardware_muted

    def warm_up(self, step: Callable[[str], None] = lambda _: None) -> None:
        """Loads and runs each model once in a reader that then exits, before READY
        (`Reader.warm_up`; `step` is told each step). Blocking: seconds on a Pi."""
        self.reader.warm_up(step)
        heap.trim()
        # The warm-up took seconds, none of them a stall of the loop, which has not started.
        self.heartbeat.beat()

    async def run(self, ready: Ready = unobserved) -> None:
        """Until cancelled (or the bus fails); `ready` once subscribed and the camera's state
        published. The camera and the reader are closed when it returns."""
        try:
            async with bus.bus_client(self.config.bus, "pendant-eyes", persistent=True) as client:
                self._client = client
                await client.subscribe(bus.topic("intent"), qos=bus.QOS)
                await client.subscribe(bus.topic("hardware_mute"), qos=bus.QOS)
                await client.subscribe(bus.command_topic("#"), qos=bus.QOS)
                await self._publish_camera()
                idle = Activity(device_id=self.config.device_id, sensor="camera", state="idle")
                await self._publish(idle)
                beat = asyncio.create_task(notify.beat_while_alive(self.heartbeat, BEAT_S))
                try:
                    detector = f" ({self.reader.detector})" if self.reader.detector else ""
                    ready(f"looking on request{detector}")
                    await self._inbox(client)
                finally:
                    beat.cancel()
                    await asyncio.gather(beat, return_exceptions=True)
        except aiomqtt.MqttError as exc:
            raise bus.error(self.config.bus, exc) from None
        finally:
            self._client = None
            self.camera.close()
            await self.reader.close()

    async def _publish(self, event: Event) -> None:
        if self._client is not None:
            if event.type in PUBLIC_NAMES:
                self.sent += 1  # the link receives it: `pendant run` drains on it
            await bus.publish(self._client, event)

    async def _publish_camera(self) -> None:
        await self._publish(
            Camera(
                device_id=self.config.device_id,
                muted=self.blocked,
                hardware_muted=self.hardware_muted,
            )
        )

    async def _inbox(self, client: aiomqtt.Client) -> None:
        # A request runs beside the loop, so a mute that comes while its frame is read is
        # acted on at once (the reader stopped, nothing published), not after the scene.
        async with asyncio.TaskGroup() as requests:
            async for event in bus.events(client):
                if _is_request(event):
                    requests.create_task(self.handle(event))
                else:
                    await self.handle(event)

    async def handle(self, event: Event) -> None:
        """Acts on one bus event: the hardware switch, a camera mute command, a capture command, or
        a spoken ReadThis or WhatIsThis; any other is ignored. A request returns once its frame is
        read and the results published (or dropped: muted meanwhile)."""
        if isinstance(event, HardwareMute):
            await self.set_hardware_muted(event.camera)
        elif isinstance(event, Command) and event.name == "mute" and event.camera is not None:
            await self.set_muted(event.camera)
        elif isinstance(event, Command) and event.name == "capture":
            await self.request("capture", None, event.timestamp_ms)
        elif isinstance(event, Intent) and event.name in SPOKEN:
            await self.request(SPOKEN[event.name], event.session_id, event.timestamp_ms)

    async def set_muted(self, muted: bool) -> None:
        """The wearer's camera mute, remembered across restarts and published; the hardware switch,
        while on, keeps the camera muted regardless."""
        self.muted = muted
        self.mute_memory.save(muted)
        still = " (the hardware switch still mutes it)" if self.hardware_muted else ""
        log.info("camera %s by software%s", "muted" if muted else "unmuted", still)
        self._stop_reading_if_muted()
        await self._publish_camera()

    async def set_hardware_muted(self, muted: bool) -> None:
        """The hardware switch's camera mute; published when it changes."""
        changed = muted != self.hardware_muted
        self.hardware_muted = muted
        if changed:
            log.info("camera %s by the hardware switch", "muted" if muted else "released")
            self._stop_reading_if_muted()
            await self._publish_camera()

    def _stop_reading_if_muted(self) -> None:
        """Muted while a frame is read: the reader is stopped, so the frame goes with it."""
        if self.blocked and self.busy:
            self.reader.abort()

    async def request(self, trigger: Trigger, session_id: str | None, asked_ms: int) -> None:
        """Take and read one frame, unless muted, busy or asked too long ago."""
        if self.blocked:
            why = "hardware switch" if self.hardware_muted else "software mute"
            log.info("%s request ignored: the camera is muted (%s)", trigger, why)
            return
        if wire.now_ms() - asked_ms > STALE_REQUEST_S * 1000:
            log.info("%s request ignored: asked more than %.0f s ago", trigger, STALE_REQUEST_S)
            return
        if self.busy:
            log.info("%s request ignored: still reading the last frame", trigger)
            return
        self.busy = True
        try:
            await self._capture_and_read(trigger, session_id)
        finally:
            self.busy = False

    async def _capture_and_read(self, trigger: Trigger, session_id: str | None) -> None:
        device_id = self.config.device_id
        await self._publish(Activity(device_id=device_id, sensor="camera", state="capturing"))
        try:
            # The reader loads its models while the shutter is open (if it cannot start, the
            # look tries again, and says why).
            with contextlib.suppress(PendantError):
                await self.reader.start()
            try:
                frame = await asyncio.to_thread(self.camera.capture)
            except CameraError as exc:
                log.error("%s", exc)
                return
            self.captures += 1
            if self.blocked:
                # Muted while the shutter was open: the frame is dropped unread.
                del frame
                log.info("%s: muted during the capture, frame dropped unread", trigger)
                return
            await self._publish(Activity(device_id=device_id, sensor="camera", state="thinking"))
            try:
                seen = await self.reader.look(frame, trigger, session_id)
            except PendantError as exc:
                if self.blocked:  # the mute stopped the reader
                    log.info("%s: muted while the frame was read, nothing published", trigger)
                    return
                # As for a camera that gives no frame: said in one line, and no scene.
                log.error("%s: %s", trigger, exc)
                return
            finally:
                del frame
            if self.blocked:  # muted as the answer came: what the frame held stays here
                log.info("%s: muted while the frame was read, nothing published", trigger)
                return
            await self._publish(seen.scene)
            for intent in seen.intents:
                await self._publish(intent)
            scene = seen.scene
            log.info(
                "%s: %d face(s) masked, %d character(s), %d label(s)",
                trigger, scene.face_count, len(scene.text or ""), len(scene.labels),
            )  # fmt: skip
        finally:
            self.reader.release()
            # The frame's pages, freed in the camera's thread, go back now rather than stay
            # with the eyes until the next frame.
            heap.trim()
            await self._publish(Activity(device_id=device_id, sensor="camera", state="idle"))


def component(config: Config, config_path: Path | None) -> EyesService:
    """The eyes, their models checked by loading and running each once in a reader that then
    exits (`pendant.app.services`): a model that will not load stops the service before READY."""
    notify.starting("loading the eyes' models")
    service = EyesService(config)
    service.warm_up(notify.starting)
    return service


def _is_request(event: Event) -> bool:
    """A capture command or a spoken request: what takes and reads a frame."""
    if isinstance(event, Command):
        return event.name == "capture"
    return isinstance(event, Intent) and event.name in SPOKEN
