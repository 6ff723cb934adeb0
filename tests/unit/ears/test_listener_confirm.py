"""An action that waits for the wearer's tap runs in a task nobody awaits: what it ends with
must still be said."""

from __future__ import annotations

import asyncio
import logging

import numpy as np
import pytest

from pendant.core.config import Config
from pendant.core.errors import BusError
from pendant.core.events import Activity, Button, Event, Intent
from pendant.ears.understand.grammar import Grammar
from pendant.ears.vad import Utterance
from tests.support.ears_support import Heard, bare_ears


def test_a_tapped_action_the_bus_refuses_is_logged_and_the_led_settles(
    config: Config, grammar: Grammar, caplog: pytest.LogCaptureFixture
) -> None:
    ears, published = bare_ears(config, grammar, Heard("unlock the front door"))

    async def publish(event: Event) -> None:
        if isinstance(event, Intent):
            raise BusError("bus at /run/mosquitto/pendant.sock: gone")
        published.append(event)

    ears.publish = publish  # type: ignore[method-assign]

    async def scenario() -> None:
        await ears.handle(Utterance(np.zeros(16_000, np.int16), 0, 1000), pressed=False)
        for _ in range(100):  # a lock waits for the tap: until the LED asks for it
            if any(isinstance(e, Activity) and e.state == "confirm" for e in published):
                break
            await asyncio.sleep(0.01)
        await ears.on_button(Button(device_id=config.device_id, action="tap"))
        for _ in range(100):
            if "waiting action" in caplog.text:
                break
            await asyncio.sleep(0.01)

    with caplog.at_level(logging.ERROR):
        asyncio.run(scenario())
    assert "waiting action: bus at /run/mosquitto/pendant.sock: gone" in caplog.text
    states = [e.state for e in published if isinstance(e, Activity)]
    assert states[-2:] == ["confirm", "capturing"]
