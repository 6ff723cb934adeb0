"""The closed set as the recognisers read it: `Grammar` (the word graph, its vocabulary, the
nearest-sentence snap) and the JSON the cache and the recogniser's child hold it in.

Built by `pendant.ears.understand.grammar` from the templates; this module needs neither hassil
nor the templates, so the recogniser's child process (`pendant.ears.asr.child`) loads neither.
"""

from __future__ import annotations

import functools
import json
from typing import TYPE_CHECKING, Any

from pendant.ears.understand.wordgraph import WordGraph

if TYPE_CHECKING:
    import numpy as np


class Grammar:
    """The home's closed set of sentences: its word graph, vocabulary and nearest-match snap."""

    def __init__(
        self, graph: WordGraph, names: list[str], fingerprint: str, core: WordGraph | None = None
    ) -> None:
        self.graph = graph
        self.core = core
        """The sentences people say most (our own templates, a subset of `graph`), which a
        recogniser may favour."""
        self.words = frozenset(w for _, _, w in graph.arcs)
        self.names = names
        self.fingerprint = fingerprint

    # The indexes are built on first use: pocketsphinx needs none of them, and with Home
    # Assistant's sentences they were 8 MB of the ears' memory.
    @functools.cached_property
    def _out(self) -> list[list[tuple[int, str]]]:
        out: list[list[tuple[int, str]]] = [[] for _ in range(self.graph.n_states)]
        for src, dst, word in self.graph.arcs:
            out[src].append((dst, word))
        return out

    @functools.cached_property
    def _into(self) -> list[list[tuple[int, str]]]:
        into: list[list[tuple[int, str]]] = [[] for _ in range(self.graph.n_states)]
        for src, dst, word in self.graph.arcs:
            into[dst].append((src, word))
        return into

    @functools.cached_property
    def _index(self) -> dict[tuple[int, str], int]:
        return {(src, word): dst for src, dst, word in self.graph.arcs}

    @functools.cached_property
    def _core_index(self) -> dict[tuple[int, str], int]:
        arcs = self.core.arcs if self.core else []
        return {(src, word): dst for src, dst, word in arcs}

    @property
    def size(self) -> int:
        """How many sentences the closed set holds (paths through the graph)."""
        paths = [0] * self.graph.n_states
        paths[self.graph.start] = 1
        for state in range(self.graph.n_states):  # states are in topological order
            for dst, _ in self._out[state]:
                paths[dst] += paths[state]
        return sum(paths[f] for f in self.graph.finals)

    def accepts(self, words: list[str]) -> bool:
        """Is `words` a whole sentence of the closed set (of the core or not)?"""
        return _accepts(self.graph, self._index, words)

    def continuations(self, words: list[str], most: int) -> list[list[str]] | None:
        """Every way the closed set lets a speaker go on after the sentence `words` (each a
        whole sentence then), or None when there are more than `most` or `words` is no
        sentence. [] when nothing may follow it."""
        state = _walk(self._index, self.graph.start, words)
        if state is None or state not in self.graph.finals:
            return None
        found: list[list[str]] = []
        stack: list[tuple[int, list[str]]] = [(state, [])]
        while stack:
            at, said = stack.pop()
            for dst, word in self._out[at]:
                more = [*said, word]
                if dst in self.graph.finals:
                    found.append(more)
                    if len(found) > most:
                        return None
                stack.append((dst, more))
        return found

    def in_core(self, words: list[str]) -> bool:
        """Is this sentence one of the core's (or is there no core)?"""
        return self.core is None or _accepts(self.core, self._core_index, words)

    def substitutions(self, words: list[str]) -> list[list[str]]:
        """Per word of the sentence `words`, every other word that could stand in its place
        with the sentence still in the closed set ("turn off the tv" -> "on" for "off"); []
        per word when `words` is no sentence."""
        if not self.accepts(words):
            return [[] for _ in words]
        found: list[list[str]] = []
        state = self.graph.start
        for i, word in enumerate(words):
            rest = words[i + 1 :]
            found.append(
                [
                    other
                    for dst, other in self._out[state]
                    if other != word and _walk(self._index, dst, rest) in self.graph.finals
                ]
            )
            state = self._index[(state, word)]
        return found

    def snap(self, words: list[str]) -> tuple[str, float] | None:
        """The closed-set sentence nearest to `words` by word edit distance, and a similarity
        1 - distance / longer length. Dynamic programming over the DAG (states are numbered
        in topological order), never enumerating sentences."""
        if not words or not self.graph.finals:
            return None
        import numpy as np  # here, so a grammar compile (grammar_build.py) does not load it

        n = len(words)
        vocab = {w: i for i, w in enumerate(sorted(self.words))}
        codes = np.array([vocab.get(w, -1) for w in words])
        steps = np.arange(n + 1)
        inf = 1 << 20
        cost = np.full((self.graph.n_states, n + 1), inf, dtype=np.int64)
        cost[self.graph.start] = steps  # leading input words dropped
        for s in range(self.graph.n_states):
            row = cost[s]
            # Dropping hypothesis words inside a state: cost[i] = min_j cost[j] + (i - j).
            row[:] = np.minimum.accumulate(row - steps) + steps
            for dst, word in self._out[s]:
                sub = row[:-1] + (codes != vocab[word])
                cost[dst, 1:] = np.minimum(cost[dst, 1:], sub)
                cost[dst] = np.minimum(cost[dst], row + 1)  # grammar word not heard
        best = min(self.graph.finals, key=lambda f: cost[f, n])
        sentence = self._backtrack(cost, codes, vocab, best, n)
        dist = int(cost[best, n])
        return " ".join(sentence), max(0.0, 1.0 - dist / max(n, len(sentence)))

    def _backtrack(
        self, cost: np.ndarray, codes: np.ndarray, vocab: dict[str, int], state: int, i: int
    ) -> list[str]:
        out: list[str] = []
        while state != self.graph.start or i > 0:
            here = cost[state, i]
            if i > 0 and cost[state, i - 1] + 1 == here:
                i -= 1  # an input word with no grammar word
                continue
            for src, word in self._into[state]:
                if i > 0 and cost[src, i - 1] + (codes[i - 1] != vocab[word]) == here:
                    state, i = src, i - 1
                    break
                if cost[src, i] + 1 == here:
                    state = src
                    break
            else:  # only reachable if the DP table is inconsistent
                raise RuntimeError("snap backtrack lost its path")
            out.append(word)
        return out[::-1]

    def sample(self, rng: np.random.Generator, count: int) -> list[str]:
        """Random sentences of the closed set (uniform choice at each state), for tests."""
        out = []
        for _ in range(count):
            state, words = self.graph.start, []
            while True:
                options = self._out[state]
                stop = state in self.graph.finals
                pick = int(rng.integers(len(options) + stop))
                if pick == len(options):
                    break
                state, word = options[pick]
                words.append(word)
            out.append(" ".join(words))
        return out


