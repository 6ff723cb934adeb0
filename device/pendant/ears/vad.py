"""Cutting a stream of chunks into utterances.

webrtcvad is the cheap first gate (microseconds a frame); Silero, run in numpy, only looks at
frames the gate let through, so a quiet room costs almost nothing. An utterance keeps
`pre_roll_ms` of audio from before speech started and ends after `hangover_ms` of silence.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import webrtcvad

from pendant.core.config import VadConfig
from pendant.core.errors import ModelError
from pendant.core.onnx_proto import initializers
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


class SileroNet:
    """Silero VAD v5's 16 kHz network (its ONNX file's weights) in numpy: a window of 512
    samples with the 64 before it in, a speech probability and the next recurrent state out.

    Seven small matrix products: onnxruntime spent more on each call's own work (the graph's
    shape arithmetic and If nodes, binding the inputs) than on them, about 140 µs a window here
    against 80, and it was the only reason the ears' service loaded onnxruntime (the recogniser
    runs in its own process). onnxruntime's probabilities to 1e-4 and its state to 1e-3 of its
    size (`tests/unit/ears/test_vad.py`).
    """

    def __init__(self, model_path: Path) -> None:
        try:
            w = initializers(model_path.read_bytes())
            basis = w["model.stft.forward_basis_buffer"][:, 0, :]
            # A convolution as one product: its kernel laid out as (out, tap * in).
            self._convs = []
            for i, stride in enumerate((1, 2, 2, 1)):
                kernel = w[f"model.encoder.{i}.reparam_conv.weight"]
                self._convs.append((
                    np.ascontiguousarray(kernel.transpose(0, 2, 1).reshape(len(kernel), -1)),
                    w[f"model.encoder.{i}.reparam_conv.bias"][:, None].copy(),
                    stride,
                ))  # fmt: skip
            gates_in = (w["model.decoder.rnn.weight_ih"], w["model.decoder.rnn.weight_hh"])
            self._lstm = np.ascontiguousarray(np.concatenate(gates_in, axis=1))
            self._lstm_bias = w["model.decoder.rnn.bias_ih"] + w["model.decoder.rnn.bias_hh"]
            self._out = w["model.decoder.decoder.2.weight"][0, :, 0].copy()
            self._out_bias = float(w["model.decoder.decoder.2.bias"][0])
        except (OSError, ValueError, KeyError, IndexError) as exc:
            raise ModelError(
                f"{model_path}: not Silero VAD's 16 kHz model ({exc}); fetch it again with "
                "`pendant models fetch silero-vad`"
            ) from None
        self._basis = np.ascontiguousarray(basis.T)

    def run(self, x: np.ndarray, state: np.ndarray) -> tuple[float, np.ndarray]:
        """`x`: 576 float32 samples (64 of context, then the window); `state`: (2, 128), the
        LSTM's h and c. The speech probability and the new state."""
        # The STFT: reflect-padded by 64 on the right, four frames of 256 a hop of 128 apart.
        padded = np.concatenate((x, x[-2:-66:-1])).reshape(5, 128)
        spectrum = np.concatenate((padded[:-1], padded[1:]), axis=1) @ self._basis
        y = np.sqrt(spectrum[:, :129] ** 2 + spectrum[:, 129:] ** 2).T
        for kernel, bias, stride in self._convs:  # kernel 3, padding 1
            steps = (y.shape[1] - 1) // stride + 1
            z = np.zeros((len(y), y.shape[1] + 2), np.float32)
            z[:, 1:-1] = y
            taps = [z[:, k : k + stride * (steps - 1) + 1 : stride] for k in range(3)]
            y = np.maximum(kernel @ np.concatenate(taps) + bias, 0)
        h, c = state
        gates = self._lstm @ np.concatenate((y[:, 0], h)) + self._lstm_bias
        # The logistic as tanh: the same numbers, and no overflow on a loud frame's gates.
        i, f, _, o = (0.5 * np.tanh(0.5 * gates) + 0.5).reshape(4, -1)
        c = f * c + i * np.tanh(gates[256:384])
        h = o * np.tanh(c)
        logit = float(self._out @ np.maximum(h, 0)) + self._out_bias
        return 0.5 * math.tanh(0.5 * logit) + 0.5, np.stack((h, c))


class SileroVad:
    """Silero VAD (v5, 16 kHz) on 32 ms windows, with its recurrent state."""

    def __init__(self, model_path: Path) -> None:
        self._net = SileroNet(model_path)
        self._pending = np.zeros(0, dtype=np.float32)
        self.reset()

    def reset(self) -> None:
        """Forgets what it has heard (its recurrent state, context and any part-window);
        `probability` is 0 again."""
        self._state = np.zeros((2, 128), dtype=np.float32)
        self._context = np.zeros(SILERO_CONTEXT, dtype=np.float32)
        self._pending = np.zeros(0, dtype=np.float32)
        self.probability = 0.0

    def push(self, samples: np.ndarray) -> float:
        """Feed int16 samples; returns the latest speech probability."""
        self._pending = np.concatenate((self._pending, samples.astype(np.float32) / 32768.0))
        while len(self._pending) >= SILERO_WINDOW:
            window, self._pending = self._pending[:SILERO_WINDOW], self._pending[SILERO_WINDOW:]
            x = np.concatenate((self._context, window))
            self.probability, self._state = self._net.run(x, self._state)
            self._context = window[-SILERO_CONTEXT:]
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
