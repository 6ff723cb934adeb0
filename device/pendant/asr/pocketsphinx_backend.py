"""Grammar-constrained recognition with pocketsphinx: the default, small enough for a Zero 2 W.

The home's closed set (pendant.grammar) becomes a pocketsphinx finite-state grammar, so the
decoder can only ever output a sentence the NLU understands. Settings measured on the test
recordings (shared/testdata/speech-en): the default beams prune the right path away in
noisy audio; wide beams plus a Viterbi-only search (no bestpath lattice rescoring) fixed most
errors while staying well under a second per utterance.

Confidence: a grammar can only say *which* sentence fits best, not whether speech was a
command at all. So the same audio is also decoded with an unconstrained phone loop (what
the sounds most likely were, with no words imposed); the per-frame gap between the two
acoustic scores is small for real commands and large for other speech and noise, and is
mapped to [0, 1] with a logistic curve. The phone loop roughly doubles decoding time; it is
what lets conversation mode drop speech that was not meant for the pendant.
"""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from pendant.asr import Transcription
from pendant.errors import BackendUnavailable
from pendant.pronounce import dictionary_text, pronunciations

if TYPE_CHECKING:
    from pendant.config import Config
    from pendant.grammar import Grammar

SAMPLE_RATE = 16_000
# Viterbi search only: the bestpath pass rescoring the lattice lost correct hypotheses.
DECODER_SETTINGS: dict[str, Any] = {
    "bestpath": False,
    "beam": 1e-80,
    "pbeam": 1e-80,
    "wbeam": 1e-60,
    "maxhmmpf": -1,
    # Stretches of digital silence (a gated or just-opened mic, a simulated one) put log(0)
    # into the features and flipped whole sentences; half a bit of noise, seeded so runs
    # repeat, cost nothing in accuracy on the test sets.
    "dither": True,
    "seed": 1,
}
# Confidence is 0.5 where either score gap (see `score`) reaches its reference, and falls
# off logistically past it. Measured with tools/measure_asr.py on the test recordings: real
# commands reach at most ~0.25 (utterance) and ~0.33 (words); other speech >= 0.33 / 0.48,
# noise and tones >= 0.66 on the words.
UTT_GAP_REF = 0.29
WORD_GAP_REF = 0.45
SLOPE = 0.1
_GRAMMAR = "closed_set"
_PHONES = "phone_loop"


class _Seg(NamedTuple):
    word: str
    start: int
    end: int
    score: float


def _is_filler(word: str) -> bool:
    return word.startswith(("<", "[", "+")) or word == "(NULL)"


def _model_dir() -> Path:
    try:
        import pocketsphinx
    except ImportError as exc:  # reported by create_recognizer as a missing extra
        raise BackendUnavailable("pocketsphinx is not installed") from exc
    return Path(pocketsphinx.get_model_path()) / "en-us"


class PocketsphinxRecognizer:
    """`transcribe(audio)` -> the closed-set sentence heard, with a confidence, or None."""

    def __init__(self, config: Config, grammar: Grammar, **settings: Any) -> None:
        from pocketsphinx import Decoder

        self.grammar = grammar
        self.min_confidence = config.asr.min_confidence
        model = _model_dir()
        prons = pronunciations(grammar.words, model / "cmudict-en-us.dict")
        # The decoder reads its dictionary from a file: only words and phones, no audio,
        # and removed as soon as it is loaded.
        fd, dict_path = tempfile.mkstemp(prefix="pendant-", suffix=".dict")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(dictionary_text(prons))
            self._decoder = Decoder(
                hmm=str(model / "en-us"),
                dict=dict_path,
                lm=None,
                samprate=SAMPLE_RATE,
                loglevel="FATAL",
                logfn=os.devnull,
                **{**DECODER_SETTINGS, **settings},
            )
        finally:
            os.unlink(dict_path)
        self._decoder.add_fsg(_GRAMMAR, self._fsg())
        self._decoder.add_allphone_file(_PHONES, str(model / "en-us-phone.lm.bin"))
        self._log_base = self._decoder.logmath.log_to_ln(1)

    def _fsg(self) -> Any:
        """The word graph as an FSG: uniform probabilities over each state's exits, and one
        extra final state reached by null arcs, since an FSG has a single final state."""
        graph = self.grammar.graph
        final = graph.n_states
        exits: dict[int, list[tuple[int, str | None]]] = {}
        for src, dst, word in graph.arcs:
            exits.setdefault(src, []).append((dst, word))
        for f in graph.finals:
            exits.setdefault(f, []).append((final, None))
        transitions: list[tuple[int, int, float] | tuple[int, int, float, str]] = []
        for src, outs in exits.items():
            p = 1.0 / len(outs)
            for dst, word in outs:
                transitions.append((src, dst, p) if word is None else (src, dst, p, word))
        return self._decoder.create_fsg(_GRAMMAR, graph.start, final, transitions)

    def _decode(self, search: str, pcm: bytes) -> tuple[str, list[_Seg], int]:
        """One pass: (hypothesis text, segments, frames)."""
        d = self._decoder
        d.activate_search(search)
        d.start_utt()
        d.process_raw(pcm, full_utt=True)
        d.end_utt()
        hyp = d.hyp()
        if hyp is None:
            return "", [], d.n_frames()
        # Acoustic scores only: grammar and phone-LM weights differ between the searches.
        # pocketsphinx reports them exponentiated and relative to the best senone per frame.
        segs = [
            _Seg(s.word, s.start_frame, s.end_frame, math.log(max(s.ascore, 1e-300)))
            for s in d.seg()
        ]
        return hyp.hypstr, segs, d.n_frames()

    def score(self, audio: np.ndarray) -> tuple[str, float, float]:
        """The grammar's best sentence and two score gaps to the phone loop, per 100 frames:
        over the whole utterance (other speech: the words cannot follow the sounds) and
        over the frames the sentence's words cover (noise: the loop calls it silence)."""
        pcm = np.ascontiguousarray(audio, dtype="<i2").tobytes()
        text, words, frames = self._decode(_GRAMMAR, pcm)
        if not text or frames == 0:
            return "", math.inf, math.inf
        _, phones, _ = self._decode(_PHONES, pcm)
        per_frame = np.zeros(frames + 1)
        for seg in phones:
            per_frame[seg.start : seg.end + 1] = seg.score / (seg.end - seg.start + 1)
        utt_gap = (sum(s.score for s in phones) - sum(s.score for s in words)) / frames
        spoken = [s for s in words if not _is_filler(s.word)]
        n_spoken = sum(s.end - s.start + 1 for s in spoken)
        loop = sum(float(per_frame[s.start : s.end + 1].sum()) for s in spoken)
        word_gap = (loop - sum(s.score for s in spoken)) / max(n_spoken, 1)
        return text, 100 * utt_gap, 100 * word_gap

    def transcribe(self, audio: np.ndarray) -> Transcription | None:
        if audio.size < SAMPLE_RATE // 10:
            return None
        text, utt_gap, word_gap = self.score(audio)
        if not text:
            return None
        badness = max(utt_gap / UTT_GAP_REF, word_gap / WORD_GAP_REF)
        confidence = 1.0 / (1.0 + math.exp(min((badness - 1.0) / SLOPE, 700.0)))
        return Transcription(text=" ".join(text.split()), confidence=round(confidence, 4))

    def close(self) -> None:
        self._decoder = None  # type: ignore[assignment]
