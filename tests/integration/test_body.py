"""The body on a real mosquitto, its pins driven through gpiozero's MockFactory: gestures in,
events out; bus events in, LED patterns and buzzes out.

Holds are real (the body times them from the edges), but short: `long_hold_s` is 0.6 s
here. Nothing asserts how fast anything happened; every wait has a timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import aiomqtt
import pytest
from gpiozero.pins.mock import MockFactory, MockPWMPin

from pendant.app.local_broker import LocalBroker
from pendant.body import indicators
from pendant.body.battery.simulated import SimulatedGauge
from pendant.body.service import BodyService
from pendant.core import bus
from pendant.core.config import BodyConfig, BusConfig, Config, EscalateConfig
from pendant.core.errors import PendantError
from pendant.core.events import (
    Activity,
    Ask,
    Camera,
    Command,
    Error,
    Event,
    Intent,
    LinkState,
    Mic,
    NotRecognized,
    PairingStatus,
)
from pendant.core.supervise import Readiness

TIMEOUT_S = 20.0
DEV = "pendant-test"
HOLD = {"double_press_s": 0.3, "long_hold_s": 1.2, "pairing_hold_s": 2.1}
# Held well past a threshold (or released well inside one), whatever the machine's load.
MARGIN_S = 0.3
# Held longer than a tap, shorter than the mute gesture: talk.
TALK_S = (HOLD["double_press_s"] + HOLD["long_hold_s"]) / 2


@pytest.fixture
def broker() -> Iterator[LocalBroker]:
    with LocalBroker(users=("body", "watcher")) as b:
        yield b


def bus_config(broker: LocalBroker, user: str) -> BusConfig:
    return BusConfig(
        socket=str(broker.socket_path),
        username=user,
        password_file=str(broker.password_file(user)),
    )


def body_config(broker: LocalBroker, **body: Any) -> Config:
    settings = {"pin_factory": "mock", "battery": "simulated", "battery_poll_s": 0.05, **HOLD}
    return Config(
        device_id=DEV, bus=bus_config(broker, "body"), body=BodyConfig(**{**settings, **body})
    )


@dataclass
class Watcher:
    """Everything on the bus, in order, as (topic, event dict, retained)."""

    client: aiomqtt.Client
    seen: list[tuple[str, dict[str, Any], bool]] = field(default_factory=list)

    async def collect(self) -> None:
        async for m in self.client.messages:
            payload = json.loads(bytes(m.payload))  # type: ignore[arg-type]
            self.seen.append((str(m.topic), payload, bool(m.retain)))

    async def next(
        self, start: int, match: Callable[[str, dict[str, Any]], bool]
    ) -> tuple[int, dict[str, Any]]:
        """The first event at or after index `start` that matches; its index and payload."""

        async def scan() -> tuple[int, dict[str, Any]]:
            i = start
            while True:
                while i < len(self.seen):
                    topic, event, _ = self.seen[i]
                    if match(topic, event):
                        return i, event
                    i += 1
                await asyncio.sleep(0.01)

        return await asyncio.wait_for(scan(), TIMEOUT_S)

    async def send(self, event: Event, topic: str | None = None) -> None:
        topic = topic or bus.topic_of(event)
        await self.client.publish(topic, event.to_json(), qos=1, timeout=TIMEOUT_S)

    def gestures_since(self, start: int) -> list[str]:
        """Button actions and commands, the body's gesture output, in order."""
        out = []
        for _topic, event, _ in self.seen[start:]:
            if event["type"] == "button":
                out.append(event["action"])
            elif event["type"] == "command":
                args = {k: event[k] for k in ("mic", "camera") if k in event}
                out.append(event["name"] + (f"{args}" if args else ""))
        return out


def is_type(kind: str, **fields: Any) -> Callable[[str, dict[str, Any]], bool]:
    def match(topic: str, event: dict[str, Any]) -> bool:
        return event.get("type") == kind and all(event.get(k) == v for k, v in fields.items())

    return match


