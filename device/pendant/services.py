"""One component per process: what the systemd units run (`pendant service NAME`).

`pendant run` composes the same classes in one loop (see runner.py), so a laptop and the
device run the same code. Each service reports READY once it can do its work and pings the
watchdog only while its main loop is doing that work.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiomqtt

from pendant import bus, notify
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
# A link waiting for events is alive if its loop turns; it proves so this often.
LINK_BEAT_S = 1.0
LINK_READY_S = 60


def understand(config: Config) -> Understanding:
    grammar = build_grammar(config)
    return Understanding(config, create_recognizer(config, grammar), IntentParser(config))


class MuteMemory:
    """Whether the wearer muted the mic, kept across restarts of the ears.

    A crash or a watchdog restart must not quietly unmute: the state lives in the service's
    own StateDirectory (systemd sets $STATE_DIRECTORY) and is read before anything is heard.
    Without one (a laptop) it lives as long as the process.
    """

    def __init__(self, directory: str | None = None) -> None:
        directory = directory or os.environ.get("STATE_DIRECTORY")
        self.path = Path(directory) / "mute.json" if directory else None

    def load(self) -> bool:
        if self.path is None:
            return False
        try:
            return bool(json.loads(self.path.read_text()).get("mic"))
        except FileNotFoundError:
            return False
        except (OSError, ValueError) as exc:
            # Unknown is treated as muted: better deaf than listening against the wish.
            log.error("cannot read %s (%s): starting muted", self.path, exc)
            return True

    def save(self, muted: bool) -> None:
        if self.path is None:
            return
        tmp = self.path.with_suffix(".tmp")
        try:
            tmp.write_text(json.dumps({"mic": muted}))
            tmp.replace(self.path)
        except OSError as exc:
            # The mute itself has taken effect; only its memory across a restart is lost.
            log.error("cannot remember the mute in %s: %s", self.path, exc.strerror)


class EarsService:
    """The ears on the bus: audio in, events out, buttons and commands in."""

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
        self.heartbeat = notify.Heartbeat()
        self.mute_memory = MuteMemory()
        self.sent = 0
        self.ears: Ears | None = None

    async def run(self, before_audio: Callable[[], Awaitable[object]] | None = None) -> None:
        """Until the audio source ends, or until cancelled."""
        try:
            # Persistent: a mute sent while the ears restart is waiting for them on return.
            async with bus.bus_client(self.config.bus, "pendant-ears", persistent=True) as client:

                async def publish(event: Event) -> None:
                    self.sent += 1
                    await bus.publish(client, event)

                self.ears = Ears(
                    self.understanding,
                    self.source,
                    self.silero,
                    publish,
                    self.heartbeat,
                    on_mute=self.mute_memory.save,
                )
                if self.mute_memory.load():
                    await self.ears.set_muted(True)
                await client.subscribe(bus.topic("button"), qos=bus.QOS)
                await client.subscribe(bus.topic("cmd/#"), qos=bus.QOS)
                if before_audio is not None:
                    await before_audio()
                helpers = [
                    asyncio.create_task(self._inbox(client), name="inbox"),
                    asyncio.create_task(self.watch_config(), name="config"),
                ]
                try:
                    await self.ears.run()
                finally:
                    for task in helpers:
                        task.cancel()
                    await asyncio.gather(*helpers, return_exceptions=True)
        except aiomqtt.MqttError as exc:
            where = self.config.bus.socket or self.config.bus.host
            raise PendantError(f"bus at {where}: {exc}") from None
        finally:
            self.source.close()

    async def _inbox(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            try:
                event = parse_event(bytes(message.payload))  # type: ignore[arg-type]
            except EventError as exc:
                log.warning("bus: ignored a bad event on %s: %s", message.topic, exc)
                continue
            if self.ears is None:
                continue
            if isinstance(event, Button):
                await self.ears.on_button(event)
            else:
                await self.ears.on_command(event)

    async def watch_config(self) -> None:
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


def as_service(config: Config, name: str) -> Config:
    """The config as service `name` sees it: under systemd, its own bus user and password.

    Each unit hands its service the bus password as a credential (LoadCredential=), so one
    config file serves every service while each logs in as itself, as the broker's ACL wants.
    """
    credentials = os.environ.get("CREDENTIALS_DIRECTORY")
    if not credentials:
        return config
    bus_config = config.bus.model_copy(
        update={"username": name, "password_file": str(Path(credentials) / "bus-password")}
    )
    return config.model_copy(update={"bus": bus_config})


async def _supervised(main: Awaitable[object], heartbeat: notify.Heartbeat) -> None:
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


async def serve_ears(config: Config, config_path: Path | None) -> None:
    service = EarsService(as_service(config, "ears"), config_path)

    async def announce() -> None:
        notify.ready(f"listening ({config.listen.mode}, {config.asr.backend})")

    await _supervised(service.run(before_audio=announce), service.heartbeat)


async def serve_link(config: Config, config_path: Path | None) -> None:
    link = Link(as_service(config, "link"))
    heartbeat = notify.Heartbeat()

    async def main() -> None:
        beat = asyncio.create_task(notify.beat_while_alive(heartbeat, LINK_BEAT_S))
        run = asyncio.create_task(link.run())
        ready = asyncio.create_task(link.bus_ready.wait())
        try:
            # A link that fails at start (a bad password file, say) must say so at once.
            await asyncio.wait({run, ready}, timeout=LINK_READY_S, return_when="FIRST_COMPLETED")
            if run.done():
                run.result()
            if not ready.done():
                raise PendantError(f"link: no bus at {config.bus.socket} after {LINK_READY_S} s")
            notify.ready("relaying")
            await run
        finally:
            ready.cancel()
            beat.cancel()
            run.cancel()
            await asyncio.gather(beat, run, return_exceptions=True)

    await _supervised(main(), heartbeat)


async def serve_eyes(config: Config, config_path: Path | None) -> None:
    from pendant.eyes.service import serve

    await serve(as_service(config, "eyes"), config_path)


async def serve_body(config: Config, config_path: Path | None) -> None:
    from pendant.body.service import serve

    await serve(as_service(config, "body"), config_path)


SERVICES: dict[str, Callable[[Config, Path | None], Awaitable[None]]] = {
    "ears": serve_ears,
    "eyes": serve_eyes,
    "body": serve_body,
    "link": serve_link,
}
