"""One component per process: what the systemd units run (`pendant service NAME`).

`pendant run` composes the same classes in one loop (see runner.py), so a laptop and the
device run the same code. Each service reports READY once it can do its work and pings the
watchdog only while its main loop is doing that work. Each component's code is imported only
by its own service, so a small one (the body) does not carry the speech stack.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

from pendant.core import systemd as notify
from pendant.core.config import Config
from pendant.core.errors import PendantError
from pendant.core.supervise import supervise_main

log = logging.getLogger(__name__)

LINK_READY_S = 60


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


async def serve_ears(config: Config, config_path: Path | None) -> None:
    notify.starting("loading the speech models")
    from pendant.ears.service import EarsService

    service = EarsService(as_service(config, "ears"), config_path)

    async def announce() -> None:
        notify.ready(f"listening ({config.listen.mode}, {config.asr.backend})")

    await supervise_main(service.run(before_audio=announce), service.heartbeat)


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

    await supervise_main(main(), link.heartbeat)


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
