"""The body on the bus (`pendant service body`, or inside `pendant run`).

Out: `button` (talk), `cmd/capture` (double press), `cmd/mute` (long hold), `pairing_window`
(very long hold: open the pairing window, or close it if open), `pairing_confirm` (while the
window is open, how many short presses the wearer made in a row: the code their phone shows),
`hardware_mute` (retained: the switch), `battery`. In: `mic` and `camera` (the mute state
as enforced), `activity` (the sensors at work), `error`, `cmd/identify`, `pairing_status`
(retained: the window as the pairing service keeps it), `link_state` (retained: where the
link stands with the home broker, for setting up, no Wi-Fi, no broker, ready), and for the
answers to the wearer (`feedback`): `intent` (understood), `not_recognized`, `cmd/buzz` and
`cmd/say`; while `escalate.enabled`, `ask` (the LED says "asking" until the link's `cmd/buzz`
with the outcome). Feedback listens to events, so a fault in the LED or the motor cannot stall the
ears or the eyes.

One loop, one consumer: GPIO edges (handed over from gpiozero's threads) and bus events go
through one queue to the main loop, which alone changes state, publishes gestures, picks the
LED pattern and beats the heartbeat.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiomqtt

from pendant.body.battery import Gauge, GaugeUnavailable, Reporter, create_gauge
from pendant.body.feedback import feedback_for
from pendant.body.gestures import Action, Gestures, Timings
from pendant.body.gpio import create_pin_factory
from pendant.body.haptic import Haptic
from pendant.body.hardware import BodyHardware, Edge
from pendant.body.indicators import ASKING_GRACE_S, Indicators
from pendant.body.led import Led
from pendant.body.pins import load_pins
from pendant.core import bus
from pendant.core import systemd as notify
from pendant.core.config import Config
from pendant.core.errors import PendantError
from pendant.core.events import (
    MAX_PAIRING_PRESSES,
    Activity,
    Ask,
    Battery,
    Button,
    Camera,
    Command,
    Error,
    Event,
    HardwareMute,
    Intent,
    LinkState,
    Mic,
    NotRecognized,
    PairingConfirm,
    PairingStatus,
    PairingWindow,
)
from pendant.core.supervise import Ready, first_to_end, unobserved

log = logging.getLogger(__name__)

# The main loop turns at least this often, so the heartbeat proves it alive while idle.
BEAT_S = 0.5
SUBSCRIPTIONS = (
    bus.topic("mic"),
    bus.topic("camera"),
    bus.topic("activity/+"),
    bus.topic("error"),
    bus.command_topic("identify"),
    bus.topic("pairing_status"),
    bus.topic("link_state"),
    # The answers to the wearer (`feedback`). Only the ears' intents: the eyes' answer a
    # request the wearer already felt (a double press, "read this").
    bus.topic("intent"),
    bus.topic("not_recognized"),
    bus.command_topic("buzz"),
    bus.command_topic("say"),
)
# Read only while the link asks (`escalate.enabled`), as the link reads it: else no buzz
# would end "asking".
ASK_SUBSCRIPTIONS = (bus.topic("ask"),)
FOLLOWED: tuple[type[Event], ...] = (
    Mic,
    Camera,
    Activity,
    Error,
    Command,
    PairingStatus,
    LinkState,
    Intent,
    NotRecognized,
    Ask,
)


class BodyService:
    """Button, switch, LED, motor and battery gauge on the bus.

    `factory`: a gpiozero pin factory to use instead of the configured one (a test's
    MockFactory, say); `gauge`: a battery gauge instead of the configured one.
    When the wearer holds the button for `body.pairing_hold_s`, the body asks the pairing
    service (`pairing_window` on the bus) to open the window, or to close it if it is open,
    and calls `on_pairing` if given.

    A component (`pendant.core.supervise.Component`): ready once the pins are attached and the
    switch's state is on the bus.
    """

    name = "body"

    def __init__(
        self,
        config: Config,
        factory: Any = None,
        gauge: Gauge | None = None,
        on_pairing: Callable[[], object] | None = None,
    ) -> None:
        self.config = config
        body = config.body
        # Everything that can fail on bad config or missing hardware fails here, before READY.
        self.pins = load_pins()
        self._own_factory = factory is None
        self.factory = create_pin_factory(body.pin_factory) if factory is None else factory
        try:
            self.hardware = BodyHardware(self.factory, self.pins)
        except BaseException:
            self._close_factory()
            raise
        self.gauge = gauge if gauge is not None else create_gauge(body)
        self.led = Led(self.hardware.led)
        self.haptic = Haptic(self.hardware.motor)
        self.gestures = Gestures(
            Timings(body.double_press_s, body.long_hold_s, body.pairing_hold_s)
        )
        self.indicators = Indicators(asking_s=config.escalate.timeout_s + ASKING_GRACE_S)
        self.heartbeat = notify.Heartbeat()
        self.on_pairing = on_pairing
        self.pairing_requests = 0
        self._inbox: asyncio.Queue[Edge | Event] = asyncio.Queue()
        self._closed = False

    @property
    def led_pattern(self) -> str:
        """The pattern the LED shows now: a key of `pendant.body.led.PATTERNS`, or "off"."""
        return self.led.pattern

    async def run(self, ready: Ready = unobserved) -> None:
        """Until cancelled (or the bus fails); the pins are released when it returns. `ready`
        once the pins are attached and the switch's state published."""
        try:
            async with bus.bus_client(self.config.bus, "pendant-body") as client:
                asks = ASK_SUBSCRIPTIONS if self.config.escalate.enabled else ()
                for topic in (*SUBSCRIPTIONS, *asks):
                    await client.subscribe(topic, qos=bus.QOS)
                self.hardware.attach(asyncio.get_running_loop(), self._inbox.put_nowait)
                # Read after attaching: a flip in between arrives as an edge, not lost.
                self.indicators.hardware_muted = self.hardware.hardware_muted
                await self._publish_hardware_mute(client)
                loops = [self._main(client), self._read_bus(client)]
                if self.gauge is not None:
                    loops.append(self._watch_battery(client))
                gauge = self.gauge.name if self.gauge is not None else "no battery gauge"
                ready(f"body ({self.config.body.pin_factory}, {gauge})")
                # None of them ends by itself: the first to end takes the service down (and
                # systemd restarts it), rather than a body that silently went deaf.
                ended = await first_to_end(*loops)
                raise PendantError(f"body: {ended.get_name()} ended unexpectedly")
        except aiomqtt.MqttError as exc:
            raise bus.error(self.config.bus, exc) from None
        finally:
            self.close()

    def close(self) -> None:
        """Idempotent: LED and motor off, pins released, the gauge closed."""
        if self._closed:
            return
        self._closed = True
        self.led.close()
        self.haptic.close()
        self.hardware.close()
        if self.gauge is not None:
            self.gauge.close()
        self._close_factory()

    def _close_factory(self) -> None:
        if self._own_factory and self.factory is not None:
            self.factory.close()

    # --- the main loop --------------------------------------------------------------------

    async def _main(self, client: aiomqtt.Client) -> None:
        while True:
            self.heartbeat.beat()
            now = time.monotonic()
            wake = min(
                t
                for t in (
                    now + BEAT_S,
                    self.gestures.deadline_s(),
                    self.indicators.next_change_s(now),
                )
                if t is not None
            )
            item: Edge | Event | None = None
            try:
                async with asyncio.timeout(max(0.0, wake - now)):
                    item = await self._inbox.get()
            except TimeoutError:
                pass
            if isinstance(item, Edge):
                await self._on_edge(client, item)
            elif item is not None:
                answer = feedback_for(item)
                if answer is not None:
                    self.haptic.buzz(answer)
                    self.indicators.show_feedback(answer, time.monotonic())
                if isinstance(item, PairingStatus):
                    asks = item.open and item.asked and not item.accepted
                    if asks and not self.indicators.pairing_asked:
                        self.haptic.buzz("double")  # a phone asks: "press its code"
                self.indicators.apply(item, time.monotonic())
            # Presses count towards a phone's code while the window is open, and are no tap then
            # (`Indicators.action_waiting`).
            self.gestures.counting = self.indicators.pairing
            await self._act(client, self.gestures.poll(time.monotonic()))
            self.led.show(self.indicators.pattern(time.monotonic()))

    async def _on_edge(self, client: aiomqtt.Client, edge: Edge) -> None:
        if edge.source == "switch":
            if edge.active != self.indicators.hardware_muted:
                self.indicators.hardware_muted = edge.active
                log.info("hardware mute switch %s", "on" if edge.active else "off")
                await self._publish_hardware_mute(client)
            return
        at_s = edge.at_s
        actions = self.gestures.press(at_s) if edge.active else self.gestures.release(at_s)
        await self._act(client, actions)

    async def _act(self, client: aiomqtt.Client, actions: list[Action]) -> None:
        device_id = self.config.device_id
        for action in actions:
            log.debug("gesture: %s", action.value)
            if action is Action.TALK_START:
                self.haptic.buzz("short")
                await bus.publish(client, Button(device_id=device_id, action="press"))
            elif action is Action.TALK_END:
                await bus.publish(client, Button(device_id=device_id, action="release"))
            elif action is Action.TALK_CANCEL:
                await bus.publish(client, Button(device_id=device_id, action="cancel"))
            elif action is Action.CAPTURE:
                self.haptic.buzz("short")
                await self._command(client, Command(device_id=device_id, name="capture"))
            elif action is Action.MUTE_ARMED:
                self.haptic.buzz("short")
            elif action is Action.MUTE_TOGGLE:
                await self._toggle_mute(client)
            elif action is Action.PAIRING:
                await self._pairing(client)
            elif action is Action.TAP and self.indicators.action_waiting:
                # The LED asks about the action the ears heard: the tap is the ears' to take.
                await bus.publish(client, Button(device_id=device_id, action="tap"))
            elif action is Action.PRESSES and self.indicators.pairing:
                # The count is the code on the wearer's phone; the pairing service matches it
                # (the body never knows the codes, so the LED and motor cannot tell them).
                presses = min(self.gestures.presses, MAX_PAIRING_PRESSES)
                log.info("pairing: the wearer pressed %d time(s)", presses)
                self.haptic.buzz("short")
                await bus.publish(client, PairingConfirm(device_id=device_id, presses=presses))

    async def _toggle_mute(self, client: aiomqtt.Client) -> None:
        mute = not self.indicators.software_muted
        if not mute and self.indicators.hardware_muted:
            # The switch wins: software may add a mute under it, never lift it.
            log.warning("mute gesture: the hardware mute switch is on; cannot unmute")
            self.haptic.buzz("long")
            self.indicators.flash_error(time.monotonic())
            return
        log.info("mute gesture: %s", "muting" if mute else "unmuting")
        self.haptic.buzz("short")
        command = Command(device_id=self.config.device_id, name="mute", mic=mute, camera=mute)
        await self._command(client, command)

    async def _pairing(self, client: aiomqtt.Client) -> None:
        """The very long hold: ask the pairing service to open the window (close it, if open).

        The LED follows the service's answer (`pairing_status`), not this request: with no
        pairing service running, nothing opens and the LED says so by not changing.
        """
        self.pairing_requests += 1
        self.haptic.buzz("double")
        opening = not self.indicators.pairing
        log.info("pairing gesture: asking to %s the pairing window", "open" if opening else "close")
        event = PairingWindow(device_id=self.config.device_id, open=opening)
        await bus.publish(client, event)
        if self.on_pairing is not None:
            self.on_pairing()

    async def _command(self, client: aiomqtt.Client, command: Command) -> None:
        await bus.publish(client, command)

    async def _publish_hardware_mute(self, client: aiomqtt.Client) -> None:
        muted = self.indicators.hardware_muted
        event = HardwareMute(device_id=self.config.device_id, mic=muted, camera=muted)
        await bus.publish(client, event)  # retained (bus.RETAINED): a later ears learns it

    # --- helpers feeding the main loop ----------------------------------------------------

    async def _read_bus(self, client: aiomqtt.Client) -> None:
        async for event in bus.events(client):
            if isinstance(event, FOLLOWED):
                self._inbox.put_nowait(event)

    async def _watch_battery(self, client: aiomqtt.Client) -> None:
        assert self.gauge is not None
        body = self.config.body
        reporter = Reporter(body.low_battery_pct, body.battery_report_s)
        failing = False
        while True:
            try:
                reading = self.gauge.read()
            except GaugeUnavailable as exc:
                if not failing:  # once per outage, not every poll
                    log.warning("battery: %s", exc)
                failing = True
            else:
                failing = False
                if reporter.due(reading, time.monotonic()):
                    event = Battery(
                        device_id=self.config.device_id,
                        pct=reading.pct,
                        charging=reading.charging,
                        low=reporter.is_low(reading),
                    )
                    await bus.publish(client, event)
                    self._inbox.put_nowait(event)
            await asyncio.sleep(body.battery_poll_s)


def component(config: Config, config_path: Path | None) -> BodyService:
    """The body, its pins claimed and its gauge opened (`pendant.app.services`)."""
    return BodyService(config)
