"""A second opinion on the sentence heard: the sentences one word away that the sounds fit
nearly as well.

A grammar-constrained search always returns a sentence, and where two sentences of the closed
set differ by one short word ("turn on" / "turn off", "fifteen" / "fifty", "lock" / "unlock")
the confidence says how well the winner fits, not whether its neighbour fits as well. Here
each word of the winner is put against every word the closed set allows in its place, on
the frames from the start of the word before it to the end of the word after it (so both
explain the same sounds, the neighbours spelt as the winner's path spelt them); a rival
within `RIVAL_MARGIN` nats is reported. Whether it matters (a different intent or slot) is the
NLU's call: `pendant.ears.understand.nlu.IntentParser.contested`.

Measured with `tools/measure_asr.py` at asr.min_confidence 0.5 (2026-12-05, demo home, before
the search took hama's word break for a blank): on the tune half of speech-en, the espeak-ng
set and the Kokoro commands, wrong actions 9 -> 4 of 389 commands, right 271 -> 258; the
margin is the smallest that brings that half to 1 % (README, "Recognisers").
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

NEG = np.float32(-1e30)
RIVAL_MARGIN = 3.0
"""Nats of log-probability a rival may fall short of the winner and still be reported."""


def best_alignments(lp: np.ndarray, blank: int, sequences: Sequence[Sequence[int]]) -> np.ndarray:
    """Per token sequence, the log-prob of its best CTC alignment to all of `lp`'s frames
    (frames x columns), blanks allowed before, between and after its tokens."""
    count = len(sequences)
    width = 2 * max(len(s) for s in sequences) + 1
    labels = np.full((count, width), blank, dtype=np.intp)
    skip = np.zeros((count, width), dtype=bool)  # may jump over the blank before it
    valid = np.zeros((count, width), dtype=bool)
    last = np.zeros(count, dtype=np.intp)
    for c, seq in enumerate(sequences):
        for k, token in enumerate(seq):
            labels[c, 2 * k + 1] = token
            skip[c, 2 * k + 1] = k > 0 and seq[k - 1] != token
        valid[c, : 2 * len(seq) + 1] = True
        last[c] = 2 * len(seq)
    alpha = np.full((count, width), NEG, dtype=np.float32)
    alpha[:, 0] = lp[0, blank]
    alpha[:, 1] = np.where(valid[:, 1], lp[0, labels[:, 1]], NEG)
    pad = np.full((count, 2), NEG, dtype=np.float32)
    for t in range(1, lp.shape[0]):
        shifted = np.concatenate([pad, alpha], axis=1)
        jump = np.where(skip, shifted[:, :width], NEG)
        alpha = np.maximum(np.maximum(alpha, shifted[:, 1 : width + 1]), jump)
        alpha = np.where(valid, alpha + lp[t][labels], NEG)
    rows = np.arange(count)
    return np.maximum(alpha[rows, last], alpha[rows, np.maximum(last - 1, 0)])


def _joined(*words: Sequence[int]) -> list[int]:
    """Words' tokens end to end. The search lets a word begin with the token the word before
    it ended with, no blank between (one spike for both): so do the alignments here."""
    joined: list[int] = []
    for tokens in words:
        start = 1 if joined and tokens and joined[-1] == tokens[0] else 0
        joined += tokens[start:]
    return joined


def close_rivals(
    lp: np.ndarray,
    blank: int,
    path: Sequence[tuple[str, list[int], int, int]],
    options: Sequence[Sequence[str]],
    spell: dict[str, list[list[int]]],
    penalty: Callable[[list[str]], float],
) -> list[str]:
    """Sentences one word away from the one on `path` that fit `lp` within `RIVAL_MARGIN`,
    closest first. `path`: per word, (word, the tokens it was spelt with, its first and last
    frame); `options`: per word, the words that may replace it (`Grammar.substitutions`);
    `penalty(words)`: what the search would have charged a rival sentence more than the
    winner (the full closed set's prior)."""
    words = [word for word, _, _, _ in path]
    found: list[tuple[float, str]] = []
    for i, (word, tokens, _, _) in enumerate(path):
        if not options[i]:
            continue
        before = path[i - 1][1] if i > 0 else []
        after = path[i + 1][1] if i + 1 < len(path) else []
        first = path[i - 1][2] if i > 0 else 0
        end = path[i + 1][3] + 1 if i + 1 < len(path) else lp.shape[0]
        owners = [word]
        sequences = [_joined(before, tokens, after)]
        for other in options[i]:
            for variant in spell[other]:
                owners.append(other)
                sequences.append(_joined(before, variant, after))
        scores = best_alignments(lp[first:end], blank, sequences)
        own = float(scores[0])
        if own < NEG / 2:  # the window cannot hold the winner's word: no opinion to give
            continue
        best: dict[str, float] = {}
        for other, score in zip(owners[1:], scores[1:], strict=True):
            best[other] = max(best.get(other, float(NEG)), float(score))
        for other, score in best.items():
            rival = [*words[:i], other, *words[i + 1 :]]
            margin = own - score + penalty(rival)
            if margin < RIVAL_MARGIN:
                found.append((margin, " ".join(rival)))
    return [sentence for _, sentence in sorted(found)]
