"""The vibration motor: plays the buzzes of `feedback.BUZZES` (the table of what each means)."""

from __future__ import annotations

from pendant.body.feedback import BUZZES
from pendant.body.player import Output, Player

HISTORY_MAX = 100


class Haptic:
    """The vibration motor on a PWM output (set still at once); its buzzes play on the event
    loop."""

    def __init__(self, output: Output) -> None:
        self._player = Player(output)
        self.history: list[str] = []
        """The last `HISTORY_MAX` buzzes given, by name, for tests and logs (a pendant worn for
        weeks must not keep them all)."""
        output.value = 0.0

    def buzz(self, kind: str) -> None:
        """Plays the buzz `kind` (a key of `BUZZES`; KeyError otherwise) once, replacing one still
        running, and returns at once; needs the running event loop."""
        # A new buzz replaces one still running: the latest gesture is the one to feel.
        self._player.play(BUZZES[kind], repeat=False)
        self.history.append(kind)
        del self.history[:-HISTORY_MAX]

    def close(self) -> None:
        """Ends a buzz in progress and leaves the motor still."""
        self._player.stop()
