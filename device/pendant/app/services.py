"""One component per process: what the systemd units run (`pendant service NAME`).

`SERVICES` names each component's factory as a "module:function" string, imported only when
that service starts: each process loads its own component's code and no other's, so a small
one (the body) does not carry the speech stack. A factory builds its component (everything
that can fail on bad config fails there, before READY); `pendant.core.supervise.supervise`
runs it. `pendant run` builds the same components through the same factories
(`pendant.app.one_process`), so a laptop and the device run the same code.
"""

from __future__ import annotations

import importlib
import logging
import os
from pathlib import Path
from typing import Protocol

from pendant.core import systemd as notify
from pendant.core.config import Config
from pendant.core.supervise import Component, supervise

log = logging.getLogger(__name__)

SERVICES: dict[str, str] = {
    "ears": "pendant.ears.service:component",
    "eyes": "pendant.eyes.service:component",
    "body": "pendant.body.service:component",
    "link": "pendant.link.service:component",
    "pairing": "pendant.pairing.service:component",
}
"""Each service's factory, `(config, config_path) -> Component`, as "module:function"."""


class Factory(Protocol):
    """Builds a component from the config (and its file, for components that watch it)."""

    def __call__(self, config: Config, config_path: Path | None, /) -> Component: ...


def load(name: str) -> Factory:
    """Service `name`'s factory, its module imported now (and only now)."""
    module, _, function = SERVICES[name].partition(":")
    factory: Factory = getattr(importlib.import_module(module), function)
    return factory


async def serve(name: str, config: Config, config_path: Path | None) -> None:
    """`pendant service NAME`: the component built with its service's credentials, and run
    under systemd (READY, the watchdog, SIGTERM) until it ends."""
    # Before the import: the ears' alone takes seconds on a Zero 2 W, and systemd is to know
    # that the start is making progress.
    notify.starting(f"loading {name}")
    factory = load(name)
    await supervise(factory(as_service(config, name), config_path))


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
