"""Plays level steps on one PWM output from the event loop: the LED's patterns, the buzzes.

gpiozero's own `blink`/`pulse` would run a thread per device; here one asyncio task per
output sets `value` and sleeps, so the body keeps a single loop and nothing hidden.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Protocol

Step = tuple[float, float]
"""(level 0-1, seconds). A pattern of one step holds that level until the next."""


class Output(Protocol):
    """gpiozero's PWMLED and PWMOutputDevice, as far as the body needs them."""

    value: float


class Player:
    """Plays steps on one output, as one asyncio task at a time."""

    def __init__(self, output: Output) -> None:
        self.output = output
        self._task: asyncio.Task[None] | None = None

    def play(self, steps: Sequence[Step], repeat: bool) -> None:
        """Start `steps` now, ending whatever played before; a single step is set at once."""
        self.stop(level=None)
        if len(steps) == 1 and repeat:
            self.output.value = steps[0][0]
            return
        self._task = asyncio.get_running_loop().create_task(self._run(tuple(steps), repeat))

    async def _run(self, steps: tuple[Step, ...], repeat: bool) -> None:
        while True:
            for level, seconds in steps:
                self.output.value = level
                await asyncio.sleep(seconds)
            if not repeat:
                self.output.value = 0.0
                return

    def stop(self, level: float | None = 0.0) -> None:
        """Ends what plays, and sets the output to `level` (None: leaves it where the last step
        set it)."""
        task, self._task = self._task, None
        if task is not None and not task.done():
            with contextlib.suppress(RuntimeError):  # its loop is closed: it runs no more
                task.cancel()
        if level is not None:
            self.output.value = level
