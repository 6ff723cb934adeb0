"""The LED: one named pattern at a time (see `indicators` for which one), on a PWM pin."""

from __future__ import annotations

from pendant.body.feedback import CONFIRM_LED, LED_ONCE, SENSING, inverted
from pendant.body.player import Output, Player, Step


def _breathe(period_s: float, steps: int = 10, peak: float = 1.0) -> tuple[Step, ...]:
    # A triangle in brightness: cheap to drive, and the eye sees a soft pulse.
    up = [(peak * i / steps, period_s / (2 * steps)) for i in range(steps)]
    down = [(peak * (1 - i / steps), period_s / (2 * steps)) for i in range(steps)]
    return (*up, *down)


def _rise(rise_s: float, dark_s: float, steps: int = 12, peak: float = 1.0) -> tuple[Step, ...]:
    # A ramp up, then dark at once: unlike a breath, it never fades back down.
    up = [(peak * (i + 1) / steps, rise_s / steps) for i in range(steps)]
    return (*up, (0.0, dark_s))


PATTERNS: dict[str, tuple[Step, ...]] = {
    "off": ((0.0, 0.0),),
    # Steady while a sensor is open: the plainest signal for the one that matters most.
    "listening": ((1.0, 0.0),),
    "thinking": _breathe(1.0),
    # Asking a bigger model, waiting for its answer (`indicators`): a half-bright glow that
    # rises slowly and goes dark at once, every 2 s. Calm, never steady lit, and no breath:
    # thinking's and setting up's fade down as they rose.
    "asking": _rise(1.4, 0.6, peak=0.5),
    # A dim glow: visibly not off, and a cost a battery can carry for hours.
    "muted": ((0.08, 0.0),),
    "error": ((1.0, 0.1), (0.0, 0.1)),
    "low_battery": ((0.6, 0.15), (0.0, 3.85)),
    # Where the pendant stands with the home broker (`indicators`: under every other pattern
    # but off). None is ever steady lit, which says a sensor is open. Long flashes, every 3 s:
    # one for no Wi-Fi, two for no broker (the pairing window's are short, 0.12 s).
    "no_network": ((1.0, 0.8), (0.0, 2.2)),
    "no_broker": ((1.0, 0.5), (0.0, 0.4), (1.0, 0.5), (0.0, 1.6)),
    # Setting up: a dim, slow breath (thinking's is bright and three times as fast).
    "setting_up": _breathe(3.0, peak=0.3),
    # Ready: one full, slow breath, once (`indicators.READY_S`), then the idle pattern.
    "ready": (*_breathe(2.0), (0.0, 1.0)),
    "identify": ((1.0, 0.25), (0.0, 0.25)),
    "confirm": CONFIRM_LED,
    # The pairing window: two quick flashes, then dark; while a sensor is open, the same
    # rhythm inverted (lit, two quick winks), so the window never hides the sensing.
    "pairing": ((1.0, 0.12), (0.0, 0.12), (1.0, 0.12), (0.0, 1.14)),
    "pairing_listening": ((0.0, 0.12), (1.0, 0.12), (0.0, 0.12), (1.0, 1.14)),
    # A phone asks to pair: three quick flashes (the window's two, and one more), "press now".
    "pairing_asked": ((1.0, 0.12), (0.0, 0.12)) * 3 + ((0.0, 0.9),),
    # The answers to the wearer (`feedback`), each once; inverted while a sensor is open.
    **LED_ONCE,
    **{name + SENSING: inverted(steps) for name, steps in LED_ONCE.items()},
}


class Led:
    """The LED on a PWM output, showing one pattern of `PATTERNS` at a time (off at first)."""

    def __init__(self, output: Output) -> None:
        self._player = Player(output)
        self.pattern = "off"
        output.value = 0.0

    def show(self, pattern: str) -> None:
        """Plays `pattern` (a key of `PATTERNS`), repeating, from now; the pattern already showing
        goes on undisturbed rather than starting again. Needs the running event loop unless the
        pattern is one steady step."""
        if pattern == self.pattern:
            return
        self._player.play(PATTERNS[pattern], repeat=True)
        self.pattern = pattern

    def close(self) -> None:
        """Ends the pattern and leaves the LED off."""
        self._player.stop()
        self.pattern = "off"
