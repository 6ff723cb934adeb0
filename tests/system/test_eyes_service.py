"""The eyes on a real mosquitto bus: captures on request, mutes, nothing but words out; and
`pendant service eyes` as systemd runs it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import sys
from pathlib import Path

import pytest

from pendant.app.local_broker import LocalBroker
from pendant.core import bus
from pendant.core.config import BusConfig, Config, DetectorConfig
from pendant.core.events import Command, Event, HardwareMute, Intent
from pendant.core.supervise import Readiness
from pendant.eyes.camera import FileCamera
from pendant.eyes.service import EyesService
from tests.support.eyes_support import eyes_config, face_image, normalise, render_text, save_png
from tests.system.test_service_processes import (  # noqa: F401 - notify_socket is a fixture
    READY_TIMEOUT_S,
    NotifySocket,
    notify_socket,
    start_service,
    watch_bus,
    write_config,
)

TIMEOUT_S = 30.0
Brokers = tuple[LocalBroker, LocalBroker]


def _config(broker: LocalBroker, files: list[Path]) -> Config:
    config = eyes_config(files=[str(f) for f in files], detector=DetectorConfig(type="cpu"))
    return config.model_copy(
        update={
            "bus": BusConfig(
                socket=str(broker.socket_path),
                username="pendant",
                password_file=str(broker.password_file("pendant")),
            )
        }
    )


class Bus:
    """Everything on the bus, and a client to send on it, for one scenario."""

    def __init__(self, broker: LocalBroker) -> None:
        self.broker = broker
        self.seen: list[dict[str, object]] = []
        self.raw: list[bytes] = []

    async def until(self, what: str, count: int = 1) -> list[dict[str, object]]:
        async def wait() -> list[dict[str, object]]:
            while True:
                found = [e for e in self.seen if _is(e, what)]
                if len(found) >= count:
                    return found
                await asyncio.sleep(0.05)

        return await asyncio.wait_for(wait(), TIMEOUT_S)

    async def send(self, event: Event, retain: bool = False) -> None:
        config = BusConfig(
            socket=str(self.broker.socket_path),
            username="intruder",
            password_file=str(self.broker.password_file("intruder")),
        )
        async with bus.bus_client(config, "test-sender") as client:
            await client.publish(bus.topic(event.type), event.to_json(), qos=1, retain=retain)

    async def command(self, device_id: str, **fields: object) -> None:
        event = Command(device_id=device_id, **fields)  # type: ignore[arg-type]
        config = BusConfig(
            socket=str(self.broker.socket_path),
            username="intruder",
            password_file=str(self.broker.password_file("intruder")),
        )
        async with bus.bus_client(config, "test-phone") as client:
            await client.publish(bus.topic(f"cmd/{event.name}"), event.to_json(), qos=1)


def _is(event: dict[str, object], what: str) -> bool:
    kind, _, detail = what.partition(":")
    if event.get("type") != kind:
        return False
    if not detail:
        return True
    return any(str(v) == detail for v in event.values())


async def _watch(b: Bus, ready: asyncio.Event) -> None:
    config = BusConfig(
        socket=str(b.broker.socket_path),
        username="intruder",
        password_file=str(b.broker.password_file("intruder")),
    )
    async with bus.bus_client(config, "test-watcher") as client:
        await client.subscribe("#", qos=1)
        ready.set()
        async for message in client.messages:
            payload = bytes(message.payload)  # type: ignore[arg-type]
            b.raw.append(payload)
            with contextlib.suppress(ValueError):
                b.seen.append(json.loads(payload))


async def _scenario(broker: LocalBroker, files: list[Path], script) -> tuple[Bus, EyesService]:  # type: ignore[no-untyped-def]
    config = _config(broker, files)
    camera = FileCamera(files, config.eyes.width, config.eyes.height)
    service = EyesService(config, camera=camera)
    b = Bus(broker)
    watching = asyncio.Event()
    watcher = asyncio.create_task(_watch(b, watching))
    await asyncio.wait_for(watching.wait(), TIMEOUT_S)
    ready = Readiness()
    running = asyncio.create_task(service.run(ready))
    try:
        await asyncio.wait_for(ready.wait(), TIMEOUT_S)
        await script(b, service, config.device_id)
    finally:
        for task in (running, watcher):
            task.cancel()
        await asyncio.gather(running, watcher, return_exceptions=True)
    return b, service


def test_capture_command_publishes_a_scene_and_a_read_text_intent(
    brokers: Brokers, tmp_path: Path
) -> None:
    image = save_png(render_text(["Keep refrigerated"]), tmp_path / "label.png")

    async def script(b: Bus, service: EyesService, device_id: str) -> None:
        await b.until("camera")
        await b.command(device_id, name="capture")
        await b.until("intent:ReadText")
        await b.until("activity:idle", 2)

    b, service = asyncio.run(_scenario(brokers[0], [image], script))
    (scene,) = [e for e in b.seen if e["type"] == "scene"]
    assert scene["trigger"] == "capture"
    assert normalise(scene["text"]) == "keep refrigerated"  # type: ignore[arg-type]
    (intent,) = [e for e in b.seen if e["type"] == "intent"]
    assert intent["name"] == "ReadText" and intent["session_id"] == scene["session_id"]
    assert intent["slots"][0]["entity"] == "ocr"  # type: ignore[index]
    states = [e["state"] for e in b.seen if e["type"] == "activity"]
    assert states == ["idle", "capturing", "thinking", "idle"]
    assert b.seen[0]["type"] == "camera" and b.seen[0]["muted"] is False
    assert service.camera.opens == 1


def test_spoken_request_carries_its_session_and_faces_leave_only_as_a_count(
    brokers: Brokers, tmp_path: Path
) -> None:
    image = save_png(face_image(), tmp_path / "face.png")

    async def script(b: Bus, service: EyesService, device_id: str) -> None:
        await b.until("camera")
        spoken = Intent(device_id=device_id, name="WhatIsThis", text="what is this", confidence=1)
        await b.send(spoken)
        (scene,) = await b.until("scene")
        assert scene["session_id"] == spoken.session_id
        assert scene["trigger"] == "what_is_this"
        await b.until("activity:idle", 2)

    b, _ = asyncio.run(_scenario(brokers[0], [image], script))
    (scene,) = [e for e in b.seen if e["type"] == "scene"]
    assert scene["face_count"] == 1
    for payload in b.raw:
        assert len(payload) < 8192
        # No pixels: nothing long and base64-like, no arrays of numbers, no box keys.
        assert not re.search(rb"[A-Za-z0-9+/=]{48,}", payload)
        assert not re.search(rb"\[\s*\d+(\.\d+)?\s*,\s*\d+(\.\d+)?\s*,\s*\d+", payload)
        event = json.loads(payload)
        assert not {"box", "boxes", "bbox", "faces", "image", "pixels"} & set(event)


def test_muted_camera_is_never_opened_and_hardware_mute_wins(
    brokers: Brokers, tmp_path: Path
) -> None:
    image = save_png(render_text(["EXIT"], font_px=90), tmp_path / "exit.png")

    async def script(b: Bus, service: EyesService, device_id: str) -> None:
        await b.until("camera")
        await b.command(device_id, name="mute", camera=True)
        await b.until("camera:True")
        await b.command(device_id, name="capture")
        await b.send(Intent(device_id=device_id, name="ReadThis", text="read this", confidence=1))
        # The switch on, then the phone unmutes: the switch still holds the camera shut.
        await b.send(HardwareMute(device_id=device_id, mic=False, camera=True), retain=True)
        await b.until("camera", 3)
        await b.command(device_id, name="mute", camera=False)
        await b.until("camera", 4)
        await b.command(device_id, name="capture")
        # Switch off: now a capture goes through, which also proves the ones above were seen.
        await b.send(HardwareMute(device_id=device_id, mic=False, camera=False), retain=True)
        await b.until("camera", 5)
        await b.command(device_id, name="capture")
        await b.until("scene")
        await b.until("activity:idle", 2)

    b, service = asyncio.run(_scenario(brokers[0], [image], script))
    cameras = [(e["muted"], e["hardware_muted"]) for e in b.seen if e["type"] == "camera"]
    assert cameras == [
        (False, False),
        (True, False),
        (True, True),
        (True, True),  # unmuted by software: still muted by the switch
        (False, False),
    ]
    assert service.camera.opens == 1  # only the last capture
    assert service.reader.started == 1  # and a muted request did not even start a reader
    scenes = [e for e in b.seen if e["type"] == "scene"]
    assert len(scenes) == 1 and normalise(scenes[0]["text"]) == "exit"  # type: ignore[arg-type]


def test_eyes_service_process_reports_ready(
    brokers: Brokers,
    notify_socket: NotifySocket,  # noqa: F811 - the fixture imported above
    tmp_path: Path,
) -> None:
    eyes_config()  # the models are in the cache before the clock starts
    image = save_png(render_text(["Platform 4"]), tmp_path / "sign.png")
    config = write_config(tmp_path / "pendant.toml", brokers)
    config.write_text(
        config.read_text() + f'\n[eyes]\nfiles = ["{image}"]\n[eyes.detector]\ntype = "cpu"\n'
    )

    async def scenario() -> tuple[str, list[dict[str, object]], str]:
        events: list[dict[str, object]] = []
        subscribed = asyncio.Event()
        watcher = asyncio.create_task(watch_bus(brokers[0], events, subscribed))
        await asyncio.wait_for(subscribed.wait(), TIMEOUT_S)
        service = await start_service("eyes", config, notify_socket.path, tmp_path / "eyes.log")
        try:
            note = await notify_socket.wait_for("READY", "1", READY_TIMEOUT_S)
            await notify_socket.wait_for("WATCHDOG", "1", TIMEOUT_S)
            # Ready and idle, it holds no frame, so not numpy either (~9 MB PSS): a capture
            # imports it.
            idle_maps = Path(f"/proc/{service.proc.pid}/maps").read_text()
            b = Bus(brokers[0])
            await b.command("pendant-demo", name="capture")

            async def scene() -> None:
                while not any(e.get("type") == "scene" for e in events):
                    await asyncio.sleep(0.05)

            await asyncio.wait_for(scene(), TIMEOUT_S)
            service.proc.terminate()
            await notify_socket.wait_for("STOPPING", "1", TIMEOUT_S)
            assert await service.wait() == 0, service.output()
        finally:
            await service.stop()
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
        return note.fields.get("STATUS", ""), events, idle_maps

    status, events, idle_maps = asyncio.run(asyncio.wait_for(scenario(), READY_TIMEOUT_S * 2))
    assert "looking" in status
    assert "numpy" not in idle_maps
    (scene,) = [e for e in events if e.get("type") == "scene"]
    assert normalise(scene["text"]) == "platform 4"  # type: ignore[arg-type]


def test_a_reader_that_hangs_costs_one_capture_not_the_next(
    brokers: Brokers, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    image = save_png(render_text(["EXIT"], font_px=90), tmp_path / "exit.png")
    hang = (sys.executable, "-c", "import time; time.sleep(600)")

    async def script(b: Bus, service: EyesService, device_id: str) -> None:
        await b.until("camera")
        command, timeout_s = service.reader.command, service.reader.timeout_s
        service.reader.command, service.reader.timeout_s = hang, 1.0
        await b.command(device_id, name="capture")
        await b.until("activity:idle", 2)
        service.reader.command, service.reader.timeout_s = command, timeout_s
        await b.command(device_id, name="capture")
        await b.until("scene")
        await b.until("activity:idle", 3)

    with caplog.at_level(logging.ERROR, logger="pendant.eyes.service"):
        b, service = asyncio.run(_scenario(brokers[0], [image], script))
    states = [e["state"] for e in b.seen if e["type"] == "activity"]
    assert states == ["idle", "capturing", "thinking", "idle", "capturing", "thinking", "idle"]
    (scene,) = [e for e in b.seen if e["type"] == "scene"]
    assert normalise(scene["text"]) == "exit"  # type: ignore[arg-type]
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [
        "capture: eyes: no scene within 1 s (eyes.read_timeout_s): the reader was stopped"
    ]
    assert service.reader.started == 2


def test_a_mute_while_the_frame_is_read_stops_the_reader_and_publishes_nothing(
    brokers: Brokers, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Review M2: bus events were handled one at a time, so a mute waited behind the capture
    it was meant to stop (up to a cold model load, or the 60 s timeout), and the text of a
    frame the wearer muted mid-shot still left. Now the mute is acted on at once."""
    image = save_png(render_text(["EXIT"], font_px=90), tmp_path / "exit.png")
    hang = (sys.executable, "-c", "import time; time.sleep(600)")

    async def script(b: Bus, service: EyesService, device_id: str) -> None:
        await b.until("camera")
        command = service.reader.command
        service.reader.command = hang  # reads for ever, as a cold load on a slow board
        await b.command(device_id, name="capture")
        await b.until("activity:thinking")
        await b.command(device_id, name="mute", camera=True)
        await b.until("activity:idle", 2)
        assert not service.busy and service.reader.pid is None
        service.reader.command = command
        await b.command(device_id, name="mute", camera=False)
        await b.until("camera", 3)
        await b.command(device_id, name="capture")
        await b.until("scene")

    with caplog.at_level(logging.INFO, logger="pendant.eyes.service"):
        b, _ = asyncio.run(_scenario(brokers[0], [image], script))
    (scene,) = [e for e in b.seen if e["type"] == "scene"]  # the second capture's alone
    assert normalise(scene["text"]) == "exit"  # type: ignore[arg-type]
    messages = [r.getMessage() for r in caplog.records]
    assert "capture: muted while the frame was read, nothing published" in messages
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def _children(pid: int) -> list[int]:
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def test_eyes_service_process_holds_no_model_between_captures(
    brokers: Brokers,
    notify_socket: NotifySocket,  # noqa: F811 - the fixture imported above
    tmp_path: Path,
) -> None:
    eyes_config()  # the models are in the cache before the clock starts
    image = save_png(render_text(["Platform 4"]), tmp_path / "sign.png")
    config = write_config(tmp_path / "pendant.toml", brokers)
    config.write_text(
        config.read_text()
        + f'\n[eyes]\nfiles = ["{image}"]\nlinger_s = 0\n[eyes.detector]\ntype = "cpu"\n'
    )

    async def scenario() -> tuple[list[dict[str, object]], list[str]]:
        events: list[dict[str, object]] = []
        subscribed = asyncio.Event()
        watcher = asyncio.create_task(watch_bus(brokers[0], events, subscribed))
        await asyncio.wait_for(subscribed.wait(), TIMEOUT_S)
        service = await start_service("eyes", config, notify_socket.path, tmp_path / "eyes.log")
        pid = service.proc.pid
        maps: list[str] = []
        try:
            await notify_socket.wait_for("READY", "1", READY_TIMEOUT_S)
            b = Bus(brokers[0])
            for count in (1, 2):
                await b.command("pendant-demo", name="capture")

                async def scenes(n: int = count) -> None:
                    while sum(e.get("type") == "scene" for e in events) < n:
                        await asyncio.sleep(0.05)

                await asyncio.wait_for(scenes(), TIMEOUT_S)

                async def reader_gone() -> None:
                    while _children(pid):
                        await asyncio.sleep(0.05)

                # Let go at once (linger_s = 0): the models' memory goes with their process.
                await asyncio.wait_for(reader_gone(), TIMEOUT_S)
                maps.append(Path(f"/proc/{pid}/maps").read_text())
            service.proc.terminate()
            assert await service.wait() == 0, service.output()
        finally:
            await service.stop()
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
        return events, maps

    events, maps = asyncio.run(asyncio.wait_for(scenario(), READY_TIMEOUT_S * 2))
    scenes = [e for e in events if e.get("type") == "scene"]
    assert [normalise(s["text"]) for s in scenes] == ["platform 4"] * 2  # type: ignore[arg-type]
    # The service itself never loaded a model runtime: the readers did.
    for text in maps:
        assert "onnxruntime" not in text and "libopencv" not in text and "cv2" not in text
