"""Conversation mode: an action on a lock, a cover or a valve waits for the wearer's tap.

The whole pendant on a real recording, real mosquitto; the button is the body's events on the
bus, as the body publishes them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path
from typing import Any, Literal

import aiomqtt
import pytest

from pendant.app.local_broker import LocalBroker
from pendant.app.one_process import Pendant
from pendant.app.replay import simulated
from pendant.core import bus
from pendant.core.config import Config, DeviceKind
from pendant.core.events import Activity, Button
from pendant.ears.audio.wav import WavSource
from pendant.ears.confirm import needs_confirming
from pendant.ears.understand.nlu import IntentParser
from tests.conftest import demo_config, speech_files

TIMEOUT_S = 60
Gesture = Literal["none", "tap", "late_tap", "mute_hold", "hold_to_talk"]


def with_listen(config: Config, **update: Any) -> Config:
    return config.model_copy(update={"listen": config.listen.model_copy(update=update)})


@pytest.mark.parametrize(
    ("sentence", "confirm"),
    [
        ("lock the front door", True),
        ("unlock the front door", True),
        ("open the garage door", True),
        ("set the office blinds to 50 percent", True),
        ("close the curtains", True),
        ("is the front door locked", False),
        ("is the garage door open", False),
        ("turn on the kitchen lights", False),
        ("set a timer for five minutes", False),
    ],
)
def test_actions_on_locks_and_covers_wait_for_a_tap(sentence: str, confirm: bool) -> None:
    config = demo_config()
    match = IntentParser(config).parse(sentence)
    assert match is not None, sentence
    assert needs_confirming(match, config) is confirm
    # The wearer who wants no tap for locks lists only the kinds that still need one.
    no_locks = with_listen(config, confirm_kinds=[DeviceKind.cover])
    if "front door" in sentence and confirm:
        assert not needs_confirming(match, no_locks)
    assert not needs_confirming(match, with_listen(config, confirm_kinds=[]))


async def converse(
    brokers: tuple[LocalBroker, LocalBroker], wav: Path, gesture: Gesture, confirm_s: float = 8.0
) -> tuple[list[str], list[str]]:
    """Play `wav` in real time in conversation mode with `gesture` on the button; the intents
    the home broker then carries, and the mic's activity states on the bus, in order."""
    bus_broker, home = brokers
    config = with_listen(demo_config(), confirm_s=confirm_s)
    cfg = simulated(config, bus_broker, home, realtime=True, gap_ms=4000)
    source = WavSource(cfg.audio, [wav])
    pendant = Pendant(cfg, source=source)
    intents: list[str] = []
    activity: list[str] = []
    async with (
        aiomqtt.Client(
            "127.0.0.1", home.port or 0, username="viewer", password=home.password("viewer")
        ) as viewer,
        bus.bus_client(cfg.bus, "test-body") as body,
    ):
        await viewer.subscribe("pendant/+/intent/#", qos=1)
        await body.subscribe(bus.topic("activity/+"), qos=1)

        async def collect() -> None:
            async for m in viewer.messages:
                intents.append(json.loads(bytes(m.payload))["name"])  # type: ignore[arg-type]

        async def watch() -> None:
            async for event in bus.events(body):
                if isinstance(event, Activity) and event.sensor == "mic":
                    activity.append(event.state)

        async def until_asked() -> None:
            while "confirm" not in activity:
                await asyncio.sleep(0.02)

        async def press(tap: bool) -> None:
            # As the body reports a short press (a tap), or the hold that became the mute
            # gesture: no talk, and a "yes" only for the tap.
            actions = ["press", "cancel", "tap"] if tap else ["press", "cancel"]
            for action in actions:
                await bus.publish(body, Button(device_id=cfg.device_id, action=action))  # type: ignore[arg-type]

        async def act() -> None:
            if gesture == "hold_to_talk":
                while source.started_ms is None:
                    await asyncio.sleep(0.01)
                await bus.publish(body, Button(device_id=cfg.device_id, action="press"))
                await asyncio.sleep(source.spans_s[-1][1] + 0.3)
                await bus.publish(body, Button(device_id=cfg.device_id, action="release"))
            elif gesture == "tap":
                await until_asked()
                await press(tap=True)
            elif gesture == "late_tap":
                await until_asked()
                await asyncio.sleep(confirm_s + 0.5)
                await press(tap=True)
            elif gesture == "mute_hold":
                await until_asked()
                await press(tap=False)

        tasks = [asyncio.create_task(t()) for t in (collect, watch, act)]
        await pendant.run()
        while len(intents) < pendant.link.published["intent"]:
            await asyncio.sleep(0.02)
        for t in tasks:
            t.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await t
    return intents, activity


def lock_recording() -> Path:
    return next(f for f in speech_files("main") if f.stem == "lock the Front Door")


@pytest.mark.parametrize(
    ("gesture", "expected"),
    [
        ("none", []),
        ("tap", ["HassTurnOn"]),
        ("late_tap", []),
        ("mute_hold", []),
        ("hold_to_talk", ["HassTurnOn"]),
    ],
)
def test_a_lock_heard_in_conversation_goes_out_only_after_a_tap(
    brokers: tuple[LocalBroker, LocalBroker], gesture: Gesture, expected: list[str]
) -> None:
    confirm_s = 1.0 if gesture == "late_tap" else 8.0
    run = converse(brokers, lock_recording(), gesture, confirm_s)
    intents, activity = asyncio.run(asyncio.wait_for(run, TIMEOUT_S))
    assert intents == expected
    if gesture == "hold_to_talk":
        assert "confirm" not in activity  # held: it is the wearer's, no question asked
    else:
        # The LED and the motor asked, and the LED went back to listening afterwards.
        assert "confirm" in activity
        assert activity[-1] != "confirm"
