"""What the LED should say, decided from bus events: pure logic, no I/O.

One pattern at a time, the first that applies in `PRIORITY`:

identify (a phone asked "which one are you?", a few seconds) > error (a few seconds after an
error event) > pairing (the pairing window is open; `pairing_asked` while a phone asks and
pressing its code would accept it: the same for any code, which the body never knows) > muted
(mic or camera muted in software, or the hardware switch) > low battery (low and not
charging) > thinking > listening (a sensor is capturing) > asking > no_network > no_broker >
setting_up > ready > off. Confirm (an action heard waits for the wearer's tap, with the mic
open, and the pairing window is closed) comes right after error: it asks for something, for a
few seconds only. An answer to the wearer (understood, not understood, attention:
`feedback`, shown once by `show_feedback`) comes right after muted: the muted glow says what
is enforced and is never hidden, while thinking and listening go on under the answer's
inverted form (`<name>_listening`, lit with dark winks).

The pairing window comes in two patterns, so it never hides a sensor at work:
`pairing_listening` (lit, with two quick dark winks) while a sensor captures or thinks and
nothing is muted, `pairing` (dark, with two quick flashes) otherwise. The window's state is
the pairing service's retained `pairing_status`, not the gesture: the LED says what is open.

The last four say where the pendant stands with the home broker, from the link's retained
`link_state` on the bus: `setting_up` until the link has said how its first connection went
(the body starts there; the link says `connecting` again when it starts, so first boot, with
`pendant-setup` still running, and every restart of the link show it), `no_network` (no Wi-Fi:
no route, no address, the name did not resolve), `no_broker` (the network is there, the broker
refused, did not answer, or the login or TLS failed), and `ready` for `READY_S` once the link
connects, before the idle pattern: a working pendant does not blink forever. They come under
every other pattern, a sensor at work and the mute glow included: what the pendant senses
matters more than whether it can tell anyone.

`asking`: the ears put words the closed set cannot hear on the bus (`ask`), the link asks a
bigger model (`escalate`), and the wearer waits. It shows from the `ask` until the link's
`cmd/buzz` with its outcome (understood or not understood, whose answer then shows once; the
buzz names the question by its session id, so an older question's late answer ends nothing), or
for `escalate.timeout_s` + `ASKING_GRACE_S` if no buzz comes (the link took no ask, or died):
never much longer than the link itself waits. It is like `thinking`, but it waits on the
network, not on a sensor, so it sits right under `thinking` and `listening`: a new question
started while one is out shows the mic at work, as it must, and `asking` comes back after it
if the answer is still out. It sits over the link's states: it is short, says what the wearer
waits for, and a target the link cannot reach ends it soon with a "not understood" buzz. The
mute glow hides it (a mute while waiting hides it, and does not end it), as it hides
everything but what asks for the wearer's attention.

`listening` and `thinking` come from `activity` events that the capture code itself
publishes, so the LED follows what the sensors do, not what was asked of them. A sensor
whose service died while capturing keeps the LED on `listening`: wrong towards caution.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from pendant.body.feedback import LED_ONCE, LED_ONCE_S, SENSING
from pendant.core.events import (
    Activity,
    Ask,
    Battery,
    Camera,
    Command,
    Error,
    Event,
    LinkState,
    Mic,
    OutsideState,
    PairingStatus,
)

ANSWERS = tuple(name + suffix for name in LED_ONCE for suffix in ("", SENSING))
PRIORITY = (
    "identify",
    "error",
    "confirm",
    "pairing_listening",
    "pairing_asked",
    "pairing",
    "muted",
    *ANSWERS,
    "low_battery",
    "thinking",
    "listening",
    "asking",
    "no_network",
    "no_broker",
    "setting_up",
    "ready",
    "off",
)
IDENTIFY_S = 5.0
ERROR_S = 2.0
READY_S = 2.5
"""How long `ready` shows once the link connects: one breath, ended inside the dark step
that follows it (`led.PATTERNS`), so it is not seen to start again."""
ASKING_GRACE_S = 2.0
"""How much longer than the link's wait for an answer (`escalate.timeout_s`) `asking` may show
without the link's buzz: the link's buzz comes after its wait, its gate and the bus."""
ASKING_S = 8.0 + ASKING_GRACE_S
"""`asking`'s longest show with `escalate.timeout_s` at its default (the body sets its own)."""


