"""The vibration motor: a short buzz when a gesture is recognised, a long one on an error."""

from __future__ import annotations

from pendant.body.player import Output, Player, Step

BUZZES: dict[str, tuple[Step, ...]] = {
    "short": ((1.0, 0.08),),
    "long": ((1.0, 0.5),),
    # Pairing: unlike anything else, so the wearer knows the window opened.
    "double": ((1.0, 0.1), (0.0, 0.1), (1.0, 0.1)),
    # An action heard waits for a tap: three quick pulses, unlike any gesture's answer.
    "confirm": ((1.0, 0.06), (0.0, 0.08), (1.0, 0.06), (0.0, 0.08), (1.0, 0.06)),
}


class Haptic:
    def __init__(self, output: Output) -> None:
        self._player = Player(output)
        self.history: list[str] = []
        """Every buzz given, by name, for tests and logs."""
        output.value = 0.0

    def buzz(self, kind: str) -> None:
        # A new buzz replaces one still running: the latest gesture is the one to feel.
        self._player.play(BUZZES[kind], repeat=False)
        self.history.append(kind)

    def close(self) -> None:
        self._player.stop()
