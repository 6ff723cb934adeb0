"""`make run`: the pendant in simulation, end to end, as a person would watch it.

Starts two private mosquitto brokers (the device-local bus on a unix socket, and a stand-in
home broker on a free port), runs `pendant run` as its own process on the bundled demo audio
(espeak-ng voices over silence, room noise and ordinary talk, rendered into .cache/), and
prints each intent as a subscriber on the home broker receives it. A few seconds in, it asks
the pendant to read the bundled label image (`cmd/capture`, as the phone's "read this" or a
double press would), and prints the scene. When the ears hear an action that waits for the
wearer's tap (the sliding door, a cover), it says so and taps the simulated button, as the
body would publish a real tap. Ctrl-C stops everything.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from pathlib import Path

import aiomqtt
import speech_sets  # tools/ is on sys.path when run as a script

from pendant.app.local_broker import LocalBroker
from pendant.core import bus as pendant_bus
from pendant.core.config import BusConfig
from pendant.core.events import Activity, Button

REPO = Path(__file__).resolve().parents[1]
CACHE = REPO / ".cache" / "speech-sets"


def demo_config(bus: LocalBroker, home: LocalBroker, wav: Path, realtime: bool) -> str:
    """The demo home plus the tables that point it at these brokers and this audio."""
    base = (REPO / "examples" / "pendant.toml").read_text()
    return base + (
        f'\n[audio]\nsource = "wav"\nfiles = ["{wav}"]\nrealtime = {str(realtime).lower()}\n'
        f'\n[bus]\nsocket = "{bus.socket_path}"\nusername = "pendant"\n'
        f'password_file = "{bus.password_file("pendant")}"\n'
        f'\n[link]\nhost = "127.0.0.1"\nport = {home.port}\nusername = "link"\n'
        f'password_file = "{home.password_file("link")}"\n'
        f'outbox_path = "{bus.directory}/outbox.sqlite"\n'
    )


def describe(payload: bytes) -> str:
    event = json.loads(payload)
    if event["type"] == "scene":
        text = (event.get("text") or "").replace("\n", " / ")
        labels = ", ".join(label["name"] for label in event.get("labels", []))
        return f"{'scene':<22} faces={event['face_count']}  labels={labels or '-'}  “{text}”"
    if event["type"] == "battery":
        return f"{'battery':<22} {event['pct']}%{' (low)' if event.get('low') else ''}"
    slots = "  ".join(f"{s['name']}={s['value']}" for s in event.get("slots", []))
    return f"{event['name']:<22} {slots:<40} “{event['text']}” ({event['confidence']:.2f})"


async def main() -> int:
    print("rendering the demo audio (espeak-ng, cached) ...", flush=True)
    speech_sets.generate(CACHE, demo=True)
    demo = json.loads((CACHE / "demo.json").read_text())
    wav = CACHE / demo["file"]
    with (
        LocalBroker(users=("pendant",)) as bus,
        LocalBroker(users=("link", "viewer"), tcp=True) as home,
    ):
        config = Path(bus.directory or ".") / "pendant.toml"
        config.write_text(demo_config(bus, home, wav, realtime=True))
        print(
            f"home broker: mqtt://127.0.0.1:{home.port} (user viewer, password in "
            f"{home.password_file('viewer')})"
        )
        print(
            f"playing {demo['duration_s']:.0f} s of audio with {len(demo['commands'])} commands; "
            "Ctrl-C stops\n",
            flush=True,
        )
        received = 0
        async with aiomqtt.Client(
            "127.0.0.1", home.port or 0, username="viewer", password=home.password("viewer")
        ) as viewer:
            await viewer.subscribe("pendant/+/intent/#", qos=1)
            await viewer.subscribe("pendant/+/availability", qos=1)
            await viewer.subscribe("pendant/+/scene", qos=1)
            await viewer.subscribe("pendant/+/battery", qos=1)
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "pendant",
                "--config",
                str(config),
                "run",
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
            started = time.monotonic()

            async def show() -> None:
                nonlocal received
                with contextlib.suppress(aiomqtt.MqttError):
                    await _show()

            async def _show() -> None:
                nonlocal received
                async for message in viewer.messages:
                    t = time.monotonic() - started
                    if str(message.topic).endswith("/availability"):
                        print(f"[{t:6.1f} s] pendant is {bytes(message.payload).decode()}")  # type: ignore[arg-type]
                        continue
                    received += "/intent/" in str(message.topic)
                    print(f"[{t:6.1f} s] {describe(bytes(message.payload))}", flush=True)  # type: ignore[arg-type]

            async def read_this() -> None:
                await asyncio.sleep(6)
                with contextlib.suppress(aiomqtt.MqttError):
                    await viewer.publish("pendant/pendant-demo/cmd/capture", b"{}", qos=1)

            async def tap_when_asked() -> None:
                config = BusConfig(
                    socket=str(bus.socket_path),
                    username="pendant",
                    password_file=str(bus.password_file("pendant")),
                )
                with contextlib.suppress(aiomqtt.MqttError):
                    async with pendant_bus.bus_client(config, "demo-finger") as finger:
                        await finger.subscribe(pendant_bus.topic("activity/+"), qos=1)
                        async for event in pendant_bus.events(finger):
                            if isinstance(event, Activity) and event.state == "confirm":
                                t = time.monotonic() - started
                                print(f"[{t:6.1f} s] an action waits for a tap: tapping")
                                await asyncio.sleep(1.0)
                                for action in ("press", "cancel", "tap"):
                                    tap = Button(device_id="pendant-demo", action=action)  # type: ignore[arg-type]
                                    await pendant_bus.publish(finger, tap)

            printer = asyncio.create_task(show())
            asker = asyncio.create_task(read_this())
            finger = asyncio.create_task(tap_when_asked())
            loop = asyncio.get_running_loop()
            loop.add_signal_handler(signal.SIGINT, proc.terminate)
            code = await proc.wait()
            await asyncio.sleep(0.5)
            for task in (printer, asker, finger):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
    print(
        f"\n{received} intents received; the audio held {len(demo['commands'])} commands "
        f"and {len(demo['non_commands'])} sentences that were not."
    )
    return 0 if code in (0, -signal.SIGTERM) else code


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