async def eventually(condition: Callable[[], bool], what: str) -> None:
    async def wait() -> None:
        while not condition():
            await asyncio.sleep(0.01)

    try:
        await asyncio.wait_for(wait(), TIMEOUT_S)
    except TimeoutError:
        raise AssertionError(f"not within {TIMEOUT_S} s: {what}") from None


@contextlib.asynccontextmanager
async def running(
    service: BodyService, broker: LocalBroker, link_up: bool = True
) -> AsyncIterator[Watcher]:
    """The service on the bus, with a watcher of it. `link_up`: as the link would, say that
    the home broker is reached (and skip the "ready" breath), so the idle LED is dark, as on
    a pendant that is up; otherwise the LED says "setting up" until the test says more."""
    async with bus.bus_client(bus_config(broker, "watcher"), "test-watcher") as client:
        await client.subscribe(f"{bus.PREFIX}/#", qos=1)
        watcher = Watcher(client)
        collector = asyncio.create_task(watcher.collect())
        if link_up:
            service.indicators.ready_s = 0.0
        ready = Readiness()
        task = asyncio.create_task(service.run(ready))
        try:
            await asyncio.wait_for(ready.wait(), TIMEOUT_S)
            if link_up:
                await watcher.send(LinkState(device_id=DEV, state="connected"))
                await eventually(lambda: service.indicators.link == "connected", "link up")
            yield watcher
        finally:
            task.cancel()
            collector.cancel()
            results = await asyncio.gather(task, collector, return_exceptions=True)
        failures = [r for r in results if not isinstance(r, asyncio.CancelledError)]
        assert not failures, failures


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, TIMEOUT_S * 4))


def mock_factory() -> MockFactory:
    return MockFactory(pin_class=MockPWMPin)


class Pins:
    """The service's pins, by name, as a test drives and reads them."""

    def __init__(self, service: BodyService) -> None:
        self.factory = service.factory
        self.gpio = {name: spec.gpio for name, spec in service.pins.items()}

    def __getitem__(self, name: str) -> MockPWMPin:
        return self.factory.pin(self.gpio[name])

    async def tap(self) -> None:
        self["button"].drive_low()
        self["button"].drive_high()

    async def hold(self, seconds: float) -> None:
        self["button"].drive_low()
        await asyncio.sleep(seconds)
        self["button"].drive_high()


# --- where the pendant stands (the link's state) ------------------------------------------


def test_the_led_says_setting_up_no_wifi_no_broker_then_ready(broker: LocalBroker) -> None:
    """From the bus only: the body starts in "setting up", and follows the link's retained
    `link_state`; the muted glow and a sensor at work still win over it."""

    async def scenario() -> None:
        service = BodyService(body_config(broker), factory=mock_factory())
        async with running(service, broker, link_up=False) as w:
            # Nothing from the link yet.
            await eventually(lambda: service.led_pattern == "setting_up", "LED: setting up")

            async def link(state: str, shows: str) -> None:
                await w.send(LinkState(device_id=DEV, state=state))  # type: ignore[arg-type]
                await eventually(lambda: service.led_pattern == shows, f"LED: {shows}")

            await link("connecting", "setting_up")
            await link("no_network", "no_network")
            await w.send(Mic(device_id=DEV, state="muted", muted=True))
            await eventually(lambda: service.led_pattern == "muted", "the muted glow wins")
            await link("no_broker", "muted")
            await w.send(Mic(device_id=DEV, state="ready"))
            await eventually(lambda: service.led_pattern == "no_broker", "LED: no broker")
            await w.send(Activity(device_id=DEV, sensor="mic", state="capturing"))
            await eventually(lambda: service.led_pattern == "listening", "the mic open wins")
            await w.send(Activity(device_id=DEV, sensor="mic", state="idle"))
            await eventually(lambda: service.led_pattern == "no_broker", "LED: no broker")
            # Connected: one breath, then dark (the body's own timer ends it).
            await link("connected", "ready")
            await eventually(lambda: service.led_pattern == "off", "LED: idle after ready")

    run(scenario())


