"""Open-vocabulary Whisper (faster-whisper, CTranslate2 int8), snapped to the home's closed set.

For a Pi 5 or bigger: Whisper hears free text, then `Grammar.snap` moves it to the nearest
sentence the home can mean, so what comes out is the same closed set pocketsphinx produces and
NLU never sees text outside it. Weak matches are dropped rather than guessed.

    >>> from pendant.ears.asr.whisper_backend import WhisperRecognizer
    >>> rec = WhisperRecognizer(config, build_grammar(config))   # doctest: +SKIP
    >>> rec.transcribe(audio_int16_16k)                          # doctest: +SKIP
    Transcription(text='turn off the kitchen lights', confidence=0.91)

The model comes only from the verified cache (`python -m pendant.setup.fetch_models fetch
whisper-base`);
faster-whisper is imported lazily so the package imports where it is not installed.
"""

from __future__ import annotations

import math
import os
from typing import TYPE_CHECKING, Any

import numpy as np

from pendant.core.errors import AudioFormatError, BackendUnavailable
from pendant.core.model_cache import model_path
from pendant.core.names import normalize
from pendant.ears.asr import Transcription

if TYPE_CHECKING:
    from pendant.core.config import Config
    from pendant.ears.understand.grammar import Grammar

MODEL_NAME = "whisper-base"
SAMPLE_RATE = 16_000

SNAP_THRESHOLD = 0.6
"""Least word similarity (1 - word edits / length) to accept a snapped sentence.

0.6 accepts one misheard word in three ('cancel all tires' -> 'cancel all timers', 0.67) and
rejects two in three and anything shorter that is half wrong: on the shared recordings every
non-command (oov_*) snaps at 0.25 or less, while every correct snap is 0.67 or more.
"""

BEAM_SIZE = 2
"""Measured on the shared recordings: beam 2 got one more sentence right than greedy (48 vs 47
of 53) for about the same time per utterance; beam 5 was no better and slower."""

MAX_NEW_TOKENS = 48
"""A command is at most ~20 words (~30 tokens); the cap bounds the time a hallucination loop
('Thanks for watching! Thanks for...') can take on noise."""

MAX_THREADS = 4
"""CTranslate2 gains little past four threads on these small models, and the Pi 5 has four."""

NO_SPEECH_PROB = 0.6
NO_SPEECH_LOGPROB = -1.0
"""Whisper's own silence rule: no speech if no_speech_prob > 0.6 and avg_logprob < -1."""

WARMUP_S = 1.0

QUESTION_WINDOW_S = 15
"""Seconds of audio the encoder reads for a question (`pendant.ears.asr.open_vocab`), at
least: the utterance padded with silence. Whisper pads every input to 30 s, and the encoder's
cost is the window's, not the speech's. Measured here (Whisper base, beam 2, no prompt), 30 s
→ 15 s: 0.9 → 0.36 s an utterance; word errors on `../shared/testdata/speech-en` 10 → 11 of
273 (its 16 real recordings 6 → 6 of 62), on 100 everyday questions in four espeak-ng voices
157 → 147 of 764 (these three sets were looked at while choosing), and on 100 held-out ones in
four other voices 155 → 132 (`tools/bench_escalate.py`). Padded with zeros in the
features instead (as faster-whisper pads), 15 s made 14 of 273 errors, 9 of 62 on the real
recordings ("pause" → "I can't pause"), and 10 s made 55; with silence 10 s made 15 of 273.
The closed-set recogniser keeps the whole 30 s, decoded as faster-whisper decodes it: its
accuracy on short commands is what the bake-off measured."""

MARGIN_S = 1.0
"""Past the window, the window is the audio and this much silence."""

FULL_WINDOW_S = 30
_HOP = 160  # samples a mel frame: 10 ms
_FRAMES_PER_S = SAMPLE_RATE // _HOP


