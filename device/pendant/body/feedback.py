"""How the body answers the wearer: every buzz, and the LED's answers, defined here alone.

The motor (`BUZZES`), each played once; a new buzz replaces one still running:

| buzz | felt as | when |
|---|---|---|
| `short` | one tick, 80 ms | a gesture taken: talk starts, a double press, a counted press... |
| `long` | one long buzz, 500 ms | a gesture refused: the switch holds the mute |
| `double` | two even pulses, 100 ms | the pairing window opens or closes, a phone asks to pair |
| `understood` | one firm buzz, 200 ms | an intent went out (`intent` on the bus) |
| `not_understood` | long-short: 350 ms, 90 ms | held talk matched nothing (`not_recognized`) |
| `confirm` | three quick pulses, 60 ms | an action heard waits for a tap (`activity` "confirm") |
| `attention` | two long pulses, 300 ms | `cmd/say` (the phones speak it), `cmd/buzz` by default |

Any two differ in their number of pulses or by at least twice the length of one pulse
(`tests/unit/body/test_body_logic.py` holds them to it), which a wearer can feel through a shirt.

The LED's answers (`LED_ONCE`) play once, for `LED_ONCE_S`, in the LED's order of priority
(`indicators`): under identify, error, confirm, the pairing window and the muted glow, which
they never hide, and over low battery, thinking, listening and asking. While a sensor is open
they are played inverted (`<name>_listening`: lit, with dark winks), and no step of them is
lit (so no inverted step is dark) for longer than `FLASH_S`, so an answer never makes a
listening pendant look dark:

| answer | LED, dark (lit while a sensor is open) |
|---|---|
| `understood` | one flash (one wink) |
| `not_understood` | a flicker: four quick flashes |
| `attention` | two flashes |
| `confirm` | `CONFIRM_LED`, lit with quick dark winks, for as long as the action waits |

Feedback is output only: it opens no sensor and changes no mute. `cmd/buzz` plays only
`events.BuzzPattern` (never `confirm`, which a tap must be able to answer).
"""

from __future__ import annotations

from pendant.body.player import Step
from pendant.core.events import Activity, Command, Event, Intent, NotRecognized

BUZZES: dict[str, tuple[Step, ...]] = {
    "short": ((1.0, 0.08),),
    "long": ((1.0, 0.5),),
    "double": ((1.0, 0.1), (0.0, 0.1), (1.0, 0.1)),
    "understood": ((1.0, 0.2),),
    "not_understood": ((1.0, 0.35), (0.0, 0.15), (1.0, 0.09)),
    "confirm": ((1.0, 0.06), (0.0, 0.08), (1.0, 0.06), (0.0, 0.08), (1.0, 0.06)),
    "attention": ((1.0, 0.3), (0.0, 0.15), (1.0, 0.3)),
}

FLASH_S = 0.12
"""The longest lit step of an LED answer: inverted, the longest dark wink over a sensor."""

LED_ONCE: dict[str, tuple[Step, ...]] = {
    "understood": ((1.0, 0.12), (0.0, 0.88)),
    "not_understood": ((1.0, 0.06), (0.0, 0.06)) * 4 + ((0.0, 0.52),),
    "attention": ((1.0, 0.12), (0.0, 0.12), (1.0, 0.12), (0.0, 0.64)),
}

LED_ONCE_S = 0.9
"""How long an LED answer shows: inside its last (dark) step, so it ends before it repeats."""

CONFIRM_LED: tuple[Step, ...] = ((1.0, 0.3), (0.0, 0.08))
"""An action waits for a tap: mostly lit (the mic is open), with quick dark winks."""

SENSING = "_listening"
"""The suffix of an LED answer's inverted form, shown while a sensor is open."""


def inverted(steps: tuple[Step, ...]) -> tuple[Step, ...]:
    """The same steps with each level turned over (lit for dark): an LED answer's form while a
    sensor is open."""
    return tuple((1.0 - level, seconds) for level, seconds in steps)


def feedback_for(event: Event) -> str | None:
    """The answer (a key of `BUZZES`, and of `LED_ONCE` when the LED shows it) that a bus
    event calls for, if any."""
    if isinstance(event, Intent):
        return "understood"
    if isinstance(event, NotRecognized):
        return "not_understood"
    if isinstance(event, Activity) and event.state == "confirm":
        return "confirm"
    if isinstance(event, Command) and event.name == "buzz":
        return event.pattern or "attention"
    if isinstance(event, Command) and event.name == "say":
        return "attention"
    return None
