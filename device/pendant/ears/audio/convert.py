"""Any PCM layout to the pipeline's 16 kHz mono int16."""

from __future__ import annotations

import numpy as np
import soxr

from pendant.ears.audio import RATE_HZ


def to_float_mono(samples: np.ndarray) -> np.ndarray:
    """(frames,) or (frames, channels) of int16/int32/float to float32 mono in [-1, 1]."""
    if samples.dtype == np.int16:
        x = samples.astype(np.float32) / 32768.0
    elif samples.dtype == np.int32:
        # I2S MEMS mics deliver 24 significant bits left-justified in 32.
        x = samples.astype(np.float32) / 2147483648.0
    elif samples.dtype == np.uint8:
        x = (samples.astype(np.float32) - 128.0) / 128.0
    else:
        x = samples.astype(np.float32, copy=False)
    if x.ndim == 2:
        x = x.mean(axis=1, dtype=np.float32)
    return x


def to_int16(x: np.ndarray) -> np.ndarray:
    """Float samples in [-1, 1] as int16, clipped (1.0 becomes 32767)."""
    return (np.clip(x, -1.0, 1.0 - 1.0 / 32768.0) * 32768.0).astype(np.int16)


def convert(samples: np.ndarray, rate_hz: int) -> np.ndarray:
    """A whole buffer to 16 kHz mono int16."""
    x = to_float_mono(samples)
    if rate_hz != RATE_HZ:
        x = soxr.resample(x, rate_hz, RATE_HZ, quality="HQ")
    return to_int16(x)


class StreamConverter:
    """The same conversion for a live stream: keeps the resampler's state between blocks."""

    def __init__(self, rate_hz: int) -> None:
        self._resampler = (
            soxr.ResampleStream(rate_hz, RATE_HZ, 1, dtype="float32", quality="HQ")
            if rate_hz != RATE_HZ
            else None
        )

    def push(self, samples: np.ndarray) -> np.ndarray:
        """The next block (any layout `to_float_mono` takes) as 16 kHz mono int16; the resampler may
        hold a few samples back until the next block."""
        x = to_float_mono(samples)
        if self._resampler is not None:
            x = self._resampler.resample_chunk(x)
        return to_int16(x)
