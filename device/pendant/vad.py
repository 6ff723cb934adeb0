"""Cutting a stream of chunks into utterances.

webrtcvad is the cheap first gate (microseconds a frame); Silero, run with onnxruntime, only
looks at frames the gate let through, so a quiet room costs almost nothing. An utterance keeps
`pre_roll_ms` of audio from before speech started and ends after `hangover_ms` of silence.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime
import webrtcvad

from pendant.audio import RATE_HZ, Chunk
from pendant.config import VadConfig

log = logging.getLogger(__name__)

SILERO_WINDOW = 512
SILERO_CONTEXT = 64
# Silero's speech probability falls well below the start threshold between words; ending only
# when it drops this far under avoids cutting commands at their pauses.
END_MARGIN = 0.15


@dataclass(frozen=True, slots=True)
class Utterance:
    audio: np.ndarray
    """16 kHz mono int16, pre-roll included; RAM only."""
    speech_end_ms: int
    """Wall-clock time (Unix epoch ms) the last speech frame ended."""
    speech_ms: int
    """How much of it was speech."""


class SileroVad:
    """Silero VAD (v5+ ONNX) on 32 ms windows, with its recurrent state."""

    def __init__(self, model_path: Path) -> None:
        opts = onnxruntime.SessionOptions()
        # One thread: the audio path must leave the other cores to recognition.
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        self._session = onnxruntime.InferenceSession(
            str(model_path), sess_options=opts, providers=["CPUExecutionProvider"]
        )
        self._sr = np.array(RATE_HZ, dtype=np.int64)
        self._pending = np.zeros(0, dtype=np.float32)
        self.reset()

    def reset(self) -> None:
        self._state = np.zeros((2, 1, 128), dtype=np.float32)
        self._context = np.zeros(SILERO_CONTEXT, dtype=np.float32)
        self._pending = np.zeros(0, dtype=np.float32)
        self.probability = 0.0

    def push(self, samples: np.ndarray) -> float:
        """Feed int16 samples; returns the latest speech probability."""
        self._pending = np.concatenate((self._pending, samples.astype(np.float32) / 32768.0))
        while len(self._pending) >= SILERO_WINDOW:
            window, self._pending = self._pending[:SILERO_WINDOW], self._pending[SILERO_WINDOW:]
            x = np.concatenate((self._context, window))[np.newaxis, :]
            out, self._state = self._session.run(
                None, {"input": x, "state": self._state, "sr": self._sr}
            )
            self._context = window[-SILERO_CONTEXT:]
            self.probability = float(out[0][0])
        return self.probability


class Segmenter:
    """The state machine from chunks to utterances. Feed it every chunk, in order."""

    def __init__(self, config: VadConfig, silero: SileroVad, chunk_ms: int) -> None:
        self.config = config
        self.silero = silero
        self.chunk_ms = chunk_ms
        self._webrtc = webrtcvad.Vad(config.webrtc_aggressiveness)
        self._pre_roll: deque[np.ndarray] = deque(maxlen=max(1, config.pre_roll_ms // chunk_ms))
        self._frames: list[np.ndarray] = []
        self._in_speech = False
        self._speech_ms = 0
        self._silence_ms = 0
        self._last_speech_end_ms = 0
        self._confirm_ms = 0

    @property
    def in_speech(self) -> bool:
        return self._in_speech

    def _is_speech(self, chunk: Chunk) -> bool:
        if not self._webrtc.is_speech(chunk.samples.tobytes(), RATE_HZ):
            # Keep Silero's state warm while talking so its probability is not stale.
            if self._in_speech:
                self.silero.push(chunk.samples)
            return False
        return self.silero.push(chunk.samples) >= self._threshold()

    def _threshold(self) -> float:
        t = self.config.silero_threshold
        return max(0.05, t - END_MARGIN) if self._in_speech else t

    def push(self, chunk: Chunk) -> Iterator[Utterance]:
        speech = self._is_speech(chunk)
        if not self._in_speech:
            self._pre_roll.append(chunk.samples)
            if not speech:
                self._confirm_ms = 0
                return
            self._confirm_ms += self.chunk_ms
            # Two confirmed frames in a row: one loud click is not speech.
            if self._confirm_ms < 2 * self.chunk_ms:
                return
            self._in_speech = True
            self._frames = list(self._pre_roll)
            self._pre_roll.clear()
            self._speech_ms = self._confirm_ms
            self._silence_ms = 0
            self._last_speech_end_ms = chunk.end_ms
            return
        self._frames.append(chunk.samples)
        if speech:
            self._speech_ms += self.chunk_ms
            self._silence_ms = 0
            self._last_speech_end_ms = chunk.end_ms
        else:
            self._silence_ms += self.chunk_ms
        total_ms = len(self._frames) * self.chunk_ms
        if (
            self._silence_ms >= self.config.hangover_ms
            or total_ms >= self.config.max_utterance_s * 1000
        ):
            yield from self._finish()

    def flush(self) -> Iterator[Utterance]:
        """End of stream: whatever is being spoken ends here."""
        if self._in_speech:
            yield from self._finish()

    def _finish(self) -> Iterator[Utterance]:
        frames, speech_ms, end_ms = self._frames, self._speech_ms, self._last_speech_end_ms
        self._frames = []
        self._in_speech = False
        self._confirm_ms = 0
        self.silero.reset()
        if speech_ms < self.config.min_speech_ms:
            log.debug("dropped %d ms burst: shorter than vad.min_speech_ms", speech_ms)
            return
        yield Utterance(np.concatenate(frames), end_ms, speech_ms)
