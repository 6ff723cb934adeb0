"""The body under the provisioned ACL (issue 18): the ears' `ask` makes the LED say "asking",
the link's `cmd/buzz` with that question's outcome ends it, not an older question's. A real
mosquitto runs the config and ACL that `pendant.setup.provision` renders; each side logs in as
its own service user; the body's pins are gpiozero's mock pins. Every wait has a timeout.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from gpiozero.pins.mock import MockFactory, MockPWMPin

from pendant.body.service import BodyService
from pendant.core import bus
from pendant.core.config import BodyConfig, BusConfig, Config, EscalateConfig
from pendant.core.events import Ask, Command, LinkState
from pendant.core.supervise import Readiness
from pendant.setup.provision import Provisioned
from tests.support.mosquitto_support import DEVICE, _provision_for_test, needs_mosquitto, running
from tests.support.tasks import WAIT_S, until
from tests.support.tasks import running as tasks_running

pytestmark = needs_mosquitto


def login(prov: Provisioned, user: str) -> BusConfig:
    return BusConfig(
        socket=str(prov.socket), username=user, password_file=str(prov.password_file(user))
    )


def test_the_ears_ask_shows_asking_until_the_links_buzz(tmp_path: Path) -> None:
    prov = _provision_for_test(tmp_path / "p")
    # A wait far longer than the test: "asking" can only end by the link's buzz.
    escalate = EscalateConfig(enabled=True, url="http://127.0.0.1:9", timeout_s=60)
    cfg = Config(
        device_id=DEVICE,
        bus=login(prov, "body"),
        body=BodyConfig(pin_factory="mock", battery="simulated"),
        escalate=escalate,
    )

    async def scenario() -> list[str]:
        body = BodyService(cfg, factory=MockFactory(pin_class=MockPWMPin))
        body.indicators.ready_s = 0.0  # up at once: the idle LED is dark
        ready = Readiness()
        async with (
            tasks_running(body.run(ready)),
            bus.bus_client(login(prov, "ears"), "test-ears") as ears,
            bus.bus_client(login(prov, "link"), "test-link") as link,
        ):
            await asyncio.wait_for(ready.wait(), WAIT_S)
            await bus.publish(link, LinkState(device_id=DEVICE, state="connected"))
            await until(lambda: body.led_pattern == "off", "the idle LED")
            older = Ask(device_id=DEVICE, text="how long do I boil an egg")
            latest = Ask(device_id=DEVICE, text="how long do I boil a duck egg")
            await bus.publish(ears, older)
            await bus.publish(ears, latest)
            await until(lambda: body.led_pattern == "asking", "the LED says asking")
            # The older question's late outcome: buzzed, but the latest is still out.
            late = Command(
                device_id=DEVICE, name="buzz", pattern="understood", session_id=older.session_id
            )
            await bus.publish(link, late)
            await until(lambda: body.haptic.history[-1:] == ["understood"], "the late buzz")
            await until(lambda: body.led_pattern == "asking", "still asking after the answer")
            buzz = Command(
                device_id=DEVICE,
                name="buzz",
                pattern="not_understood",
                session_id=latest.session_id,
            )
            await bus.publish(link, buzz)
            await until(lambda: body.haptic.history[-1:] == ["not_understood"], "the buzz")
            await until(lambda: body.led_pattern == "off", "the wait over, the LED dark")
            return list(body.haptic.history)

    with running(prov):
        history = asyncio.run(asyncio.wait_for(scenario(), 2 * WAIT_S))
    assert history == ["understood", "not_understood"]
