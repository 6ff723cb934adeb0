""" "In here" on a wearable: Home Assistant tells the pendant its room on `cmd/area`.

A running pendant (ears and link on real brokers, a quiet simulated mic) and a stand-in for
Home Assistant's room presence publishing retained `{"area": ...}` on the outside broker. An
"in here" sentence is then heard (the recogniser is scripted: which words were heard is not
what is tested here) and the intent that reaches the outside broker, natively and in the
Hermes mirror, carries the area: the commanded one, else `home.default_area`. A bad area
command is refused on `.../error` and changes nothing; the ears know the area again after a
restart, from the bus alone.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import aiomqtt
import numpy as np
import yaml

from pendant.app.local_broker import LocalBroker
from pendant.app.one_process import Pendant
from pendant.app.replay import simulated
from pendant.core.config import Config
from pendant.core.events import Intent
from pendant.ears.audio import RATE_HZ
from pendant.ears.audio.wav import WavSource
from pendant.ears.listener import Ears
from pendant.ears.service import EarsService
from pendant.ears.vad import Utterance
from pendant.link.service import Link
from tests.conftest import REPO, demo_config
from tests.support.ears_support import Heard, silent_wav
from tests.support.tasks import until

TIMEOUT_S = 120
HERE = "turn on the lights in here"


def _config(bus_broker: LocalBroker, home: LocalBroker) -> Config:
    base = demo_config()
    with_default = base.home.model_copy(update={"default_area": "Office"})
    cfg = simulated(base, bus_broker, home, realtime=True, gap_ms=0)
    return cfg.model_copy(update={"home": with_default})


def _scripted(service: EarsService) -> None:
    service.understanding.recognizer.close()
    service.understanding.recognizer = Heard(HERE)


async def _hear_here(ears: Ears) -> Intent | None:
    """The wearer says "turn on the lights in here"."""
    audio = np.full(RATE_HZ, 1000, np.int16)
    # Ended now, on the wall clock, as a microphone's chunks say (the gate refuses a time
    # more than a day from the link's).
    return await ears.handle(Utterance(audio, time.time_ns() // 1_000_000, 1000), pressed=False)


def _slots(body: dict[str, Any]) -> dict[str, Any]:
    return {s["name"]: s["value"] for s in body["slots"]}


def test_home_assistant_sets_the_area_that_in_here_means(
    brokers: tuple[LocalBroker, LocalBroker], tmp_path: Path, state_dir: Path
) -> None:
    bus_broker, home = brokers
    cfg = _config(bus_broker, home)
    pendant = Pendant(
        cfg, source=WavSource(cfg.audio, [silent_wav(tmp_path, 120)]), parts=("ears", "link")
    )
    _scripted(pendant.ears)
    base = pendant.link.base_topic
    native: list[dict[str, Any]] = []
    mirrored: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []

    async def scenario() -> None:
        async with aiomqtt.Client(
            "127.0.0.1", home.port or 0, username="viewer", password=home.password("viewer")
        ) as ha:

            async def set_area(payload: bytes) -> None:
                # As a Home Assistant automation does it: retained, so a pendant that
                # (re)connects later learns the room at once.
                await ha.publish(f"{base}/cmd/area", payload, qos=1, retain=True)

            async def collect() -> None:
                async for m in ha.messages:
                    body = json.loads(bytes(m.payload))  # type: ignore[arg-type]
                    topic = str(m.topic)
                    if topic.startswith("hermes/"):
                        mirrored.append(body)
                    elif topic.endswith("/error"):
                        errors.append(body)
                    else:
                        native.append(body)

            async def area_heard() -> Any:
                """What area an "in here" intent carries, as Home Assistant receives it."""
                ears = pendant.ears.ears
                assert ears is not None
                before = len(native), len(mirrored)
                assert await _hear_here(ears) is not None
                await until(
                    lambda: len(native) > before[0] and len(mirrored) > before[1],
                    "len(native) > before[0] and len(mirrored) > before[1]",
                )
                body, hermes = native[-1], mirrored[-1]
                assert body["name"] == "HassTurnOn" and _slots(body)["area_context"] == "here"
                hermes_areas = [
                    s["value"]["value"] for s in hermes["slots"] if s["entity"] == "area"
                ]
                assert hermes_areas == ([_slots(body)["area"]] if "area" in _slots(body) else [])
                return _slots(body).get("area")

            # Set before the pendant starts: it arrives retained when the link subscribes.
            await set_area(b'{"area": "kitchen"}')
            await ha.subscribe(f"{base}/intent/#", qos=1)
            await ha.subscribe("hermes/intent/#", qos=1)
            await ha.subscribe(f"{base}/error", qos=1)
            spy = asyncio.create_task(collect())
            run = asyncio.create_task(pendant.run())
            try:
                await until(lambda: pendant.ears.ears is not None, "pendant.ears.ears is not None")
                ears = pendant.ears.ears
                assert ears is not None
                await until(
                    lambda: ears.area == "Kitchen", "ears.area == 'Kitchen'"
                )  # the config's spelling
                assert await area_heard() == "Kitchen"

                # Cleared: back to home.default_area.
                await set_area(b'{"area": null}')
                await until(lambda: ears.area is None, "ears.area is None")
                assert await area_heard() == "Office"

                # Set while it runs, in any case.
                await set_area(b'{"area": "KITCHEN"}')
                await until(lambda: ears.area == "Kitchen", "ears.area == 'Kitchen'")
                assert await area_heard() == "Kitchen"

                # Refused by the link, one line each; the ears never hear of them.
                bad = [
                    b'{"area": "Attic"}',
                    b'{"area": 5}',
                    b"Kitchen",
                    b'{"room": "Office"}',
                    json.dumps({"area": "Office", "pad": "x" * 1100}).encode(),
                ]
                for payload in bad:
                    await set_area(payload)
                await until(lambda: len(errors) >= len(bad), "len(errors) >= len(bad)")
                assert all(e["command"] == "area" for e in errors)
                assert all("\n" not in e["reason"] for e in errors)
                reasons = [e["reason"] for e in errors]
                assert reasons[0] == "unknown area 'Attic': not in home.areas"
                assert reasons[1] == "'area' must be a string or null"
                assert reasons[2] == "payload is not JSON"
                assert reasons[3] == "area takes no key 'room'"
                assert "over 1024" in reasons[4]
                assert ears.area == "Kitchen"
                assert await area_heard() == "Kitchen"

                # Deleting the retained message (an empty one) clears the area too.
                await set_area(b"")
                await until(lambda: ears.area is None, "ears.area is None")
                assert await area_heard() == "Office"

                await set_area(b'{"area": "Kitchen"}')
                await until(lambda: ears.area == "Kitchen", "ears.area == 'Kitchen'")
            finally:
                run.cancel()
                spy.cancel()
                await asyncio.gather(run, spy, return_exceptions=True)

        # The ears restart on their own (no link, so nothing replays the outside broker's
        # message): the area was kept retained on the bus.
        again = EarsService(cfg, source=WavSource(cfg.audio, [silent_wav(tmp_path, 120)]))
        _scripted(again)
        run = asyncio.create_task(again.run())
        try:
            await until(
                lambda: again.ears is not None and again.ears.area == "Kitchen",
                "again.ears is not None and again.ears.area == 'Kitchen'",
            )
            assert again.ears is not None
            intent = await _hear_here(again.ears)
            assert intent is not None
            assert {s.name: s.value for s in intent.slots}["area"] == "Kitchen"
        finally:
            run.cancel()
            await asyncio.gather(run, return_exceptions=True)

    asyncio.run(asyncio.wait_for(scenario(), TIMEOUT_S))


def test_the_area_is_the_one_command_taken_retained(tmp_path: Path) -> None:
    # A retained `capture` would fire on every reconnect; a retained area is the state.
    cfg = demo_config()
    link_config = cfg.link.model_copy(update={"outbox_path": str(tmp_path / "outbox.sqlite")})
    link = Link(cfg.model_copy(update={"link": link_config}))
    try:
        link.on_command(f"{link.base_topic}/cmd/capture", b"{}", retain=True)
        link.on_command(f"{link.base_topic}/cmd/area", b'{"area": "office"}', retain=True)
        assert link.commands == {"retained": 1, "forwarded": 1}
    finally:
        link.outbox.close()


def test_the_readme_automation_publishes_a_retained_area() -> None:
    """docs/home-assistant-area.yaml, shown in the README: a well-formed automation that
    publishes retained to the command topic."""
    text = (REPO / "docs" / "home-assistant-area.yaml").read_text()
    assert f"```yaml\n{text}```" in (REPO / "README.md").read_text()
    automation = yaml.safe_load(text)
    assert {"alias", "triggers", "actions"} <= automation.keys()
    (publish,) = automation["actions"]
    assert publish["action"] == "mqtt.publish"
    data = publish["data"]
    assert data["topic"] == "pendant/pendant/cmd/area"  # the default device_id
    assert data["retain"] is True and data["qos"] == 1
    assert '"area"' in data["payload"] and "none" in data["payload"]  # sets, or clears
