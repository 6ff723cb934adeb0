"""Where sound comes from: one interface, a real and a simulated backend.

A source yields `Chunk`s of 16 kHz mono int16, `chunk_ms` long, stamped with the wall-clock
time their last sample was captured. Samples live only in RAM; nothing here writes audio.
Backends are registered in pendant.core.backends and imported only when chosen, so the
package imports on machines without PortAudio.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np

from pendant.core.backends import AUDIO_SOURCES

if TYPE_CHECKING:
    from pendant.core.config import AudioConfig

RATE_HZ = 16_000
# Sources wake the loop once per block of this many chunks: each wake-up of an asyncio loop
# costs ~0.15 ms here (far more on a Zero 2 W), and at one per 30 ms chunk that alone broke
# the budget for listening to a quiet room. Three chunks delay end-of-speech by at most 90 ms.
BLOCK_CHUNKS = 3


@dataclass(frozen=True, slots=True)
class Chunk:
    """`chunk_ms` of audio, stamped with the time its last sample was captured."""

    samples: np.ndarray
    """int16, mono, RATE_HZ."""
    end_ms: int
    """Wall-clock time (Unix epoch ms) of the chunk's last sample."""


class AudioSource(Protocol):
    """What every audio backend provides (`create_source` builds the configured one)."""

    realtime: bool
    """False: audio comes faster than it was spoken (files played for a test or for `pendant
    listen`), and the listener waits for work a device would do while listening on."""

    def chunks(self) -> AsyncIterator[Chunk]:
        """The audio as it comes, one Chunk at a time, nothing while paused; ends when the source is
        closed (a file source also at its end)."""
        ...

    def pause(self) -> None:
        """Capture nothing until resume(): the microphone is closed before this returns."""

    def resume(self) -> None:
        """Capture again after `pause()` (a microphone opens again)."""
        ...

    def close(self) -> None:
        """Stops capturing for good: `chunks()` ends."""
        ...


SOURCES = AUDIO_SOURCES
"""'mic' (sounddevice) and 'wav' (files), as `"module:Class"` (pendant.core.backends)."""


def create_source(config: AudioConfig) -> AudioSource:
    """The configured source; BackendUnavailable (what to install) when it cannot load."""
    return SOURCES.load(config.source)(config)


def dbfs(samples: np.ndarray) -> float:
    """RMS level of int16 samples in dBFS, floored at -120."""
    if samples.size == 0:
        return -120.0
    rms = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64)))) / 32768.0
    return max(-120.0, 20.0 * float(np.log10(rms)) if rms > 0 else -120.0)