# --- gestures ---------------------------------------------------------------------------------


def test_press_and_hold_is_talk(broker: LocalBroker) -> None:
    async def scenario() -> None:
        service = BodyService(body_config(broker), factory=mock_factory())
        pins = Pins(service)
        async with running(service, broker) as w:
            start = len(w.seen)
            pins["button"].drive_low()
            await w.next(start, is_type("button", action="press"))
            await asyncio.sleep(TALK_S)
            pins["button"].drive_high()
            await w.next(start, is_type("button", action="release"))
            assert w.gestures_since(start) == ["press", "release"]
            assert service.haptic.history == ["short"]

            # On the Pi, edges arrive on lgpio's thread, not the loop's: the same again so
            # (after a pause: two quick taps would be a double press).
            await asyncio.sleep(HOLD["double_press_s"] + MARGIN_S)
            start = len(w.seen)
            await asyncio.wait_for(asyncio.to_thread(pins["button"].drive_low), TIMEOUT_S)
            await w.next(start, is_type("button", action="press"))
            await asyncio.sleep(TALK_S)
            await asyncio.wait_for(asyncio.to_thread(pins["button"].drive_high), TIMEOUT_S)
            await w.next(start, is_type("button", action="release"))

            # A tap is too short to be talk: the ears are told to drop it.
            await asyncio.sleep(HOLD["double_press_s"] + MARGIN_S)
            start = len(w.seen)
            await pins.tap()
            await w.next(start, is_type("button", action="cancel"))

    run(scenario())


def test_double_press_is_capture(broker: LocalBroker) -> None:
    async def scenario() -> None:
        service = BodyService(body_config(broker), factory=mock_factory())
        pins = Pins(service)
        async with running(service, broker) as w:
            start = len(w.seen)
            await pins.tap()
            await pins.tap()
            i, _ = await w.next(start, lambda t, e: t == bus.topic("cmd/capture"))
            # The next gesture is talk again; nothing came between.
            await asyncio.sleep(HOLD["double_press_s"] + MARGIN_S)
            pins["button"].drive_low()
            await w.next(i, is_type("button", action="press"))
            await asyncio.sleep(TALK_S)
            pins["button"].drive_high()
            await w.next(i, is_type("button", action="release"))
            assert w.gestures_since(start) == ["press", "cancel", "capture", "press", "release"]

    run(scenario())


def test_long_hold_toggles_the_mute_from_the_state_the_bus_reports(broker: LocalBroker) -> None:
    async def scenario() -> None:
        service = BodyService(body_config(broker), factory=mock_factory())
        pins = Pins(service)
        async with running(service, broker) as w:
            start = len(w.seen)
            await pins.hold(HOLD["long_hold_s"] + MARGIN_S)
            await w.next(start, is_type("command", name="mute"))
            # The talk ended (at the buzz) before the mute went out: no dangling press.
            muting = "mute{'mic': True, 'camera': True}"
            assert w.gestures_since(start) == ["press", "cancel", muting]
            assert service.haptic.history == ["short", "short", "short"]  # talk, armed, toggled

            # The ears say they muted: the LED says so, and the next long hold unmutes.
            await w.send(Mic(device_id=DEV, state="muted", muted=True))
            await eventually(lambda: service.led_pattern == "muted", "LED muted")
            start = len(w.seen)
            await pins.hold(HOLD["long_hold_s"] + MARGIN_S)
            _, cmd = await w.next(start, is_type("command", name="mute"))
            assert (cmd["mic"], cmd["camera"]) == (False, False)

            # A camera muted by the phone counts as muted too: the toggle unmutes both.
            await w.send(Mic(device_id=DEV, state="ready", muted=False))
            await w.send(Camera(device_id=DEV, muted=True))
            await eventually(lambda: service.indicators.camera_muted, "camera muted seen")
            start = len(w.seen)
            await pins.hold(HOLD["long_hold_s"] + MARGIN_S)
            _, cmd = await w.next(start, is_type("command", name="mute"))
            assert (cmd["mic"], cmd["camera"]) == (False, False)

    run(scenario())


