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

from pendant.core.config import VadConfig
from pendant.ears.audio import RATE_HZ, Chunk

log = logging.getLogger(__name__)

SILERO_WINDOW = 512
SILERO_CONTEXT = 64
# How long webrtcvad must hear nothing before Silero sleeps again.
SILERO_SLEEP_MS = 600


def voiced_frames(pcm: np.ndarray, frame: int, aggressiveness: int) -> np.ndarray:
    """webrtcvad's verdict on each whole `frame`-sample frame (10, 20 or 30 ms) of 16 kHz
    int16 `pcm`, as a bool array."""
    vad = webrtcvad.Vad(aggressiveness)
    raw = pcm.astype("<i2", copy=False).tobytes()
    step = 2 * frame
    n = len(pcm) // frame
    return np.array(
        [vad.is_speech(raw[k * step : (k + 1) * step], RATE_HZ) for k in range(n)], dtype=bool
    )


@dataclass(frozen=True, slots=True)
class Utterance:
    """A stretch of speech cut from the stream, for the recogniser."""

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
        """Forgets what it has heard (its recurrent state, context and any part-window);
        `probability` is 0 again."""
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
    """The state machine from chunks to utterances. Feed it every chunk, in order.

    Silero sleeps while webrtcvad hears nothing. When webrtcvad fires, Silero wakes and first
    hears the pre-roll, since it judges speech far worse without the moments before it.
    """

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
        self._gate_was_open = False
        self._silero_awake = False
        self._quiet_ms = 0

    @property
    def in_speech(self) -> bool:
        """An utterance is in progress: speech has started and its hangover has not run out."""
        return self._in_speech

    @property
    def silence_ms(self) -> int:
        """Silence since the last speech frame of the utterance in progress."""
        return self._silence_ms if self._in_speech else 0

    @property
    def speech_ms(self) -> int:
        """How much of the utterance in progress was speech (0 when none is in progress)."""
        return self._speech_ms if self._in_speech else 0

    def audio_so_far(self) -> np.ndarray:
        """The utterance in progress, pre-roll included."""
        return np.concatenate(self._frames) if self._frames else np.zeros(0, np.int16)

    def _probability(self, samples: np.ndarray, gate_open: bool) -> float:
        if gate_open:
            self._quiet_ms = 0
            if not self._silero_awake:
                self._silero_awake = True
                self.silero.reset()
                for frame in self._pre_roll:
                    self.silero.push(frame)
        elif self._silero_awake and not self._in_speech:
            self._quiet_ms += self.chunk_ms
            if self._quiet_ms >= SILERO_SLEEP_MS:
                self._silero_awake = False
        return self.silero.push(samples) if self._silero_awake else 0.0

    def push(self, chunk: Chunk) -> Iterator[Utterance]:
        """Takes the next chunk and yields the utterance it ends, if any: after `hangover_ms` of
        silence, or at `max_utterance_s` (one with under `min_speech_ms` of speech is dropped). A
        generator: the chunk is taken only when it is iterated."""
        gate_open = self._webrtc.is_speech(chunk.samples.tobytes(), RATE_HZ)
        p = self._probability(chunk.samples, gate_open)
        threshold = self.config.silero_threshold
        if not self._in_speech:
            # Two webrtcvad frames in a row and Silero agreeing: one loud click is not speech.
            start = gate_open and self._gate_was_open and p >= threshold
            self._gate_was_open = gate_open
            if not start:
                self._pre_roll.append(chunk.samples)
                return
            self._in_speech = True
            self._frames = [*self._pre_roll, chunk.samples]
            self._pre_roll.clear()
            self._speech_ms = self.chunk_ms
            self._silence_ms = 0
            self._last_speech_end_ms = chunk.end_ms
            return
        self._frames.append(chunk.samples)
        # Below the start threshold is quiet at once: Silero stays confident ~140 ms past the
        # last phoneme even so (190 ms when the end waited for it to fall 0.15 lower, which
        # kept no command whole that the hangover does not: the same intents on every
        # end-to-end set), and its dips between words are what the hangover is for.
        if gate_open and p >= threshold:
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

    def reset(self) -> None:
        """Forget the utterance in progress and the pre-roll (mute: nothing heard is kept)."""
        self._frames = []
        self._pre_roll.clear()
        self._in_speech = False
        self._gate_was_open = False
        self._silero_awake = False

    def flush(self) -> Iterator[Utterance]:
        """End of stream, or the listener knows the sentence is over: whatever is being
        spoken ends here, before the hangover does."""
        if self._in_speech:
            yield from self._finish()

    def _finish(self) -> Iterator[Utterance]:
        frames, speech_ms, end_ms = self._frames, self._speech_ms, self._last_speech_end_ms
        self._frames = []
        self._in_speech = False
        self._gate_was_open = False
        if speech_ms < self.config.min_speech_ms:
            log.debug("dropped %d ms burst: shorter than vad.min_speech_ms", speech_ms)
            return
        yield Utterance(np.concatenate(frames), end_ms, speech_ms)