@dataclass
class Indicators:
    """What the LED is to show: the state bus events leave (`apply`), and the pattern it calls for
    (`pattern`). Times are monotonic seconds."""

    mic_muted: bool = False
    camera_muted: bool = False
    hardware_muted: bool = False
    battery_low: bool = False
    charging: bool = False
    activity: dict[str, str] = field(default_factory=dict)
    pairing: bool = False
    # A phone asks to pair and the wearer has not accepted one yet: pressing its code does.
    pairing_asked: bool = False
    identify_until_s: float = -math.inf
    error_until_s: float = -math.inf
    # The LED's answer to the wearer (a key of feedback.LED_ONCE), until when.
    answer: str = ""
    answer_until_s: float = -math.inf
    # The link's last `link_state`: "connecting" until it has said how its connection went.
    link: OutsideState = "connecting"
    ready_until_s: float = -math.inf
    ready_s: float = READY_S
    # A question is out to a bigger model (`asking`), until when, and which (its session id).
    asking_until_s: float = -math.inf
    asking_session: str | None = None
    asking_s: float = ASKING_S

    @property
    def software_muted(self) -> bool:
        """Muted as the ears and eyes enforce it (what a mute toggle starts from)."""
        return self.mic_muted or self.camera_muted

    @property
    def action_waiting(self) -> bool:
        """An action waits for the wearer's tap (the LED shows `confirm`, a tap answers it).

        Not while the pairing window is open: then a press is a digit of a phone's code, never
        a yes. A paired phone can make the ears wait for a tap at any moment (a voice to
        forget); were the tap to come first, the wearer's code would confirm it. What waits
        meanwhile runs out unconfirmed, and nothing is done."""
        return self.activity.get("mic") == "confirm" and not self.muted and not self.pairing

    @property
    def muted(self) -> bool:
        """Muted in software or by the hardware switch: the LED keeps the muted glow."""
        return self.software_muted or self.hardware_muted

    def apply(self, event: Event, now_s: float) -> None:
        """Takes in what a bus event says about the LED's state at `now_s`; an event of no concern
        to it changes nothing."""
        if isinstance(event, Mic):
            self.mic_muted = event.muted
        elif isinstance(event, Camera):
            self.camera_muted = event.muted
        elif isinstance(event, Activity):
            self.activity[event.sensor] = event.state
        elif isinstance(event, Battery):
            self.battery_low, self.charging = event.low, event.charging
        elif isinstance(event, Error):
            self.flash_error(now_s)
        elif isinstance(event, PairingStatus):
            self.pairing = event.open
            self.pairing_asked = event.open and event.asked and not event.accepted
        elif isinstance(event, LinkState):
            if event.state == "connected" and self.link != "connected":
                self.ready_until_s = now_s + self.ready_s
            elif event.state != "connected":
                self.ready_until_s = -math.inf
            self.link = event.state
        elif isinstance(event, Command) and event.name == "identify":
            self.identify_until_s = now_s + IDENTIFY_S
        elif isinstance(event, Ask):
            self.asking_until_s = now_s + self.asking_s
            self.asking_session = event.session_id
        elif (
            isinstance(event, Command)
            and event.name == "buzz"
            and event.session_id in (None, self.asking_session)
        ):
            # The link buzzes a question's outcome once its answer is out, with the question's
            # session id: that wait is over. A late answer to an older question leaves the
            # latest one asking. (A phone's buzz, which has no session id, ends it too: the
            # bus does not say whose buzz without one the link relays.)
            self.asking_until_s = -math.inf

    def flash_error(self, now_s: float) -> None:
        """Shows `error` for ERROR_S from `now_s`."""
        self.error_until_s = now_s + ERROR_S

    def show_feedback(self, name: str, now_s: float) -> None:
        """Show the answer `name` once, if the LED has one for it (`feedback.LED_ONCE`)."""
        if name in LED_ONCE:
            self.answer, self.answer_until_s = name, now_s + LED_ONCE_S

    def pattern(self, now_s: float) -> str:
        """The pattern to show at `now_s` (a key of `led.PATTERNS`): the first of PRIORITY that
        applies."""
        states = set(self.activity.values())
        sensing = not self.muted and bool(states & {"capturing", "thinking", "confirm"})
        answer = ""
        if now_s < self.answer_until_s:
            answer = self.answer + (SENSING if sensing else "")
        applies = {
            "identify": now_s < self.identify_until_s,
            "error": now_s < self.error_until_s,
            "confirm": self.action_waiting,
            "pairing_listening": self.pairing and sensing,
            "pairing_asked": self.pairing_asked,
            "pairing": self.pairing,
            "muted": self.muted,
            **{name: name == answer for name in ANSWERS},
            "low_battery": self.battery_low and not self.charging,
            "thinking": "thinking" in states,
            "listening": "capturing" in states,
            "asking": now_s < self.asking_until_s,
            "no_network": self.link == "no_network",
            "no_broker": self.link == "no_broker",
            "setting_up": self.link == "connecting",
            "ready": now_s < self.ready_until_s,
            "off": True,
        }
        return next(name for name in PRIORITY if applies[name])

    def next_change_s(self, now_s: float) -> float | None:
        """When a timed pattern (identify, error, an answer, ready, asking) runs out, if one is
        running."""
        timed = (
            self.identify_until_s,
            self.error_until_s,
            self.answer_until_s,
            self.ready_until_s,
            self.asking_until_s,
        )
        ends = [t for t in timed if t > now_s]
        return min(ends, default=None)
