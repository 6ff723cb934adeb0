"""The simulated microphone: WAV files played in real time or as fast as possible."""

from __future__ import annotations

import asyncio
import bisect
import logging
import math
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from pathlib import Path

import numpy as np
import soundfile

from pendant.core import wire
from pendant.core.config import AudioConfig
from pendant.core.errors import AudioFormatError
from pendant.ears.audio import BLOCK_CHUNKS, RATE_HZ, Chunk
from pendant.ears.audio.convert import convert

log = logging.getLogger(__name__)

MAX_FILE_S = 600


def check_audio(path: str | Path) -> soundfile._SoundFileInfo:
    """What read_audio would refuse, found from the header alone."""
    p = Path(path)
    if not p.is_file():
        raise AudioFormatError(f"{p}: no such file")
    try:
        info = soundfile.info(str(p))
    except (soundfile.LibsndfileError, RuntimeError, OSError) as exc:
        raise AudioFormatError(f"{p}: not a readable audio file ({exc})") from None
    if info.frames == 0:
        raise AudioFormatError(f"{p}: holds no audio")
    if info.frames / info.samplerate > MAX_FILE_S:
        raise AudioFormatError(f"{p}: longer than {MAX_FILE_S} s; split it")
    return info


def read_audio(path: str | Path) -> np.ndarray:
    """A sound file (WAV, FLAC, ...; any rate, width, channels) as 16 kHz mono int16."""
    p = Path(path)
    info = check_audio(p)
    dtype = "int16" if info.subtype in ("PCM_16", "PCM_U8", "PCM_S8") else "float32"
    data, rate = soundfile.read(str(p), dtype=dtype, always_2d=True)
    return convert(data, rate)


class WavSource:
    """Plays `files` one after another, each followed by `gap_ms` of silence.

    Paced against the monotonic clock when `realtime`, so downstream timing is as on a
    device; otherwise as fast as the consumer takes it (for `pendant listen` and tests).

    A chunk is stamped with the wall-clock time it is played, as a microphone's is with the
    time it was captured: played fast, an utterance's end is when the ears heard it, never
    minutes ahead of the clock (the link holds `speech_end_ms` to just before its intent).
    Fast is at most a chunk a millisecond, so `stream_s` can say where in the files a stamp
    was.
    """

    def __init__(self, config: AudioConfig, files: Iterable[str | Path] | None = None) -> None:
        self.chunk_samples = RATE_HZ * config.chunk_ms // 1000
        self.realtime = config.realtime
        self.gap_ms = config.gap_ms
        paths = list(files) if files is not None else list(config.files)
        if not paths:
            raise AudioFormatError("audio.files is empty: give the 'wav' source files to play")
        # Every header is checked up front, so a bad file fails at start-up, not mid-run; the
        # audio is decoded only when its turn comes, so a long playlist is never all in RAM.
        self._durations_s = [(info := check_audio(path)).frames / info.samplerate for path in paths]
        self._paths = paths
        self._closed = False
        self._running = asyncio.Event()
        self._running.set()
        self.started_ms: int | None = None
        """Wall-clock time the first sample played, once playing."""
        self.played_samples = 0
        """How much has been delivered: a test can see that a muted mic hears nothing."""
        self._stamps: list[tuple[int, float]] = []  # (stamp, stream s), played fast only

    @property
    def spans_s(self) -> list[tuple[float, float]]:
        """Where each file lies in the played stream, in seconds from its start (from the
        headers: within a sample of the resampled audio)."""
        spans, t = [], 0.0
        for duration in self._durations_s:
            spans.append((t, t + duration))
            t += duration + self.gap_ms / 1000
        return spans

    def stream_s(self, stamp_ms: int) -> float:
        """Where in the played stream (seconds from its start, as `spans_s`) the chunk stamped
        `stamp_ms` ended: the last chunk stamped at or before it, played fast."""
        if self.started_ms is None:
            raise ValueError("nothing has been played yet")
        if self.realtime:
            return (stamp_ms - self.started_ms) / 1000
        # The link sends it rounded down to 10 ms: the middle of those is the best guess.
        i = bisect.bisect_right(self._stamps, (stamp_ms // 10 * 10 + 5, math.inf))
        return self._stamps[i - 1][1] if i else 0.0

    def _stream(self) -> Iterator[np.ndarray]:
        """The files, each followed by the gap, in chunks; a last part-chunk is dropped."""
        n = self.chunk_samples
        gap = np.zeros(RATE_HZ * self.gap_ms // 1000, dtype=np.int16)
        carry = gap[:0]
        for path in self._paths:
            for part in (read_audio(path), gap):
                buf = np.concatenate((carry, part))
                whole = len(buf) // n * n
                for j in range(0, whole, n):
                    yield buf[j : j + n]
                carry = buf[whole:]

    async def chunks(self) -> AsyncIterator[Chunk]:
        """The files' audio as Chunks, each file followed by `gap_ms` of silence, ending after the
        last; in real time stamped as if captured live from when it started, time standing still
        while paused, played fast stamped when played. A file is decoded when its turn comes."""
        n = self.chunk_samples
        start_ms = self.started_ms = wire.now_ms()
        start_mono = time.monotonic()
        last_ms = 0
        block = n * BLOCK_CHUNKS
        for index, samples in enumerate(self._stream()):
            if self._closed:
                return
            i = index * n
            end_s = (i + n) / RATE_HZ
            if i % block == 0:
                if self.realtime:
                    # A block is played when its last sample would have been captured.
                    block_end_s = (i + block) / RATE_HZ
                    delay = start_mono + block_end_s - time.monotonic()
                    # Behind (a loaded machine), it still yields once a block: a button
                    # event must not wait until the whole file has been caught up on.
                    await asyncio.sleep(max(delay, 0.0))
                else:
                    # No faster than a chunk a millisecond (30 times real time): each stamp
                    # is one chunk's, so `stream_s` finds it after the link's 10 ms rounding.
                    await asyncio.sleep(max(last_ms + 1 - wire.now_ms(), 0) / 1000)
            if not self._running.is_set():
                paused_at = time.monotonic()
                await self._running.wait()
                # Simulated time stands still while muted, as a closed mic hears nothing.
                paused_s = time.monotonic() - paused_at
                start_mono += paused_s
                start_ms += int(paused_s * 1000)
                if self._closed:
                    return
            self.played_samples = i + n
            if self.realtime:
                stamp_ms = start_ms + int(end_s * 1000)
            else:
                stamp_ms = last_ms = max(wire.now_ms(), last_ms + 1)
                self._stamps.append((stamp_ms, end_s))
            yield Chunk(samples, stamp_ms)

    def pause(self) -> None:
        """Holds the stream where it is, losing nothing (unlike a microphone's pause), until
        resume()."""
        self._running.clear()

    def resume(self) -> None:
        """Plays on from where `pause()` held it."""
        self._running.set()

    def close(self) -> None:
        """`chunks()` ends before its next chunk, even while paused."""
        self._closed = True
        self._running.set()