def _accepts(graph: WordGraph, index: dict[tuple[int, str], int], words: list[str]) -> bool:
    return _walk(index, graph.start, words) in graph.finals


def _walk(index: dict[tuple[int, str], int], state: int, words: list[str]) -> int | None:
    """The state `words` lead to from `state`, or None where the graph has no such path."""
    at: int | None = state
    for word in words:
        at = index.get((at, word))  # type: ignore[arg-type]
        if at is None:
            return None
    return at


def grammar_json(grammar: Grammar) -> str:
    """The graphs as the cache holds them (what `grammar_from_json` reads)."""
    core = grammar.core or grammar.graph
    return json.dumps({"graph": graph_json(grammar.graph), "core": graph_json(core)})


def grammar_from_parts(text: str, names: list[str], fingerprint: str) -> Grammar:
    """`grammar_from_json` with the names and fingerprint given, not taken from a config (the
    recogniser's child has the parent's, and no pydantic config); raises as it does."""
    data = json.loads(text)
    graph, core = graph_from_json(data["graph"]), graph_from_json(data["core"])
    return Grammar(graph, list(names), str(fingerprint), core)


def graph_json(g: WordGraph) -> dict[str, Any]:
    return {"n_states": g.n_states, "start": g.start, "finals": sorted(g.finals), "arcs": g.arcs}


def graph_from_json(d: dict[str, Any]) -> WordGraph:
    words: dict[str, str] = {}  # one object per word, not one per arc
    return WordGraph(
        n_states=int(d["n_states"]),
        start=int(d["start"]),
        finals=frozenset(int(f) for f in d["finals"]),
        arcs=[(int(a), int(b), words.setdefault(w, str(w))) for a, b, w in d["arcs"]],
    )
