"""One component per process: what the systemd units run (`pendant service NAME`).

`pendant run` composes the same classes in one loop (see runner.py), so a laptop and the
device run the same code. Each service reports READY once it can do its work and pings the
watchdog only while its main loop is doing that work. Each component's code is imported only
by its own service, so a small one (the body) does not carry the speech stack.
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

from pendant.core import state as durable
from pendant.core import systemd as notify
from pendant.core.config import Config
from pendant.core.errors import PendantError

log = logging.getLogger(__name__)

LINK_READY_S = 60


class MuteMemory:
    """Whether the wearer muted a sensor (`key`: "mic", "camera"), kept across restarts.

    A crash or a watchdog restart must not quietly unmute: the state lives in the service's
    own StateDirectory (systemd sets $STATE_DIRECTORY) and is read before anything is heard.
    Without one (a laptop) it lives as long as the process.
    """

    def __init__(self, directory: str | None = None, key: str = "mic") -> None:
        directory = directory or os.environ.get("STATE_DIRECTORY")
        # The mic's file keeps its old name, so an upgrade does not forget a mute.
        name = "mute.json" if key == "mic" else f"mute-{key}.json"
        self.key = key
        self.path = Path(directory) / name if directory else None

    def load(self) -> bool:
        if self.path is None:
            return False
        try:
            return bool(json.loads(self.path.read_text()).get(self.key))
        except FileNotFoundError:
            return False
        except (OSError, ValueError) as exc:
            # Unknown is treated as muted: better deaf than listening against the wish.
            log.error("cannot read %s (%s): starting muted", self.path, exc)
            return True

    def save(self, muted: bool) -> None:
        if self.path is None:
            return
        try:
            # Durable before the mute is reported: a power cut must not bring the mic back.
            durable.write_file(self.path, json.dumps({self.key: muted}))
        except OSError as exc:
            # The mute itself has taken effect; only its memory across a restart is lost.
            log.error("cannot remember the mute in %s: %s", self.path, exc.strerror)


def as_service(config: Config, name: str) -> Config:
    """The config as service `name` sees it: under systemd, its own bus user and password.

    Each unit hands its service the bus password as a credential (LoadCredential=), so one
    config file serves every service while each logs in as itself, as the broker's ACL wants.
    The link also gets the home broker's password (`home-password`) when link.username is set
    and link.password_file is not (the drop-in `pendant.setup.provision` writes).
    """
    credentials = os.environ.get("CREDENTIALS_DIRECTORY")
    if not credentials:
        return config
    folder = Path(credentials)
    return with_credentials(config, name, folder / "bus-password", folder / "home-password")


def with_credentials(
    config: Config, name: str, bus_password: Path, home_password: Path | None = None
) -> Config:
    """The config logging in to the bus as MQTT user `name` with the password in
    `bus_password`; for the link, to the home broker with `home_password` when link.username
    is set, link.password_file is not and that file holds a password (`as_service`; `pendant
    doctor` gives it the files the units load)."""
    bus_config = config.bus.model_copy(
        update={"username": name, "password_file": str(bus_password)}
    )
    update: dict[str, object] = {"bus": bus_config}
    link = config.link
    if (
        name == "link"
        and home_password is not None
        and link.username
        and not link.password_file
        and _provisioned(home_password)
    ):
        # The home broker's password (pendant-link.service: LoadCredential=home-password).
        update["link"] = link.model_copy(update={"password_file": str(home_password)})
    return config.model_copy(update=update)


NO_CREDENTIAL = "unset"
"""pendant-link.service's SetCredential= stand-in for a home password never provisioned."""


def _provisioned(path: Path) -> bool:
    try:
        return path.read_text().strip() not in ("", NO_CREDENTIAL)
    except OSError:
        return False


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
    notify.starting("loading the speech models")
    from pendant.ears.service import EarsService

    service = EarsService(as_service(config, "ears"), config_path)

    async def announce() -> None:
        notify.ready(f"listening ({config.listen.mode}, {config.asr.backend})")

    await _supervised(service.run(before_audio=announce), service.heartbeat)


async def serve_link(config: Config, config_path: Path | None) -> None:
    from pendant.link.service import Link

    link = Link(as_service(config, "link"))
    # The watchdog is fed by the senders' progress, not by the loop turning (see
    # pendant.link.sender): an idle sender reads its queue again well within the interval.
    interval_s = notify.watchdog_interval_s()
    if interval_s:
        link.check_s = min(link.check_s, interval_s / 4)

    async def main() -> None:
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
            run.cancel()
            await asyncio.gather(run, return_exceptions=True)

    await _supervised(main(), link.heartbeat)


async def serve_eyes(config: Config, config_path: Path | None) -> None:
    from pendant.eyes.service import serve

    await serve(as_service(config, "eyes"), config_path)


async def serve_body(config: Config, config_path: Path | None) -> None:
    from pendant.body.service import serve

    await serve(as_service(config, "body"), config_path)


async def serve_pairing(config: Config, config_path: Path | None) -> None:
    from pendant.pairing.service import serve

    await serve(as_service(config, "pairing"), config_path)


SERVICES: dict[str, Callable[[Config, Path | None], Awaitable[None]]] = {
    "ears": serve_ears,
    "eyes": serve_eyes,
    "body": serve_body,
    "link": serve_link,
    "pairing": serve_pairing,
}