def test_very_long_hold_asks_for_pairing_and_leaves_the_mute_alone(broker: LocalBroker) -> None:
    async def scenario() -> None:
        asked: list[bool] = []
        service = BodyService(
            body_config(broker), factory=mock_factory(), on_pairing=lambda: asked.append(True)
        )
        pins = Pins(service)
        async with running(service, broker) as w:
            start = len(w.seen)
            await pins.hold(HOLD["pairing_hold_s"] + MARGIN_S)
            await eventually(lambda: asked == [True], "the pairing hook called")
            # The request on the bus; the LED waits for the pairing service's answer.
            await w.next(start, is_type("pairing_window", open=True))
            assert service.led_pattern == "off"
            await w.send(PairingStatus(device_id=DEV, open=True, user="phone-abc123"))
            await eventually(lambda: service.led_pattern == "pairing", "LED shows the window")
            # A marker gesture: everything the hold sent is on the bus before its press.
            await asyncio.sleep(HOLD["double_press_s"] + MARGIN_S)
            await pins.hold(0)
            i, _ = await w.next(start, is_type("button", action="press"))
            await w.next(i + 1, is_type("button", action="cancel"))
            await w.next(i + 1, is_type("button", action="press"))
            assert w.gestures_since(start)[:3] == ["press", "cancel", "press"]
            assert "double" in service.haptic.history
            assert service.pairing_requests == 1
            # Held again while open: the wearer asks to close it.
            start = len(w.seen)
            await asyncio.sleep(HOLD["double_press_s"] + MARGIN_S)
            await pins.hold(HOLD["pairing_hold_s"] + MARGIN_S)
            await w.next(start, is_type("pairing_window", open=False))

    run(scenario())


def test_while_the_pairing_window_is_open_a_press_is_a_digit_never_a_yes(
    broker: LocalBroker,
) -> None:
    """A paired phone can make the ears wait for a tap at any moment (a voice to forget). While
    the wearer presses a new phone's code, that wait must not take the presses as a yes: they
    count, no tap goes out, and the LED shows the window. Once it closes, a tap answers again."""

    async def scenario() -> None:
        service = BodyService(body_config(broker), factory=mock_factory())
        pins = Pins(service)
        async with running(service, broker) as w:
            asks = PairingStatus(device_id=DEV, open=True, user="phone-abc123", asked=True)
            await w.send(asks)
            await w.send(Activity(device_id=DEV, sensor="mic", state="confirm"))
            # The window, with the winks of a sensor at work (the mic is open while it waits).
            await eventually(lambda: service.led_pattern == "pairing_listening", "LED: window")
            start = len(w.seen)
            await pins.tap()
            await w.next(start, is_type("pairing_confirm", presses=1))
            assert "tap" not in w.gestures_since(start)
            # The window closes: the same wait now shows, and a tap answers it.
            await w.send(PairingStatus(device_id=DEV, open=False))
            await eventually(lambda: service.led_pattern == "confirm", "LED asks for the action")
            start = len(w.seen)
            await pins.tap()
            await w.next(start, is_type("button", action="tap"))
            assert not any(e.get("type") == "pairing_confirm" for _, e, _ in w.seen[start:])

    run(scenario())


