"""The link on in-process brokers, as the link's tests set it up (test_link_outage,
test_link_state, test_discovery): its config, and how long a test waits on it."""

from __future__ import annotations

from pathlib import Path

from pendant.app.local_broker import LocalBroker
from pendant.app.replay import simulated
from pendant.core.config import Config

DEVICE = "pendant-test"
WAIT_S = 30.0


def link_config(bus_broker: LocalBroker, home: LocalBroker, tmp: Path) -> Config:
    cfg = simulated(Config(device_id=DEVICE), bus_broker, home)
    outbox = str(tmp / "outbox.sqlite")
    # The streams here are faster than anyone speaks: what is tested is delivery, not the
    # gate's rate (tests/unit/link/test_gate_content.py).
    link = cfg.link.model_copy(update={"outbox_path": outbox, "gate_burst": 1000})
    return cfg.model_copy(update={"link": link})
