"""The real microphone through sounddevice (PortAudio).

I2S MEMS mics on a Pi deliver 48 kHz, 2 channels, 32-bit; the callback only enqueues the
raw block (it runs on PortAudio's thread) and the event loop converts it to 16 kHz mono.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import numpy as np
import sounddevice

from pendant.core import wire
from pendant.core.config import AudioConfig
from pendant.core.errors import BackendUnavailable
from pendant.ears.audio import BLOCK_CHUNKS, RATE_HZ, Chunk
from pendant.ears.audio.convert import StreamConverter

log = logging.getLogger(__name__)

QUEUE_BLOCKS = 200
# How long to wait for a block before looking again whether the mic was paused or closed.
STALL_S = 0.5


class MicSource:
    """The microphone `audio.device` names, open only while `chunks()` runs and nothing has paused
    it."""

    realtime = True

    @staticmethod
    def capture_devices() -> list[str]:
        """The names of the sound devices that can record (what `pendant doctor` lists)."""
        try:
            devices = sounddevice.query_devices()
        except sounddevice.PortAudioError as exc:
            raise BackendUnavailable(f"PortAudio: {exc}") from None
        return [d["name"] for d in devices if d["max_input_channels"] > 0]

    @classmethod
    def present(cls) -> bool:
        """Whether this machine has a microphone at all (opened only by `chunks()`)."""
        try:
            return bool(cls.capture_devices())
        except BackendUnavailable:
            return False

    def __init__(self, config: AudioConfig) -> None:
        self.config = config
        self.chunk_samples = RATE_HZ * config.chunk_ms // 1000
        self._stream: sounddevice.InputStream | None = None
        self._queue: asyncio.Queue[np.ndarray] | None = None
        self._dropped = 0
        self._running = asyncio.Event()
        self._running.set()
        self._closed = False

    def _open(self, loop: asyncio.AbstractEventLoop) -> None:
        queue: asyncio.Queue[np.ndarray] = asyncio.Queue(QUEUE_BLOCKS)
        self._queue = queue

        def put(block: np.ndarray) -> None:
            if queue.full():
                self._dropped += 1
                return
            queue.put_nowait(block)

        def callback(indata: np.ndarray, frames: int, t: object, status: object) -> None:
            loop.call_soon_threadsafe(put, indata.copy())

        try:
            self._stream = sounddevice.InputStream(
                device=self.config.device,
                samplerate=self.config.capture_rate_hz,
                channels=self.config.capture_channels,
                dtype="int32",
                blocksize=self.config.capture_rate_hz * self.config.chunk_ms * BLOCK_CHUNKS // 1000,
                callback=callback,
            )
            self._stream.start()
        except (sounddevice.PortAudioError, ValueError) as exc:
            self.close()
            raise BackendUnavailable(
                f"microphone {self.config.device!r} cannot open at "
                f"{self.config.capture_rate_hz} Hz x{self.config.capture_channels}: {exc}; "
                "check audio.device / capture_rate_hz / capture_channels (`python -m sounddevice`)"
            ) from None

    async def chunks(self) -> AsyncIterator[Chunk]:
        """The microphone's audio as Chunks, stamped as they are converted; opens the stream, and
        again after each pause. BackendUnavailable when it cannot open; ends at close()."""
        loop = asyncio.get_running_loop()
        n = self.chunk_samples
        while not self._closed:
            await self._running.wait()
            if self._closed:
                return
            self._open(loop)
            queue = self._queue
            assert queue is not None
            converter = StreamConverter(self.config.capture_rate_hz)
            pending = np.zeros(0, dtype=np.int16)
            while self._stream is not None:
                try:
                    async with asyncio.timeout(STALL_S):
                        block = await queue.get()
                except TimeoutError:
                    continue  # paused or closed meanwhile: the loop condition says which
                pending = np.concatenate((pending, converter.push(block)))
                now_ms = wire.now_ms()
                while len(pending) >= n and self._stream is not None:
                    chunk, pending = pending[:n], pending[n:]
                    yield Chunk(chunk, now_ms - len(pending) * 1000 // RATE_HZ)

    def pause(self) -> None:
        """Closes the microphone before it returns; `chunks()` then waits, capturing nothing, until
        resume()."""
        self._running.clear()
        self._release()

    def resume(self) -> None:
        """Lets `chunks()` open the microphone again."""
        self._running.set()

    def _release(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.stop()
            stream.close()
        self._queue = None

    def close(self) -> None:
        """Closes the microphone for good (`chunks()` ends) and logs how many blocks were dropped
        while the pipeline was busy."""
        self._closed = True
        self._running.set()
        self._release()
        if self._dropped:
            log.warning("microphone: %d blocks dropped while the pipeline was busy", self._dropped)