def test_while_the_pairing_window_is_open_presses_are_counted(broker: LocalBroker) -> None:
    """Issue 14: the wearer accepts a phone by pressing the code its screen shows. Three quick
    presses are one `pairing_confirm` with 3, after the pause that ends them: no capture (a
    double press), no tap. The body never learns a code (the status has none)."""

    async def scenario() -> None:
        service = BodyService(body_config(broker), factory=mock_factory())
        pins = Pins(service)
        async with running(service, broker) as w:
            asks = PairingStatus(device_id=DEV, open=True, user="phone-abc123", asked=True)
            await w.send(asks)
            await eventually(lambda: service.led_pattern == "pairing_asked", "LED: a phone asks")
            start = len(w.seen)
            for _ in range(3):
                await pins.tap()
                await asyncio.sleep(0.1)
            _, confirm = await w.next(start, is_type("pairing_confirm"))
            assert confirm["presses"] == 3
            assert w.gestures_since(start) == ["press", "cancel"] * 3
            # Closed: presses are taps and double presses again, and count nothing.
            await w.send(PairingStatus(device_id=DEV, open=False))
            await eventually(lambda: service.led_pattern == "off", "LED: the window closed")
            start = len(w.seen)
            await pins.tap()
            await pins.tap()
            await w.next(start, is_type("command", name="capture"))
            await asyncio.sleep(2 * MARGIN_S + 1.5)  # past a burst's end (count_gap_s)
            assert not any(e.get("type") == "pairing_confirm" for _, e, _ in w.seen[start:])

    run(scenario())


# --- the hardware mute switch -----------------------------------------------------------------


async def retained_hardware_mute(broker: LocalBroker) -> tuple[dict[str, Any], bool]:
    """What a service starting now learns about the switch."""
    async with bus.bus_client(bus_config(broker, "watcher"), "test-newcomer") as client:
        await client.subscribe(bus.topic("hardware_mute"), qos=1)
        async for m in client.messages:
            return json.loads(bytes(m.payload)), bool(m.retain)  # type: ignore[arg-type]
    raise AssertionError("unreachable")


def test_hardware_mute_is_retained_and_cannot_be_lifted_by_the_gesture(
    broker: LocalBroker,
) -> None:
    async def scenario() -> None:
        service = BodyService(body_config(broker), factory=mock_factory())
        pins = Pins(service)
        async with running(service, broker) as w:
            event, retained = await asyncio.wait_for(retained_hardware_mute(broker), TIMEOUT_S)
            assert (event["mic"], event["camera"], retained) == (False, False, True)

            start = len(w.seen)
            pins["mute_switch"].drive_low()  # closed: muted
            await w.next(start, is_type("hardware_mute", mic=True, camera=True))
            await eventually(lambda: service.led_pattern == "muted", "LED muted by the switch")
            event, retained = await asyncio.wait_for(retained_hardware_mute(broker), TIMEOUT_S)
            assert (event["mic"], retained) == (True, True)

            # Software unmuted under the switch: the gesture may still add a software mute.
            start = len(w.seen)
            await pins.hold(HOLD["long_hold_s"] + MARGIN_S)
            _, cmd = await w.next(start, is_type("command", name="mute"))
            assert cmd["mic"] is True

            # Software muted too: the gesture would unmute, and the switch forbids it.
            await w.send(Mic(device_id=DEV, state="muted", muted=True))
            await eventually(lambda: service.indicators.mic_muted, "status seen")
            start = len(w.seen)
            history = len(service.haptic.history)
            await pins.hold(HOLD["long_hold_s"] + MARGIN_S)
            await eventually(lambda: "long" in service.haptic.history[history:], "refusal buzz")
            await asyncio.sleep(HOLD["double_press_s"] + MARGIN_S)
            await pins.hold(0)  # marker
            i, _ = await w.next(start, is_type("button", action="press"))
            await w.next(i + 1, is_type("button", action="press"))
            assert "mute" not in " ".join(w.gestures_since(start))

            start = len(w.seen)
            pins["mute_switch"].drive_high()
            await w.next(start, is_type("hardware_mute", mic=False, camera=False))
            event, _ = await asyncio.wait_for(retained_hardware_mute(broker), TIMEOUT_S)
            assert event["mic"] is False

    run(scenario())


