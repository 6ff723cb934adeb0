"""Grammar-constrained recognition with pocketsphinx: the default, small enough for a Zero 2 W.

The home's closed set (pendant.ears.understand.grammar) becomes a pocketsphinx finite-state
grammar, so the decoder can only ever output a sentence the NLU understands. Settings
measured on the test recordings (shared/testdata/speech-en): the default beams prune the
right path away in noisy audio; wide beams plus a Viterbi-only search (no bestpath lattice
rescoring) fixed most errors while staying well under a second per utterance.

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

from pendant.core.errors import BackendUnavailable
from pendant.ears.asr import Transcription
from pendant.ears.asr.pronounce import dictionary_text, pronounce

if TYPE_CHECKING:
    from pendant.core.config import Config
    from pendant.ears.understand.grammar import Grammar

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
# off logistically past it. Measured with tools/measure_asr.py on speech-en and the
# espeak-ng set (2026-12-04, the sentence re-aligned alone): commands heard right reach at
# most 0.163 (utterance) and 0.268 (words); other speech at least 0.14 / 0.205 but then
# always outside the core, noise and silence >= 0.86 on the words.
UTT_GAP_REF = 0.17
WORD_GAP_REF = 0.28
SLOPE = 0.1
_GRAMMAR = "closed_set"
# The prior of the sentences only the full closed set holds, against 1 for the core (see
# `_fsg`). Measured on speech-en and the espeak-ng set: 0.1 and 0.001 still let "eight
# minutes" become "eighty eight minutes"; 1e-11 kept every command there in the core.
EXTENDED_PRIOR = 1e-11
# A sentence outside the core must fit the sounds this much better (its score gaps are
# measured against references this much smaller): every non-command of the espeak-ng set
# and of speech-en was snapped to a sentence outside the core.
EXTENDED_STRICTNESS = 0.7
_PHONES = "phone_loop"


def confidence(utt_gap: float, word_gap: float, in_core: bool) -> float:
    """0.5 where either gap reaches its reference (smaller outside the core), logistic."""
    badness = max(utt_gap / UTT_GAP_REF, word_gap / WORD_GAP_REF)
    if not in_core:
        badness /= EXTENDED_STRICTNESS
    return 1.0 / (1.0 + math.exp(min((badness - 1.0) / SLOPE, 700.0)))


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
        prons = pronounce(grammar.words, model / "cmudict-en-us.dict")
        self.guessed = prons.guessed
        # The decoder reads its dictionary from a file: only words and phones, no audio,
        # and removed as soon as it is loaded.
        fd, dict_path = tempfile.mkstemp(prefix="pendant-", suffix=".dict")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(dictionary_text(prons.phones))
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
        """The word graph as an FSG, uniform over each state's exits. With a core set, the
        FSG is the union of both graphs, the full one entered with EXTENDED_PRIOR: a
        sentence only the full graph holds must fit the sounds that much better. An FSG
        has one final state, reached from the graphs' finals by null arcs."""
        graphs = [self.grammar.graph]
        priors = [1.0]
        if self.grammar.core is not None and self.grammar.core.finals:
            graphs, priors = [self.grammar.core, self.grammar.graph], [1.0, EXTENDED_PRIOR]
        start = 0
        offset = 1
        final = 1 + sum(g.n_states for g in graphs)
        transitions: list[tuple[int, int, float] | tuple[int, int, float, str]] = []
        # One int object per state and one float per state's exits, shared by its arcs: the
        # list is at the ears' memory peak, beside the decoder's own FSG.
        states = list(range(final + 1))
        for graph, prior in zip(graphs, priors, strict=True):
            transitions.append((start, states[offset + graph.start], prior))
            # Each state's exits in turn (the graph's arcs come grouped by state), then the
            # finals' null arcs to the one final state.
            degree = [0] * graph.n_states
            for src, _, _ in graph.arcs:
                degree[src] += 1
            for f in graph.finals:
                degree[f] += 1
            p = [1.0 / d if d else 0.0 for d in degree]
            ended: set[int] = set()
            for i, (src, dst, word) in enumerate(graph.arcs):
                a = states[src + offset]
                transitions.append((a, states[dst + offset], p[src], word))
                last = i + 1 == len(graph.arcs) or graph.arcs[i + 1][0] != src
                if last and src in graph.finals:
                    transitions.append((a, final, p[src]))
                    ended.add(src)
            for f in graph.finals:
                if f not in ended:
                    transitions.append((states[f + offset], final, p[f]))
            offset += graph.n_states
        return self._decoder.create_fsg(_GRAMMAR, start, final, transitions)

    def _decode(self, search: str | None, pcm: bytes) -> tuple[str, list[_Seg], int]:
        """One pass of `search` (None: the active one): (hypothesis text, segments, frames)."""
        d = self._decoder
        if search is not None:
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

    def _align(self, text: str, pcm: bytes) -> list[_Seg]:
        """The segments of `text` alone (pocketsphinx's own alignment search). The closed
        set's own segments carry part of its transition weights, so their scores, and the
        confidence, would shift with how big the home's grammar is; these do not."""
        self._decoder.set_align_text(text)  # also makes alignment the active search
        return self._decode(None, pcm)[1]

    def score(self, audio: np.ndarray) -> tuple[str, float, float]:
        """The grammar's best sentence and two score gaps to the phone loop, per 100 frames:
        over the whole utterance (other speech: the words cannot follow the sounds) and
        over the frames the sentence's words cover (noise: the loop calls it silence)."""
        pcm = np.ascontiguousarray(audio, dtype="<i2").tobytes()
        text, _, frames = self._decode(_GRAMMAR, pcm)
        if not text or frames == 0:
            return "", math.inf, math.inf
        words = self._align(text, pcm)
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
        """The closed-set sentence `audio` (16 kHz mono int16) most likely was, with one confidence
        for either mode and no rivals; None under a tenth of a second of audio or when the grammar
        matches nothing. Blocking."""
        if audio.size < SAMPLE_RATE // 10:
            return None
        text, utt_gap, word_gap = self.score(audio)
        if not text:
            return None
        words = text.split()
        score = confidence(utt_gap, word_gap, self.grammar.in_core(words))
        return Transcription(text=" ".join(words), confidence=round(score, 4))

    def close(self) -> None:
        """Drops the decoder; the recogniser is not used after it."""
        self._decoder = None  # type: ignore[assignment]
