"""`pendant listen FILE.wav...`: the whole pendant on files, with private brokers.

It starts a device-local bus and a stand-in home broker (both mosquitto, in a temp dir), plays
the files through the simulated microphone as fast as the pipeline takes them, and prints each
intent as a paho subscriber on the home broker receives it: the same path a home automation
system sees.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Sequence
from pathlib import Path

from pendant.app.local_broker import LocalBroker
from pendant.app.one_process import Pendant
from pendant.core import mqtt
from pendant.core.config import Config
from pendant.ears.audio.wav import WavSource

DELIVERY_TIMEOUT_S = 5.0


def simulated(config: Config, bus: LocalBroker, home: LocalBroker, **audio: object) -> Config:
    """The config pointed at private brokers and the WAV source."""
    assert home.port is not None
    return config.model_copy(
        update={
            "bus": config.bus.model_copy(
                update={
                    "socket": str(bus.socket_path),
                    "username": "pendant",
                    "password_file": str(bus.password_file("pendant")),
                }
            ),
            "link": config.link.model_copy(
                update={
                    "host": "127.0.0.1",
                    "port": home.port,
                    "username": "link",
                    "password_file": str(home.password_file("link")),
                    # Beside the private brokers, gone with them; not /var/lib/pendant.
                    "outbox_path": str(Path(bus.directory or ".") / "outbox.sqlite"),
                }
            ),
            "audio": config.audio.model_copy(update={"source": "wav", **audio}),
        }
    )


async def listen(config: Config, files: Sequence[Path], out=sys.stdout) -> int:
    """Plays `files` through the ears and the link on private brokers (`simulated`), writing
    each intent the home broker delivers to `out` as a line of JSON; returns 0, the exit status.

    Needs mosquitto (`LocalBroker`). Returns once the files are played and their intents
    arrived, or DELIVERY_TIMEOUT_S after the pipeline ends if some never do."""
    with (
        LocalBroker(users=("pendant",)) as bus,
        LocalBroker(users=("link", "viewer"), tcp=True) as home,
    ):
        cfg = simulated(config, bus, home, realtime=False)
        pendant = Pendant(cfg, source=WavSource(cfg.audio, files), parts=("ears", "link"))
        received = 0
        async with mqtt.client(
            host="127.0.0.1",
            port=home.port or 0,
            username="viewer",
            password=home.password("viewer"),
        ) as viewer:
            await viewer.subscribe(f"{pendant.link.base_topic}/intent/#", qos=1)

            async def show() -> None:
                nonlocal received
                async for message in viewer.messages:
                    out.write(bytes(message.payload).decode() + "\n")  # type: ignore[arg-type]
                    out.flush()
                    received += 1

            printer = asyncio.create_task(show())
            await pendant.run()
            loop = asyncio.get_running_loop()
            deadline = loop.time() + DELIVERY_TIMEOUT_S
            while received < pendant.link.published["intent"] and loop.time() < deadline:
                await asyncio.sleep(0.02)
            printer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await printer
    return 0