def test_a_switch_already_on_at_start_is_published_at_once(broker: LocalBroker) -> None:
    async def scenario() -> None:
        factory = mock_factory()
        service = BodyService(body_config(broker), factory=factory)
        Pins(service)["mute_switch"].drive_low()
        async with running(service, broker):
            event, retained = await asyncio.wait_for(retained_hardware_mute(broker), TIMEOUT_S)
            assert (event["mic"], event["camera"], retained) == (True, True, True)
            await eventually(lambda: service.led_pattern == "muted", "LED muted")

    run(scenario())


# --- the LED ----------------------------------------------------------------------------------


def test_led_follows_activity_mute_battery_and_identify(
    broker: LocalBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(indicators, "IDENTIFY_S", 1.0)
    monkeypatch.setattr(indicators, "ERROR_S", 0.5)

    async def scenario() -> None:
        service = BodyService(
            body_config(broker), factory=mock_factory(), gauge=SimulatedGauge(80, 0)
        )
        led = Pins(service)["led"]
        async with running(service, broker) as w:
            assert service.led_pattern == "off" and led.state == 0

            await w.send(Activity(device_id=DEV, sensor="mic", state="capturing"))
            await eventually(lambda: service.led_pattern == "listening", "listening")
            assert led.state == 1.0
            await w.send(Activity(device_id=DEV, sensor="mic", state="thinking"))
            await eventually(lambda: service.led_pattern == "thinking", "thinking")
            await w.send(Activity(device_id=DEV, sensor="mic", state="capturing"))
            await eventually(lambda: service.led_pattern == "listening", "listening again")

            await w.send(Mic(device_id=DEV, state="muted", muted=True))
            await eventually(lambda: service.led_pattern == "muted", "muted over listening")
            assert 0 < led.state < 0.5
            await w.send(Mic(device_id=DEV, state="ready"))
            await eventually(lambda: service.led_pattern == "listening", "unmuted")

            # An error flashes briefly, then the LED goes back to what it showed.
            await w.send(Error(device_id=DEV, reason="malformed command"))
            await eventually(lambda: service.led_pattern == "error", "error")
            await eventually(lambda: service.led_pattern == "listening", "error over")

            assert isinstance(service.gauge, SimulatedGauge)
            service.gauge.set_level(9)
            await w.next(0, is_type("battery", pct=9, low=True))
            await eventually(lambda: service.led_pattern == "low_battery", "low battery")
            service.gauge.set_charging(True)
            await w.next(0, is_type("battery", pct=9, low=True, charging=True))
            await eventually(lambda: service.led_pattern == "listening", "charging")

            await w.send(Command(device_id=DEV, name="identify"), bus.topic("cmd/identify"))
            await eventually(lambda: service.led_pattern == "identify", "identify")
            await eventually(lambda: {0.0, 1.0} <= {s.state for s in led.states}, "blinking")
            await eventually(lambda: service.led_pattern == "listening", "identify over")

            await w.send(Activity(device_id=DEV, sensor="mic", state="idle"))
            await eventually(lambda: service.led_pattern == "off", "off")
            assert led.state == 0
        assert led.state == 0  # stopped: dark

    run(scenario())


# --- answers to the wearer ---------------------------------------------------------------------


def buzzed(service: BodyService, *kinds: str) -> Callable[[], bool]:
    """The last buzzes the body gave were `kinds`."""
    return lambda: service.haptic.history[-len(kinds) :] == list(kinds)


def test_the_body_answers_what_the_ears_made_of_the_words(broker: LocalBroker) -> None:
    """Issue 15: an intent went out (understood), held talk matched nothing (not understood),
    an action waits for a tap (confirm): each its own buzz, and the LED's answer. The body
    learns them from the bus, from the ears' topics."""

    async def scenario() -> None:
        service = BodyService(body_config(broker), factory=mock_factory())
        motor = Pins(service)["haptic"]
        async with running(service, broker) as w:
            said = Intent(device_id=DEV, name="HassTurnOn", text="turn on the light", confidence=1)
            await w.send(said)
            await eventually(buzzed(service, "understood"), "the understood buzz")
            assert service.indicators.answer == "understood"
            assert 1.0 in {s.state for s in motor.states}  # the motor itself ran
            await w.send(NotRecognized(device_id=DEV, text="play some music"))
            await eventually(buzzed(service, "not_understood"), "the not understood buzz")
            assert service.indicators.answer == "not_understood"
            # What the camera read answers a request the wearer already felt (a double
            # press, "read this"): not buzzed again. Nothing comes between it and the next.
            read = Intent(device_id=DEV, name="ReadText", text="best before", confidence=1)
            await w.send(read, bus.EYES_INTENT_TOPIC)
            await w.send(Activity(device_id=DEV, sensor="mic", state="confirm"))
            await eventually(lambda: service.led_pattern == "confirm", "the LED asks for a tap")
            assert service.haptic.history == ["understood", "not_understood", "confirm"]

    run(scenario())


def test_buzz_and_say_commands_call_the_wearer_whatever_the_mute(broker: LocalBroker) -> None:
    """`cmd/buzz` plays the answer it names (attention when it names none); `cmd/say` buzzes
    for attention while the phones speak the words. A muted pendant still buzzes (feedback
    opens no sensor) and its LED keeps saying it is muted."""

    async def scenario() -> None:
        service = BodyService(body_config(broker), factory=mock_factory())
        async with running(service, broker) as w:
            buzz = bus.topic("cmd/buzz")
            await w.send(Command(device_id=DEV, name="buzz", pattern="not_understood"), buzz)
            await eventually(buzzed(service, "not_understood"), "the buzz asked for")
            await w.send(Command(device_id=DEV, name="buzz", pattern="understood"), buzz)
            await eventually(buzzed(service, "not_understood", "understood"), "another")
            await w.send(Command(device_id=DEV, name="buzz"), buzz)
            await eventually(buzzed(service, "understood", "attention"), "attention by default")

            await w.send(Mic(device_id=DEV, state="muted", muted=True))
            await eventually(lambda: service.led_pattern == "muted", "muted")
            say = Command(device_id=DEV, name="say", text="dinner is ready")
            await w.send(say, bus.topic("cmd/say"))
            await eventually(buzzed(service, "attention", "attention"), "the say's buzz")
            assert service.indicators.answer == "attention"
            assert service.led_pattern == "muted"
            assert service.indicators.mic_muted  # and the mute stands
            assert len(service.haptic.history) == 4

    run(scenario())


# --- asking a bigger model (issue 18) ----------------------------------------------------------


def escalating(config: Config, enabled: bool = True) -> Config:
    """`config` with escalate on (or off), and a short wait for the answer: "asking" without
    the link's buzz then lasts 0.5 + ASKING_GRACE_S s."""
    escalate = EscalateConfig(enabled=enabled, url="http://127.0.0.1:9", timeout_s=0.5)
    return config.model_copy(update={"escalate": escalate})


def test_the_led_says_asking_until_the_links_buzz_or_the_wait_is_over(
    broker: LocalBroker,
) -> None:
    """The ears' `ask`: the LED says "asking" until the link's `cmd/buzz` with the outcome
    (whose answer then shows once), or, with no buzz, until the link's wait and a little
    more are over; the mute glow hides it."""

    async def scenario() -> None:
        service = BodyService(escalating(body_config(broker)), factory=mock_factory())
        led = Pins(service)["led"]
        question = "what is a good substitute for eggs"
        async with running(service, broker) as w:
            await w.send(Ask(device_id=DEV, text=question))
            await eventually(lambda: service.led_pattern == "asking", "asking")
            # A half-bright glow that rises: lit, never full.
            await eventually(lambda: led.state > 0, "the LED lit while asking")
            assert max(s.state for s in led.states) <= 0.5
            buzz = bus.topic("cmd/buzz")
            await w.send(Command(device_id=DEV, name="buzz", pattern="understood"), buzz)
            await eventually(buzzed(service, "understood"), "the outcome's buzz")
            # Taken with its buzz: the wait is over, and its answer shows once.
            assert service.indicators.asking_until_s == -math.inf
            assert service.indicators.answer == "understood"
            await eventually(lambda: service.led_pattern == "off", "the wait is over")

            # No buzz comes (the link took no ask): the body's own timer ends it.
            await w.send(Ask(device_id=DEV, text=question))
            await eventually(lambda: service.led_pattern == "asking", "asking again")
            await w.send(Mic(device_id=DEV, state="muted", muted=True))
            await eventually(lambda: service.led_pattern == "muted", "the mute glow hides it")
            await w.send(Mic(device_id=DEV, state="ready"))
            await eventually(lambda: service.led_pattern != "muted", "unmuted")
            await eventually(lambda: service.led_pattern == "off", "asking timed out")
            assert service.haptic.history == ["understood"]  # the timeout buzzes nothing

    run(scenario())


def test_nothing_says_asking_while_escalate_is_off(broker: LocalBroker) -> None:
    """With escalate off the link asks nothing, so the body does not read `ask` either: no
    buzz would end the wait."""

    async def scenario() -> None:
        service = BodyService(escalating(body_config(broker), False), factory=mock_factory())
        async with running(service, broker) as w:
            await w.send(Ask(device_id=DEV, text="what is a good substitute for eggs"))
            # The fence: the body takes the bus in order, so the ask came before this.
            await w.send(Activity(device_id=DEV, sensor="mic", state="capturing"))
            await eventually(lambda: service.led_pattern == "listening", "the fence")
            await w.send(Activity(device_id=DEV, sensor="mic", state="idle"))
            await eventually(lambda: service.led_pattern == "off", "idle, not asking")
            assert service.indicators.asking_until_s == -math.inf

    run(scenario())


# --- the battery ------------------------------------------------------------------------------


def test_simulated_battery_drains_to_low(broker: LocalBroker) -> None:
    async def scenario() -> None:
        # 16 % draining 100 %/min: under 15 % within about a second.
        config = body_config(broker, simulated_start_pct=16, simulated_drain_pct_per_min=100)
        service = BodyService(config, factory=mock_factory())
        async with running(service, broker) as w:
            _, first = await w.next(0, is_type("battery"))
            assert (first["pct"], first["low"], first["charging"]) == (16, False, False)
            _, low = await w.next(0, is_type("battery", low=True))
            assert low["pct"] < 15
            await eventually(lambda: service.led_pattern == "low_battery", "low battery LED")

    run(scenario())


def test_no_gauge_means_no_battery_reports_and_everything_else_works(
    broker: LocalBroker,
) -> None:
    async def scenario() -> None:
        config = body_config(broker, battery="pisugar3", i2c_bus=31)  # nothing there
        service = BodyService(config, factory=mock_factory())
        assert service.gauge is None
        pins = Pins(service)
        async with running(service, broker) as w:
            await pins.hold(0)
            await w.next(0, is_type("button", action="cancel"))
            assert not [e for _, e, _ in w.seen if e["type"] == "battery"]

    run(scenario())


def test_close_is_idempotent_and_frees_the_pins_for_a_restart(broker: LocalBroker) -> None:
    factory = mock_factory()
    service = BodyService(body_config(broker), factory=factory)
    service.close()
    service.close()
    again = BodyService(body_config(broker), factory=factory)  # same pins, no "in use"
    again.close()


def test_losing_the_bus_ends_the_service_with_one_line(broker: LocalBroker) -> None:
    async def scenario() -> None:
        service = BodyService(body_config(broker), factory=mock_factory())
        ready = Readiness()
        task = asyncio.create_task(service.run(ready))
        await asyncio.wait_for(ready.wait(), TIMEOUT_S)
        broker.stop()
        with pytest.raises(PendantError, match="bus at"):
            await asyncio.wait_for(task, TIMEOUT_S)
        assert service.led_pattern == "off"  # closed on the way out

    run(scenario())
