"""Grammar-constrained recognition with hama's phoneme CTC model: small and fast.

The `hama` wheel (Apache-2.0) ships a multilingual phoneme recogniser (a CTC model giving,
every 20 ms, log-probabilities over ~190 IPA tokens and a blank) for its own small engine; the
weights are run by onnxruntime here (`hama_model`: the engine is twenty times slower on an ARM
core). This backend:

1. spells every word of the closed set from the CMU dictionary in the pocketsphinx wheel
   (`pronounce`: every pronunciation it has, a few extra variants, espeak-ng for words it
   lacks), ARPAbet phones mapped to the model's tokens (`ARPABET`); a fraction of a second
   for a home's few hundred words, so nothing is cached. (The wheel's G2P model spelled them
   before: 25 ms a word, minutes on a Zero 2 W, and "area" came out Spanish-like.)
2. expands the word graph into CTC states: a prefix tree of phonemes per graph state (arcs
   leaving one state share the states of their common first phonemes; each pronunciation of
   a word is a path of its own, ending where the word does), with a blank state
   at every graph state (silence, pauses between words, before and after the sentence) and
   an optional blank after every phoneme;
3. runs a Viterbi search over those states (the model's own word-break token counting as a
   blank), one vectorised numpy step per frame over the states within `BEAM` of the frame's
   best and those they lead to (a few per cent of them in a command), carrying
   a word history (a record per graph state and frame) instead of back-pointers per state;
4. scores the best sentence against the best unconstrained path (the per-frame best token,
   i.e. what a free phoneme loop hears): commands fit the grammar almost as well as the free
   loop, other speech (other languages, bystanders) much worse. The gap per speech frame,
   with penalties for short sentences and uncovered speech (`confidence`), is mapped
   through a logistic to a confidence in [0, 1].

One simplification: a word may start with the token the previous word ended with, without
the blank CTC would need between them (the word-end states are shared per graph state).

Like the pocketsphinx backend, the search is over the union of the core (our templates) and
the full closed set, the latter entered with a prior penalty, and a sentence outside the core
must fit better to be accepted.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from pendant.ears.asr import Transcription
from pendant.ears.asr.hama_model import PhonemeModel
from pendant.ears.asr.pronounce import pronounce
from pendant.ears.asr.rivals import close_rivals

if TYPE_CHECKING:
    from pendant.core.config import Config
    from pendant.ears.understand.grammar import Grammar
    from pendant.ears.understand.wordgraph import WordGraph

SAMPLE_RATE = 16_000
NEG = np.float32(-1e30)
# CMU (ARPAbet) phones as the ASR model's tokens. A phone with several tokens is searched as
# the best of them per frame: where the model and the dictionary may disagree ("g"/"ɡ", "ɹ"/"r",
# r-coloured vowels), and AH, which the dictionary in the pocketsphinx wheel gives without its
# stress (ʌ stressed, ə not).
ARPABET: dict[str, tuple[str, ...]] = {
    "AA": ("ɑ",), "AE": ("æ",), "AH": ("ʌ", "ə"), "AO": ("ɔ",), "AW": ("aʊ",), "AY": ("aɪ",),
    "EH": ("ɛ",), "ER": ("ɝ", "ɚ"), "EY": ("eɪ",), "IH": ("ɪ",), "IY": ("i",), "OW": ("oʊ",),
    "OY": ("ɔɪ",), "UH": ("ʊ",), "UW": ("u",), "B": ("b",), "CH": ("t͡ʃ",), "D": ("d",),
    "DH": ("ð",), "F": ("f",), "G": ("g", "ɡ"), "HH": ("h",), "JH": ("d͡ʒ",), "K": ("k",),
    "L": ("l",), "M": ("m",), "N": ("n",), "NG": ("ŋ",), "P": ("p",), "R": ("ɹ", "r"),
    "S": ("s",), "SH": ("ʃ",), "T": ("t",), "TH": ("θ",), "V": ("v",), "W": ("w",),
    "Y": ("j",), "Z": ("z",), "ZH": ("ʒ",),
}  # fmt: skip
# The model's token between two words ("t ɝ n <wb> ɔ f").
WORD_BREAK = "<wb>"
# Frames whose blank log-prob is above this are searched one per run (`kept_frames`).
SURE_BLANK = math.log(0.99)
# Paths further than this below the frame's best (nats) are dropped from the search.
BEAM = 20.0
LIVE = NEG / 2
"""Scores at or under this are no path (NEG plus a few frames' log-probs)."""
# Log-prior of the full closed set against the core (see the module docstring); a guess, not
# tuned.
EXTENDED_PRIOR = -8.0
# Confidence (see `Fit` and `confidence`). Tuned with a grid search (2026-12-05, when the search
# began to take WORD_BREAK for a blank) on the tune halves of speech-en, the espeak-ng set, the
# other-languages set and the Kokoro commands (tools/measure_asr.py --half tune), rivals weighed
# (`pendant.ears.asr.rivals`): the most commands right, less 3 per wrong action, with at most 2
# of the 189 non-commands there accepted: 284 of 389 right, 5 wrong, 2 accepted (the old
# constants, before WORD_BREAK: 258, 4, 2). OUTSIDE_CORE made no difference from 0.5 to 1.5.
OUTSIDE_CORE = 1.0  # added to the badness of a sentence outside the core
PER_PHONEME = 3.0  # a short sentence (few phonemes) must fit better: more sounds fit it
UNCOVERED = 0.8  # free-loop speech frames beyond the sentence's phonemes, per phoneme
BADNESS_REF = 1.4  # confidence 0.5 here
# Held talk (the button held: the wearer's) drops PER_PHONEME and weighs uncovered speech more:
# the wearer says longer things than the sentence heard, not a bystander's chance fit. Tuned
# against asr.min_confidence_pressed 0.2 on the same tune halves, by the same rule with no
# English non-command accepted: 312 of 389 right, 8 wrong (1.4 before WORD_BREAK: 298, 5).
# BADNESS_REF is shared; a held one of its own gained 3 commands for 2 more wrong actions.
UNCOVERED_HELD = 1.0
SLOPE = 0.1


@dataclass(frozen=True, slots=True)
class Fit:
    """How well the best sentence explains the sounds, against the free phoneme loop."""

    gap: float
    """The free loop's log-prob minus the sentence's, over the whole utterance (>= 0)."""
    speech: int
    """Frames where the free loop hears a token rather than a blank."""
    phonemes: int
    """Phones in the sentence's spelling (the pronunciation the search took)."""


def confidence(fit: Fit, in_core: bool, *, held: bool = False) -> float:
    """0.5 where the badness reaches BADNESS_REF, logistic around it. The badness is the gap
    per speech frame, made larger for a sentence outside the core, for speech the sentence
    leaves uncovered and, unless the wearer holds the button (`held`), for a short sentence:
    a bystander's "pausa" fits "pause" as well as the wearer's "pause" does, but longer
    sentences are rarely matched by chance. Held, "pause" is the wearer's: a mishearing is
    what is left to rule out, and more speech than the sentence says one."""
    phonemes = max(fit.phonemes, 1)
    uncovered = max(0, fit.speech - phonemes) / phonemes
    badness = (
        fit.gap / max(fit.speech, 1)
        + (0.0 if in_core else OUTSIDE_CORE)
        + (0.0 if held else PER_PHONEME / phonemes)
        + (UNCOVERED_HELD if held else UNCOVERED) * uncovered
    ) / BADNESS_REF
    return 1.0 / (1.0 + math.exp(min((badness - 1.0) / SLOPE, 700.0)))


def spell_words(words: Iterable[str]) -> tuple[dict[str, list[list[str]]], dict[str, str]]:
    """Each word's pronunciations as ARPAbet phones (`pronounce`: the CMU dictionary, its
    extra variants, then espeak-ng or letters for words it lacks, listed in the second
    mapping), the phones `ARPABET` has no tokens for dropped."""
    prons = pronounce(words)
    spellings: dict[str, list[list[str]]] = {}
    for word, variants in prons.phones.items():
        unique: list[list[str]] = []
        for variant in variants:
            phones = [p.rstrip("012") for p in variant.split()]
            phones = [p for p in phones if p in ARPABET] or ["AH"]
            if phones not in unique:
                unique.append(phones)
        spellings[word] = unique
    return spellings, prons.guessed


INDEX_ARRAYS = (
    "tok", "pred", "children", "child_start", "only_child", "same_parent", "end_dst", "end_node",
    "end_src", "ends_at", "ends_start", "only_end", "finals", "dsts", "dst_slot",
)  # fmt: skip


class _Net:
    """The CTC search network of one or more word graphs, as flat numpy arrays.

    Per graph state: B (in its blank: silence, a pause between words, before or after the
    sentence) and X (a word has just ended there). Per phoneme node of the prefix trees: E
    (emitting its token) and L (in the blank after it). One step computes a frame's states
    from the previous frame's, each state keeping the best of its predecessors:

        M = max(E, L)            a node is done; L' = M + blank
        Q = max(B, X) and M      where a node may come from (its graph state, its parent)
        E' = max(E, Q[pred]) + the node's token;  B' = max(B, X) + blank
        X' = the best word ending at each graph state: max over its words' last nodes of E'

    A path remembers only the frame its current word began at (the frame of the graph
    state's X it came from); the word ending at each graph state at each frame is recorded,
    which is enough to trace the best sentence back.

    Each frame computes only the live nodes (E or L within the beam of the frame's best) and
    the nodes their Q entries lead to; the rest hold NEG. Without a beam this is the full
    Viterbi search, which computed all of them (54,000 nodes for the demo home, where a
    command keeps a few thousand live)."""

    def __init__(
        self,
        graphs: list[tuple[WordGraph, float]],
        spell: dict[str, list[list[int]]],
    ) -> None:
        # One entry per (word, pronunciation): a word ends where any of its spellings does.
        self.entries: list[tuple[str, list[int]]] = []
        entry_of: dict[tuple[str, int], int] = {}
        offsets = []
        g = 0
        for graph, _ in graphs:
            offsets.append(g)
            g += graph.n_states
        self.n_graph = g
        # Built in arrays and int keys, not lists of tuples: the build's peak is the recogniser's
        # peak memory (a 74-device home: 54,000 nodes, 19,000 word ends).
        columns = 1 + max((t for vs in spell.values() for v in vs for t in v), default=0)
        node_of: dict[int, int] = {}  # (parent key + g) * columns + token -> node
        tok = array("q")
        parent = array("q")  # >= 0: a node; < 0: -1 - graph state
        ends = [array("q") for _ in range(4)]  # dst, node, word id, src
        self.start = np.full(g, NEG, dtype=np.float32)
        self.prior = np.zeros(g, dtype=np.float32)
        finals: list[int] = []
        for (graph, prior), off in zip(graphs, offsets, strict=True):
            self.start[off + graph.start] = prior
            self.prior[off : off + graph.n_states] = prior
            finals += [off + f for f in graph.finals]
            for src, dst, word in graph.arcs:
                for v, variant in enumerate(spell[word]):
                    entry = entry_of.get((word, v))
                    if entry is None:
                        entry = entry_of[(word, v)] = len(self.entries)
                        self.entries.append((word, variant))
                    key = -1 - (off + src)
                    for t in variant:
                        slot = (key + g) * columns + t
                        node = node_of.get(slot)
                        if node is None:
                            node = node_of[slot] = len(tok)
                            tok.append(t)
                            parent.append(key)
                        key = node
                    for column, value in zip(ends, (off + dst, key, entry, off + src), strict=True):
                        column.append(value)
        del node_of, entry_of
        n = len(tok)
        self.n_nodes = n
        self.finals = np.array(sorted(finals), dtype=np.intp)
        self.tok = np.frombuffer(tok, dtype=np.int64).astype(np.intp)
        par = np.frombuffer(parent, dtype=np.int64).astype(np.intp)
        del tok, parent
        # Q holds max(B, X) per graph state, then M per node.
        self.pred = np.where(par < 0, -1 - par, g + par)
        # Each entry of Q's children (the nodes it leads to), for waking them; most nodes
        # have one child or none (`only_child`, else -1), looked up without the ranges.
        order = np.argsort(self.pred, kind="stable")
        self.children = order
        self.child_start = np.searchsorted(self.pred[order], np.arange(g + n + 1))
        count = np.diff(self.child_start)[g:]
        self.only_child = np.where(count == 1, order[np.minimum(self.child_start[g:-1], n - 1)], -1)
        self.many_children = count > 1
        # CTC needs a blank between two equal tokens: from such a parent only L will do.
        same = (par >= 0) & (self.tok[np.maximum(par, 0)] == self.tok)
        self.same_parent = np.where(same, par, -1)
        dst, node, word, src = (np.frombuffer(column, dtype=np.int64) for column in ends)
        order = np.lexsort((src, word, node, dst))  # by destination, then node, word, source
        self.end_dst, self.end_node = dst[order], node[order]
        self.end_word, self.end_src = word[order].astype(np.int32), src[order]
        del ends, dst, node, word, src
        # The words ending at each node, for the nodes searched: most end none or one
        # (`only_end`, else -1).
        order = np.argsort(self.end_node, kind="stable")
        self.ends_at = order
        self.ends_start = np.searchsorted(self.end_node[order], np.arange(n + 1))
        count = np.diff(self.ends_start)
        at = np.minimum(self.ends_start[:-1], len(order) - 1)
        self.only_end = np.where(count == 1, order[at], -1)
        self.many_ends = count > 1
        # A column of the word records per graph state that words end at.
        # (Not np.unique: its hash table took 8 MB here, the recogniser's peak.)
        self.dsts = np.flatnonzero(np.bincount(self.end_dst, minlength=g))
        self.dst_slot = np.full(g, -1, dtype=np.intp)
        self.dst_slot[self.dsts] = np.arange(len(self.dsts))
        # The indices as int32: half the memory (2 MB less for the demo home's closed set).
        for name in INDEX_ARRAYS:
            setattr(self, name, getattr(self, name).astype(np.int32))

    def search(
        self, lp: np.ndarray, blank: int, beam: float = BEAM
    ) -> tuple[float, list[tuple[str, list[int], int, int]]]:
        """Viterbi over the frames' log-probs `lp` (frames x columns): the best sentence's
        acoustic score and its path: per word, the word, the tokens it was spelt with (the
        pronunciation taken) and its first and last frame. Only states within `beam` of the
        frame's best are carried on; (NEG, []) when none of them reaches the end of a sentence.
        """
        # float32 throughout: a word's score is matched against the best into its graph state.
        lp = np.asarray(lp, dtype=np.float32)
        n_frames = lp.shape[0]
        g, n = self.n_graph, self.n_nodes
        neg = NEG
        b = self.start.copy()
        bh = np.full(g, -1, dtype=np.int32)  # frame of the record it came from, or -1
        x = np.full(g, neg, dtype=np.float32)
        # Per node; a node outside `live` holds NEG in E and L, and its Q entry is NEG.
        e = np.full(n, neg, dtype=np.float32)
        eh = np.full(n, -1, dtype=np.int32)
        ll = np.full(n, neg, dtype=np.float32)
        lh = np.full(n, -1, dtype=np.int32)
        q = np.full(g + n, neg, dtype=np.float32)
        qh = np.full(g + n, -1, dtype=np.int32)
        live = np.empty(0, dtype=np.intp)
        woken = np.zeros(n, dtype=bool)
        no_word = np.iinfo(np.intp).max
        first = np.full(len(self.dsts), no_word, dtype=np.intp)
        rec_word = np.full((n_frames, len(self.dsts)), -1, dtype=np.int32)
        rec_at = np.full((n_frames, len(self.dsts)), 0, dtype=np.int32)
        for t in range(n_frames):
            row = lp[t]
            # Graph states: B or X (X carries the record of the previous frame).
            take = x > b
            q[:g] = np.where(take, x, b)
            qh[:g] = np.where(take, t - 1, bh)
            # Live nodes: E or L.
            take = e[live] > ll[live]
            q[g + live] = np.where(take, e[live], ll[live])
            qh[g + live] = np.where(take, eh[live], lh[live])
            # Searched this frame: the live nodes and the nodes their Q entries lead to.
            woken[live] = True
            kids = self.only_child[live]
            woken[kids[kids >= 0]] = True
            fans = np.concatenate(
                [np.flatnonzero(q[:g] > LIVE), g + live[self.many_children[live]]]
            )
            woken[_ranges(self.children, self.child_start, fans)] = True
            nodes = np.flatnonzero(woken)
            woken[nodes] = False
            pred = self.pred[nodes]
            cand, cand_h = q[pred], qh[pred]
            parent = self.same_parent[nodes]
            same = np.flatnonzero(parent >= 0)
            cand[same] = ll[parent[same]]
            cand_h[same] = lh[parent[same]]
            en, ehn = e[nodes], eh[nodes]
            take = cand > en
            en = np.where(take, cand, en) + row[self.tok[nodes]]
            ehn = np.where(take, cand_h, ehn)
            ln = q[g + nodes] + row[blank]
            lhn = qh[g + nodes]
            b = q[:g] + row[blank]
            bh = qh[:g].copy()
            q[g + live] = neg
            # Pruning: what falls beyond the beam is dropped.
            top = max(float(en.max(initial=neg)), float(ln.max(initial=neg)), float(b.max()))
            # Words ending now: the best into each graph state.
            ending = self.only_end[nodes]
            at = np.flatnonzero(ending >= 0)
            ending = ending[at]
            many = np.flatnonzero(self.many_ends[nodes])
            if len(many):
                more = _ranges(self.ends_at, self.ends_start, nodes[many])
                at = np.concatenate([at, np.searchsorted(nodes, self.end_node[more])])
                ending = np.concatenate([ending, more])
            vals = en[at]
            floor = top - beam
            x = np.full(g, neg, dtype=np.float32)
            kept = vals > floor
            ending, vals = ending[kept], vals[kept]
            dst = self.end_dst[ending]
            np.maximum.at(x, dst, vals)
            hits = vals == x[dst]
            np.minimum.at(first, self.dst_slot[dst[hits]], ending[hits])
            slots = np.flatnonzero(first != no_word)
            words = first[slots]
            first[slots] = no_word
            rec_word[t, slots] = words
            rec_at[t, slots] = ehn[np.searchsorted(nodes, self.end_node[words])]
            b[b <= floor] = neg
            keep = np.maximum(en, ln) > floor
            live = nodes[keep]
            e[nodes], eh[nodes] = np.where(keep, en, neg), ehn
            ll[nodes], lh[nodes] = np.where(keep, ln, neg), lhn
        # The best final: in its blank, or with a word just ended there.
        fin_b, fin_x = b[self.finals], x[self.finals]
        i = int(np.argmax(np.maximum(fin_b, fin_x)))
        if max(fin_b[i], fin_x[i]) <= LIVE:
            return float(neg), []
        state = int(self.finals[i])
        # The acoustic score alone: the prior only chose between the graphs.
        score = float(max(fin_b[i], fin_x[i])) - float(self.prior[state])
        frame = n_frames - 1 if fin_x[i] >= fin_b[i] else int(bh[state])
        path: list[tuple[str, list[int], int, int]] = []
        while frame >= 0:
            k = int(rec_word[frame, self.dst_slot[state]])
            if k < 0:  # a path with no word record: never seen, but no endless trace back
                return float(neg), []
            word, tokens = self.entries[int(self.end_word[k])]
            began = int(rec_at[frame, self.dst_slot[state]])
            path.append((word, tokens, began + 1, frame))
            frame, state = began, int(self.end_src[k])
        path.reverse()
        return score, path


def _ranges(items: np.ndarray, starts: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """items[starts[k]:starts[k + 1]] for each of `keys`, joined (a CSR lookup)."""
    begin, count = starts[keys], starts[keys + 1] - starts[keys]
    total = int(count.sum())
    if total == 0:
        return items[:0]
    offsets = np.repeat(begin - np.cumsum(count) + count, count)
    return items[offsets + np.arange(total)]


class HamaRecognizer:
    """`transcribe(audio)` -> the closed-set sentence heard, with a confidence, or None."""

    def __init__(self, config: Config, grammar: Grammar) -> None:
        self.grammar = grammar
        self._model = PhonemeModel()
        tokens = self._model.tokens
        self.blank = self._model.blank
        self.word_break: int | None = tokens.index(WORD_BREAK) if WORD_BREAK in tokens else None
        self.tokens = tokens
        vocab = {t: i for i, t in enumerate(tokens)}
        # Columns of the frames' log-probs the search reads: one per token, plus one per
        # phone of several tokens (ARPABET), the max of its members.
        self._columns: list[tuple[int, ...]] = [(i,) for i in range(len(tokens))]
        column_of: dict[str, int] = {}
        for phone, members in ARPABET.items():
            ids = tuple(vocab[m] for m in members)  # a KeyError here: hama changed its tokens
            if len(ids) == 1:
                column_of[phone] = ids[0]
            else:
                column_of[phone] = len(self._columns)
                self._columns.append(ids)
        self.spellings, self.guessed = spell_words(grammar.words)
        self._spell = spell = {
            w: [[column_of[p] for p in variant] for variant in variants]
            for w, variants in self.spellings.items()
        }
        graphs: list[tuple[WordGraph, float]] = [(grammar.graph, 0.0)]
        if grammar.core is not None and grammar.core.finals:
            graphs = [(grammar.core, 0.0), (grammar.graph, EXTENDED_PRIOR)]
        self._net = _Net(graphs, spell)

    def log_probs(self, audio: np.ndarray) -> np.ndarray:
        """Frames x columns log-probabilities of the ASR model (see `_columns`)."""
        lp = self._model.log_probs(audio)
        extra = [lp[:, list(ids)].max(axis=1) for ids in self._columns[len(self.tokens) :]]
        return np.concatenate([lp, np.stack(extra, axis=1)], axis=1) if extra else lp

    @staticmethod
    def kept_frames(blank: np.ndarray) -> np.ndarray:
        """The frames worth searching: a run of frames that are all but certainly blank
        (silence, and the gaps between CTC's spikes) is searched as one frame, which keeps
        a blank between two equal tokens and costs nothing a path could win there. About
        two frames in three go."""
        sure = blank > SURE_BLANK
        return ~sure | np.concatenate([[True], ~sure[:-1]])

    def transcribe(self, audio: np.ndarray) -> Transcription | None:
        """The closed-set sentence `audio` (16 kHz mono int16) most likely was, with its confidence
        for conversation mode and for held talk, and its rivals; None under a tenth of a second of
        audio or when the search finds no sentence. Blocking."""
        if audio.size < SAMPLE_RATE // 10:
            return None
        lp = self.log_probs(audio)
        if lp.shape[0] == 0:
            return None
        lp = lp[self.kept_frames(lp[:, self.blank])]
        free = lp[:, : len(self.tokens)]
        # Word-break frames still count as speech here (the constants were tuned so).
        speech = int((free.argmax(axis=1) != self.blank).sum())
        reference = float(free.max(axis=1).sum())
        if self.word_break is not None:
            # The model marks the gap between two words with a token of its own, which no
            # spelling holds: the search takes it for the blank, as the free loop does.
            lp[:, self.blank] = np.maximum(lp[:, self.blank], lp[:, self.word_break])
        score, path = self._net.search(lp, self.blank)
        if not path:
            return None
        words = [word for word, _, _, _ in path]
        fit = Fit(reference - score, speech, sum(len(tokens) for _, tokens, _, _ in path))
        in_core = self.grammar.in_core(words)

        def prior(sentence: list[str]) -> float:
            return 0.0 if self.grammar.in_core(sentence) else EXTENDED_PRIOR

        # A rival is charged what the search would have charged it more than the winner.
        mine = prior(words)
        options = self.grammar.substitutions(words)
        return Transcription(
            text=" ".join(words),
            confidence=round(confidence(fit, in_core), 4),
            held_confidence=round(confidence(fit, in_core, held=True), 4),
            rivals=tuple(
                close_rivals(lp, self.blank, path, options, self._spell, lambda r: mine - prior(r))
            ),
        )

    def close(self) -> None:
        """Drops the model; the recogniser is not used after it."""
        self._model = None  # type: ignore[assignment]
