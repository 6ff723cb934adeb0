"""The closed set of sentences a home can mean, compiled to a minimal word graph.

`build_grammar(config)` expands hassil templates with this home's areas and device names and
with numbers as spoken words, and compiles them into a minimal acyclic DFA over lowercase
words. The templates are Home Assistant's own English sentences (home-assistant-intents) for
the intents we claim, kept by rule to what this home can mean (`home_assistant_dict`), plus
`templates/en.yaml` (what Home Assistant lacks, and the wearer's `home.sentences`), which is
also the "core": the phrasings a recogniser may favour. Nothing is enumerated
sentence by sentence: timer durations alone would be millions of sentences, while the
template graph is determinised and its equivalent suffix states merged, so it stays small.

The templates and the home's slot lists are `pendant.ears.understand.templates`; the compiler
from templates to a minimal word graph is `pendant.ears.understand.wordgraph`.

The recognisers use the graph directly (pocketsphinx as an FSG; hama as prefix trees of phoneme
states; whisper snaps free text to the nearest sentence with `Grammar.snap`).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hassil import (
    Intents,
    SlotList,
)

from pendant.core.errors import ConfigError
from pendant.core.names import normalize
from pendant.ears.understand.templates import (
    POLITE_AFTER,
    POLITE_BEFORE,
    TEMPLATES,
    home_assistant_english_text,
    home_slot_lists,
    load_intents,
    spelled,
    template_dict,
)
from pendant.ears.understand.wordgraph import Nfa, NfaCompiler, WordGraph, determinize, minimize

if TYPE_CHECKING:
    import numpy as np

    from pendant.core.config import Config

log = logging.getLogger(__name__)

# Bump when the compilation changes meaning, so cached grammars built by older code rebuild.
GRAMMAR_VERSION = "3"


# --- the grammar ------------------------------------------------------------------------------


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


def grammar_fingerprint(config: Config) -> str:
    """A hash of all a grammar is built from: this code, both template sets, the home."""
    h = hashlib.sha256()
    h.update(GRAMMAR_VERSION.encode())
    h.update(TEMPLATES.read_bytes())
    h.update(home_assistant_english_text().encode())
    h.update(config.language.encode())
    h.update(config.home.model_dump_json().encode())
    return h.hexdigest()[:16]


class TemplateCompiler:
    """The wearer's templates one at a time, each to its own word graph: against the same
    lists and rules as the whole closed set, so its sentences are the ones it adds there."""

    def __init__(self, config: Config) -> None:
        # The home's lists too (home.media, home.list_items, ...), as in the whole set.
        self._data = template_dict(config)
        self._slot_lists = home_slot_lists(config)

    def graph(self, intent: str, template: str) -> WordGraph:
        """Raises what hassil raises (bare Exceptions) when it cannot read the template."""
        said = spelled(template)
        data = {**self._data, "intents": {intent: {"data": [{"sentences": [said]}]}}}
        compiler = NfaCompiler(Intents.from_dict(data), self._slot_lists)
        return minimize(*determinize(compiler.compile(), compiler.final))


def check_sentences(
    config: Config, custom_sets: list[Any] | None = None, label: str = "home.sentences"
) -> None:
    """Refuse the wearer's own sentences with one line naming the one that is wrong.

    Compiling each template alone (against the same lists and rules as the whole) points at
    the culprit, where the whole build would only say that something somewhere is wrong.
    """
    templates = TemplateCompiler(config)
    sets = config.home.sentences if custom_sets is None else custom_sets
    for i, custom in enumerate(sets):
        for sentence in custom.sentences:
            where = f"{label}[{i}] ({custom.intent}) {sentence[:60]!r}"
            try:
                graph = templates.graph(custom.intent, sentence)
            except Exception as exc:  # hassil's parser raises bare Exceptions
                raise ConfigError(f"{where}: {exc}") from None
            if not graph.finals:
                raise ConfigError(
                    f"{where}: can be said with nothing but names and articles; add a word "
                    "that says what to do"
                )


def _compile(
    ours: Intents, theirs: Intents, slot_lists: dict[str, SlotList]
) -> tuple[WordGraph, WordGraph]:
    """The closed set (both sources, politeness around every sentence) and its core (ours
    alone, as written). One data block at a time to a minimal DFA, then their unions: the
    word-by-word NFA of all of Home Assistant's sentences at once peaked at 430 MB, too much
    for a Zero 2 W."""
    full, core = Nfa(), Nfa()
    begin, end, final = full.new(), full.new(), full.new()
    for words in ("", *POLITE_BEFORE):
        full.add(full.path(0, normalize(words)), begin)
    for words in ("", *POLITE_AFTER):
        full.add(full.path(end, normalize(words)), final)
    core_final = core.new()
    for intents in (ours, theirs):
        for name, intent in intents.intents.items():
            for block in intent.data:
                one = dataclasses.replace(intent, data=[block])
                compiler = NfaCompiler(
                    dataclasses.replace(intents, intents={name: one}), slot_lists
                )
                graph = minimize(*determinize(compiler.compile(), compiler.final))
                _append(full, graph, begin, end)
                if intents is ours:
                    _append(core, graph, 0, core_final)
    return minimize(*determinize(full, final)), minimize(*determinize(core, core_final))


def _append(nfa: Nfa, graph: WordGraph, begin: int, end: int) -> None:
    """Copy a graph into the NFA between `begin` and `end`."""
    if not graph.finals:
        return
    offset = len(nfa.arcs)
    nfa.arcs.extend([] for _ in range(graph.n_states))
    nfa.add(begin, offset + graph.start)
    for src, dst, word in graph.arcs:
        nfa.add(offset + src, offset + dst, word)
    for f in graph.finals:
        nfa.add(offset + f, end)


def build_grammar(config: Config, cache: Path | None = None) -> Grammar:
    """The home's grammar, read from `cache` (a folder) when one was built there from the
    same inputs, else compiled and, with a cache, saved there for the next start."""
    grammar = cached_grammar(config, cache)
    if grammar is not None:
        return grammar
    (ours, theirs), slot_lists = load_intents(config)
    graph, core = _compile(ours, theirs, slot_lists)
    fingerprint = grammar_fingerprint(config)
    if cache is not None:
        _write_cached(cache / f"grammar-{fingerprint}.json", graph, core)
    return Grammar(graph, _names(config), fingerprint, core)


def cached_grammar(config: Config, cache: Path | None) -> Grammar | None:
    """The grammar `build_grammar` saved in `cache` for these inputs, if any."""
    if cache is None:
        return None
    fingerprint = grammar_fingerprint(config)
    graphs = _read_cached(cache / f"grammar-{fingerprint}.json")
    return None if graphs is None else Grammar(graphs[0], _names(config), fingerprint, graphs[1])


def grammar_json(grammar: Grammar) -> str:
    """The graphs as the cache holds them (what `grammar_from_json` reads)."""
    core = grammar.core or grammar.graph
    return json.dumps({"graph": _graph_json(grammar.graph), "core": _graph_json(core)})


def grammar_from_json(text: str, config: Config) -> Grammar:
    """Raises ValueError (or KeyError, TypeError) when `text` is not what `grammar_json` wrote."""
    return grammar_from_parts(text, _names(config), grammar_fingerprint(config))


def grammar_from_parts(text: str, names: list[str], fingerprint: str) -> Grammar:
    """`grammar_from_json` with the names and fingerprint given, not taken from a config (the
    recogniser's child has the parent's, and no pydantic config); raises as it does."""
    data = json.loads(text)
    graph, core = _graph_from_json(data["graph"]), _graph_from_json(data["core"])
    return Grammar(graph, list(names), str(fingerprint), core)


def _names(config: Config) -> list[str]:
    home = config.home
    areas = [*home.areas, *(a for aliases in home.area_aliases.values() for a in aliases)]
    return [*areas, *(n for d in home.devices for n in (d.name, *d.aliases))]


def _graph_json(g: WordGraph) -> dict[str, Any]:
    return {"n_states": g.n_states, "start": g.start, "finals": sorted(g.finals), "arcs": g.arcs}


def _graph_from_json(d: dict[str, Any]) -> WordGraph:
    words: dict[str, str] = {}  # one object per word, not one per arc
    return WordGraph(
        n_states=int(d["n_states"]),
        start=int(d["start"]),
        finals=frozenset(int(f) for f in d["finals"]),
        arcs=[(int(a), int(b), words.setdefault(w, str(w))) for a, b, w in d["arcs"]],
    )


def _read_cached(path: Path) -> tuple[WordGraph, WordGraph] | None:
    """A cached grammar, or None when there is none or it cannot be read (then rebuilt)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return _graph_from_json(data["graph"]), _graph_from_json(data["core"])
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("grammar cache %s unreadable (%s): rebuilding it", path, exc)
        return None


def _write_cached(path: Path, graph: WordGraph, core: WordGraph) -> None:
    """Save atomically and drop grammars of older homes; a cache that cannot be written
    (full disk, read-only) costs only the next start's compile time."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"graph": _graph_json(graph), "core": _graph_json(core)}))
        os.replace(tmp, path)
        for old in path.parent.glob("grammar-*.json"):
            if old != path:
                old.unlink(missing_ok=True)
    except OSError as exc:
        log.warning("grammar cache %s not written (%s): the next start compiles again", path, exc)