class Whisper:
    """Whisper base (int8 on CPU) from the model cache, warmed up: what both the closed-set
    recogniser (`WhisperRecognizer`) and the open-vocabulary transcriber
    (`pendant.ears.asr.open_vocab`) decode with, so a child that needs both loads it once.

    It calls CTranslate2's `generate` itself, not faster-whisper's `transcribe`, to give the
    encoder a window shorter than 30 s (`QUESTION_WINDOW_S`); faster-whisper keeps the model,
    the mel features and the tokenizer."""

    def __init__(self, config: Config, *, cpu_threads: int | None = None) -> None:
        try:
            from faster_whisper import WhisperModel
            from faster_whisper.tokenizer import Tokenizer
            from faster_whisper.transcribe import get_suppressed_tokens
        except ImportError as exc:
            raise BackendUnavailable(
                f"Whisper needs faster-whisper ({exc.name} missing): pip install 'pendant[whisper]'"
            ) from None
        # Raises ModelError (one line naming `make models`) when absent or corrupt.
        model_dir = model_path(config, MODEL_NAME)
        threads = cpu_threads or min(MAX_THREADS, os.cpu_count() or 1)
        self._model: Any = WhisperModel(
            str(model_dir),
            device="cpu",
            compute_type="int8",
            cpu_threads=threads,
            num_workers=1,
            local_files_only=True,  # never reach a model hub, even if the directory were wrong
        )
        self._tokenizer: Any = Tokenizer(
            self._model.hf_tokenizer,
            self._model.model.is_multilingual,
            task="transcribe",
            language="en",
        )
        # Whisper's default: no blank at the start, none of its non-speech symbols.
        self._suppress = list(get_suppressed_tokens(self._tokenizer, [-1]))
        # The first call allocates CTranslate2's buffers and takes several times longer; pay
        # that at start-up, not on the wearer's first command.
        self.decode(np.zeros(int(WARMUP_S * SAMPLE_RATE), dtype=np.int16))

    def _features(self, audio: np.ndarray, window_s: float) -> Any:
        """The encoder's input for at most 30 s of `audio`: its mel features, in a window of
        `window_s` (or the audio and `MARGIN_S`, if longer)."""
        import ctranslate2

        samples = max(int(window_s * SAMPLE_RATE), len(audio) + int(MARGIN_S * SAMPLE_RATE))
        frames = min(FULL_WINDOW_S * _FRAMES_PER_S, samples // _HOP)
        frames += frames % 2  # the encoder halves it
        wave = audio.astype(np.float32) / 32768.0
        if frames < FULL_WINDOW_S * _FRAMES_PER_S:
            # A shorter window is padded with silence, as OpenAI's Whisper pads its 30 s: the
            # quietest the features can be. faster-whisper pads the features with zeros, a
            # murmur, which a short window takes for words ("pause" → "I can't pause").
            wave = np.pad(wave, (0, frames * _HOP - len(wave)))
        # Its last frame is the padding's (faster-whisper drops it too).
        mel = self._model.feature_extractor(wave)[:, :-1][:, :frames]
        mel = np.pad(mel, ((0, 0), (0, frames - mel.shape[-1])))
        return ctranslate2.StorageView.from_array(np.ascontiguousarray(mel[None]))

    def _prompt(self, prompt: str | None) -> list[int]:
        tok = self._tokenizer
        tokens: list[int] = []
        if prompt:
            # As faster-whisper's `initial_prompt`: the "previous text", at most half the context.
            words = tok.encode(" " + prompt.strip())[-(self._model.max_length // 2 - 1) :]
            tokens = [tok.sot_prev, *words]
        return [*tokens, *tok.sot_sequence, tok.no_timestamps]

    def decode(
        self,
        audio: np.ndarray,
        prompt: str | None = None,
        max_new_tokens: int = MAX_NEW_TOKENS,
        window_s: float = FULL_WINDOW_S,
    ) -> tuple[str, float, float]:
        """Whisper's text for `audio` (int16, 16 kHz, mono), its mean log-probability per token
        and its no-speech probability; the encoder reads `window_s` seconds (the audio padded),
        or the audio and `MARGIN_S` if that is longer, up to 30: longer audio is decoded in
        pieces, and a piece without speech left out."""
        if self._model is None:
            raise RuntimeError("Whisper is closed")
        if audio.dtype != np.int16 or audio.ndim != 1:
            raise AudioFormatError(
                f"whisper wants 1-D int16 audio at 16 kHz, got {audio.ndim}-D {audio.dtype}"
            )
        tokens = self._prompt(prompt)
        # Whisper hears 30 s at a time: a longer utterance is cut in equal pieces (not 30 s
        # and a tail of a few samples), each decoded alone.
        count = max(1, math.ceil(len(audio) / (FULL_WINDOW_S * SAMPLE_RATE)))
        pieces = [
            self._decode_piece(p, tokens, max_new_tokens, window_s)
            for p in np.array_split(audio, count)
        ]
        # A piece of silence among speech says nothing (Whisper writes "you" for it), as
        # faster-whisper skipped such segments; the utterance's no-speech figure is its speech's.
        heard = [p for p in pieces if p[2] <= NO_SPEECH_PROB] if count > 1 else pieces
        if not heard:
            return "", -math.inf, max(p[2] for p in pieces)
        decoded = sum(p[3] for p in heard)
        avg_logprob = sum(p[1] * p[3] for p in heard) / decoded
        return " ".join(p[0] for p in heard if p[0]), avg_logprob, max(p[2] for p in heard)

    def _decode_piece(
        self, audio: np.ndarray, tokens: list[int], max_new_tokens: int, window_s: float
    ) -> tuple[str, float, float, int]:
        """Text, mean log-probability, no-speech probability and weight (tokens, at least 1)
        of at most 30 s of `audio`."""
        # One temperature: fallback re-decodes at higher temperatures cost up to 3 s more and
        # produce random text, which the snap would reject anyway.
        result = self._model.model.generate(
            self._features(audio, window_s),
            [tokens],
            beam_size=BEAM_SIZE,
            max_length=len(tokens) + max_new_tokens,
            return_scores=True,
            return_no_speech_prob=True,
            suppress_blank=True,
            suppress_tokens=self._suppress,
        )[0]
        ids = result.sequences_ids[0]
        # The score is the log-probability summed over the tokens and divided by their number
        # (length penalty 1); faster-whisper's mean counts the end token too.
        avg_logprob = result.scores[0] * len(ids) / (len(ids) + 1)
        text = self._tokenizer.decode(ids).strip()
        return text, avg_logprob, float(result.no_speech_prob), max(1, len(ids))

    def close(self) -> None:
        """Drops the model; it is not used after it."""
        # Drops ~80 MB of weights now rather than whenever the garbage collector runs.
        self._model = None


def is_speech(avg_logprob: float, no_speech: float) -> bool:
    """Whisper's own silence rule, on what `Whisper.decode` returned."""
    return not (no_speech > NO_SPEECH_PROB and avg_logprob < NO_SPEECH_LOGPROB)


class WhisperRecognizer:
    """Whisper base (int8 on CPU) plus `Grammar.snap`; implements `pendant.ears.asr.Recognizer`."""

    def __init__(self, config: Config, grammar: Grammar, *, cpu_threads: int | None = None) -> None:
        self._grammar = grammar
        self.guessed: dict[str, str] = {}  # Whisper writes words; it has no pronunciations
        self.whisper: Whisper | None = Whisper(config, cpu_threads=cpu_threads)
        # Names bias Whisper towards how this home spells things ('Bed Light', not 'bad
        # light'; 'Mood Lighting', not 'blue lighting'), measured on the shared recordings.
        self._prompt = ", ".join(grammar.names) + "." if grammar.names else None

    def _decode(self, audio: np.ndarray) -> tuple[str, float, float]:
        if self.whisper is None:
            raise RuntimeError("WhisperRecognizer is closed")
        return self.whisper.decode(audio, self._prompt)

    def transcribe(self, audio: np.ndarray) -> Transcription | None:
        """The closed-set sentence in `audio` (int16, 16 kHz, mono), or None if none fits."""
        if audio.ndim == 1 and audio.size == 0:
            return None
        text, avg_logprob, no_speech = self._decode(audio)
        if not is_speech(avg_logprob, no_speech):
            return None
        snapped = self._grammar.snap(normalize(text))
        if snapped is None:
            return None
        sentence, similarity = snapped
        if similarity < SNAP_THRESHOLD:
            return None
        # Three chances to be wrong, treated as independent: the words are not the closed-set
        # sentence (similarity), Whisper doubts its own words (mean token probability), or it
        # was not speech at all (no_speech_prob). Short one-word commands come out lower,
        # which is honest: they are the ones most often misheard.
        confidence = similarity * math.exp(avg_logprob) * (1.0 - no_speech)
        return Transcription(text=sentence, confidence=round(min(1.0, max(0.0, confidence)), 3))

    def transcribe_raw(self, audio: np.ndarray) -> str:
        """Whisper's free text before snapping (diagnostics and tests; never published)."""
        return self._decode(audio)[0]

    def close(self) -> None:
        """Drops the model; the recogniser is not used after it."""
        if self.whisper is not None:
            self.whisper.close()
        self.whisper = None
