"""Who is speaking: Resemblyzer's GE2E voice encoder, run by onnxruntime.

The model (`ge2e-voice` in the manifest: Resemblyzer 0.1.4's `pretrained.pt`, Apache-2.0) is a
3-layer LSTM of 256 over 40 mel bands; the last layer's final state goes through a 256x256
linear layer and a ReLU and is L2-normalised. An utterance is cut into partial utterances of
160 frames (1.6 s) overlapping like Resemblyzer's (1.3 a second, the last kept if it is at
least 3/4 full); their embeddings are averaged and normalised again. Two voices are compared by
the cosine of their embeddings.

The weights are read from the `.pt` file by `torchfile` (no torch, no arbitrary pickle code)
and written into an in-memory ONNX graph (`onnx_graph`) that onnxruntime runs, the partials side
by side as one batch: several times faster than a numpy loop over the time steps.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pendant.core.errors import AudioFormatError, ModelError
from pendant.core.onnx_session import session
from pendant.ears.speaker import features, onnx_graph
from pendant.ears.speaker.torchfile import load_state_dict

EMBEDDING_SIZE = 256
HIDDEN = 256
LAYERS = 3
PARTIAL_FRAMES = 160
PARTIALS_PER_S = 1.3
MIN_COVERAGE = 0.75
MIN_VOICED_S = 0.3
"""Less speech than this (after trimming silences) is too little to judge: embed gives None."""

DEFAULT_THRESHOLD = 0.70
"""Cosine similarity to an enrolled voice from which an utterance is taken as that voice's: the
equal-error point (0.701) of tools/measure_speaker.py's calibration voices in noisy rooms
(enrolled and tried on reverberant copies with pink noise or babble at 5-20 dB SNR). Where they
accept only 1 % of other voices (0.739) they reject 13 % of their own in noise. It still
rejects half to two thirds of a real speaker recorded in room noise: see speaker/README.md."""


def similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two embeddings (1: the same direction)."""
    na = float(np.linalg.norm(a))
    nb = float(np.linalg.norm(b))
    if na == 0 or nb == 0:
        return 0.0
    return float(np.dot(a, b) / (na * nb))


def _as_float(samples: np.ndarray) -> np.ndarray:
    """Mono int16 or float32 audio as float32 in [-1, 1]; AudioFormatError otherwise."""
    if not isinstance(samples, np.ndarray):
        raise AudioFormatError(f"speaker audio must be a numpy array, not {type(samples).__name__}")
    if samples.ndim != 1:
        raise AudioFormatError(
            f"speaker audio must be mono (one dimension), not of shape {samples.shape}"
        )
    if samples.dtype == np.int16:
        return samples.astype(np.float32) / 32768.0
    if samples.dtype == np.float32:
        if not np.all(np.isfinite(samples)):
            raise AudioFormatError("speaker audio holds NaN or infinite samples")
        return samples
    raise AudioFormatError(f"speaker audio must be int16 or float32, not {samples.dtype}")


def partial_slices(n_frames: int) -> list[slice]:
    """Resemblyzer's partial utterances over `n_frames` mel frames (they may run past the end:
    the caller pads with zeros)."""
    step = round(features.RATE_HZ / PARTIALS_PER_S / features.HOP)
    starts = range(0, max(1, n_frames - PARTIAL_FRAMES + step + 1), step)
    slices = [slice(i, i + PARTIAL_FRAMES) for i in starts]
    last = slices[-1]
    coverage = (n_frames - last.start) / PARTIAL_FRAMES
    if coverage < MIN_COVERAGE and len(slices) > 1:
        slices.pop()
    return slices


class VoiceEncoder:
    """The GE2E encoder, ready to embed utterances (one onnxruntime thread)."""

    def __init__(self, state: dict[str, np.ndarray], name: str = "ge2e-voice") -> None:
        try:
            for layer in range(LAYERS):
                n_in = features.N_MELS if layer == 0 else HIDDEN
                for key, shape in (
                    (f"lstm.weight_ih_l{layer}", (4 * HIDDEN, n_in)),
                    (f"lstm.weight_hh_l{layer}", (4 * HIDDEN, HIDDEN)),
                    (f"lstm.bias_ih_l{layer}", (4 * HIDDEN,)),
                    (f"lstm.bias_hh_l{layer}", (4 * HIDDEN,)),
                ):
                    if state[key].shape != shape:
                        raise ValueError(f"{key} is {state[key].shape}, not {shape}")
            if state["linear.weight"].shape != (EMBEDDING_SIZE, HIDDEN):
                raise ValueError(f"linear.weight is {state['linear.weight'].shape}")
            model = onnx_graph.encoder_model(state, LAYERS)
        except KeyError as exc:
            raise ModelError(f"{name}: its weights lack {exc.args[0]}") from None
        except ValueError as exc:
            raise ModelError(f"{name}: its weights do not fit the encoder: {exc}") from None
        self._session = session(model, name)

    @classmethod
    def load(cls, path: Path) -> VoiceEncoder:
        """The encoder from Resemblyzer's `pretrained.pt` at `path`; ModelError (one line) if it
        is missing, corrupt or not a plain state dict."""
        if not path.is_file():
            raise ModelError(
                f"voice encoder model {path} is missing: run `make models` "
                "(or `python -m pendant.setup.fetch_models fetch ge2e-voice`)"
            )
        return cls(load_state_dict(path), path.name)

    def embed_mels(self, mels: np.ndarray) -> np.ndarray:
        """L2-normalised embeddings (batch, 256) of a batch of mel partials (batch, frames, 40)."""
        x = np.ascontiguousarray(mels.transpose(1, 0, 2), dtype=np.float32)
        (raw,) = self._session.run([onnx_graph.OUTPUT], {onnx_graph.INPUT: x})
        norms = np.linalg.norm(raw, axis=1, keepdims=True)
        return raw / np.maximum(norms, 1e-12)

    def embed(self, samples: np.ndarray, rate: int = features.RATE_HZ) -> np.ndarray | None:
        """The voice of one mono utterance (int16, or float32 in [-1, 1]) as an L2-normalised
        float32 (256,) vector; None when it holds too little speech to judge.

        AudioFormatError (one line) for audio of another shape, type or rate."""
        if rate != features.RATE_HZ:
            raise AudioFormatError(f"speaker audio must be {features.RATE_HZ} Hz, not {rate}")
        wav = _as_float(samples)
        if len(wav) == 0:
            return None
        wav = features.normalise_volume(wav)
        wav, voiced_s = features.trim_silences(wav)
        if voiced_s < MIN_VOICED_S:
            return None
        slices = partial_slices(1 + len(wav) // features.HOP)
        # Pad the audio (not the frames) to the last partial's end, as Resemblyzer does.
        needed = slices[-1].stop * features.HOP
        if needed > len(wav):
            wav = np.pad(wav, (0, needed - len(wav)))
        mel = features.mel_spectrogram(wav)
        partials = np.stack([mel[s] for s in slices])
        embeds = self.embed_mels(partials)
        mean = embeds.mean(axis=0)
        return (mean / np.linalg.norm(mean)).astype(np.float32)
