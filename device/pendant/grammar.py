"""The closed set of sentences a home can mean, compiled to a minimal word graph.

`build_grammar(config)` expands the hassil templates in `templates/en.yaml` plus the wearer's
own `home.sentences` with this home's areas and device names and with numbers as spoken words,
and compiles them into a minimal acyclic DFA over lowercase words. Nothing is enumerated
sentence by sentence: timer durations alone would be millions of sentences, while the
template graph is determinised and its equivalent suffix states merged, so it stays small.

The recognisers use the graph directly (pocketsphinx as an FSG; whisper snaps free text to the
nearest sentence with `Grammar.snap`).
"""

from __future__ import annotations

import hashlib
import itertools
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import yaml
from hassil import (
    Alternative,
    Expression,
    IntentData,
    Intents,
    ListReference,
    Permutation,
    RangeSlotList,
    RuleReference,
    Sequence,
    SlotList,
    TextChunk,
    TextSlotList,
)

from pendant.errors import ConfigError

if TYPE_CHECKING:
    from pendant.config import Config

TEMPLATES = Path(__file__).with_name("templates") / "en.yaml"
# Bump when the compilation changes meaning, so cached grammars built by older code rebuild.
GRAMMAR_VERSION = "1"
_MAX_GLUED = 5000

_ONES = [
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen",
    "nineteen",
]  # fmt: skip
_TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]


def number_words(n: int) -> str:
    """Spoken English for 0 <= n < 1,000,000 ('twenty five', 'one hundred and five' is not
    used: people and the templates say 'one hundred five' rarely, so one canonical form)."""
    if n < 0:
        return "minus " + number_words(-n)
    if n < 20:
        return _ONES[n]
    if n < 100:
        tens, ones = divmod(n, 10)
        return _TENS[tens] + ("" if ones == 0 else " " + _ONES[ones])
    if n < 1000:
        hundreds, rest = divmod(n, 100)
        return _ONES[hundreds] + " hundred" + ("" if rest == 0 else " " + number_words(rest))
    thousands, rest = divmod(n, 1000)
    return number_words(thousands) + " thousand" + ("" if rest == 0 else " " + number_words(rest))


def normalize(text: str) -> list[str]:
    """Text (a file name, a whisper transcript, a template) to the grammar's word list.

    Lowercase; '%' is 'percent'; digits become words; hyphens split words; other punctuation
    goes, except an apostrophe inside a word: "what's" stays one word, as in the templates
    and in the CMU dictionary.
    """
    text = text.lower().replace("\u2019", "'").replace("%", " percent ")
    text = re.sub(r"\d+", lambda m: f" {number_words(int(m.group()))} ", text)
    text = re.sub(r"[^a-z0-9' ]+", " ", text)
    words = (w.strip("'") for w in text.split())
    return [w for w in words if w]


# --- templates and the home's slot lists ------------------------------------------------------


def template_dict(config: Config) -> dict[str, Any]:
    """Our templates plus the wearer's own sentences, as one hassil intents dict."""
    data: dict[str, Any] = yaml.safe_load(TEMPLATES.read_text(encoding="utf-8"))
    for custom in config.home.sentences:
        intent = data["intents"].setdefault(custom.intent, {"data": []})
        intent["data"].append({"sentences": list(custom.sentences)})
    return data


def spoken_forms(name: str) -> list[str]:
    """A name as written and as the recogniser outputs it: "Poo poo sensor 2" is heard as
    "poo poo sensor two", which the NLU must still take for that device."""
    said = " ".join(normalize(name))
    return [name] if said == " ".join(name.lower().split()) else [name, said]


def home_slot_lists(config: Config) -> dict[str, SlotList]:
    """Slot lists from the home: names carry their kind (and area) as hassil context, which
    is what `requires_context: domain` in the templates (ours and Home Assistant's) filters."""
    devices = config.home.devices

    def names(pick: Iterable[Any]) -> TextSlotList:
        values = []
        for d in pick:
            ctx = {"domain": d.kind.value}
            if d.area:
                ctx["area"] = d.area
            values += [(said, d.name, ctx) for said in spoken_forms(d.name)]
        return TextSlotList.from_tuples(values, allow_template=False)

    areas = [(said, a) for a in config.home.areas for said in spoken_forms(a)]
    lights = [d for d in devices if d.kind.value == "light"]
    return {
        "name": names(devices),
        "area": TextSlotList.from_tuples(areas, allow_template=False),
        "light_dimmable": names(d for d in lights if d.brightness),
        "light_color": names(d for d in lights if d.color),
        # Home Assistant's intents refer to these; the pendant has no floors or zones.
        "floor": TextSlotList.from_strings([]),
        "zone": TextSlotList.from_strings([]),
    }


def load_intents(config: Config) -> tuple[Intents, dict[str, SlotList]]:
    return Intents.from_dict(template_dict(config)), home_slot_lists(config)


# --- templates to an epsilon-NFA over words -----------------------------------------------------


@dataclass
class _Nfa:
    arcs: list[list[tuple[str | None, int]]] = field(default_factory=lambda: [[]])

    def new(self) -> int:
        self.arcs.append([])
        return len(self.arcs) - 1

    def add(self, src: int, dst: int, word: str | None = None) -> None:
        self.arcs[src].append((word, dst))

    def path(self, src: int, words: list[str]) -> int:
        for w in words:
            nxt = self.new()
            self.add(src, nxt, w)
            src = nxt
        return src


class _Compiler:
    """Walks hassil expressions, writing each sentence's paths into one NFA."""

    def __init__(self, intents: Intents, slot_lists: dict[str, SlotList]) -> None:
        self.intents = intents
        self.slot_lists = slot_lists
        self.nfa = _Nfa()

    def compile(self) -> _Nfa:
        final = self.nfa.new()
        for intent in self.intents.intents.values():
            for data in intent.data:
                for sentence in data.sentences:
                    end = self.expr(sentence.expression, 0, data)
                    self.nfa.add(end, final)
        self.final = final
        return self.nfa

    def _list(self, ref: ListReference, data: IntentData) -> SlotList:
        for lists in (self.slot_lists, data.slot_lists, self.intents.slot_lists):
            if ref.list_name in lists:
                return lists[ref.list_name]
        raise ValueError(f"template refers to unknown list {{{ref.list_name}}}")

    def _values(self, ref: ListReference, data: IntentData) -> list[Expression]:
        """The spoken forms of a list, filtered by the data block's required domain."""
        slot_list = self._list(ref, data)
        if isinstance(slot_list, RangeSlotList):
            nums = range(slot_list.start, slot_list.stop + 1, slot_list.step)
            return [TextChunk(number_words(n)) for n in nums]
        if not isinstance(slot_list, TextSlotList):
            raise ValueError(f"list {{{ref.list_name}}} is a wildcard: not a closed set")
        wanted = (data.requires_context or {}).get("domain")
        if isinstance(wanted, str):
            wanted = [wanted]
        out = []
        for value in slot_list.values:
            domain = (value.context or {}).get("domain")
            if wanted and domain is not None and domain not in wanted:
                continue
            out.append(value.text_in)
        return out

    def _rule(self, ref: RuleReference, data: IntentData) -> Expression:
        body = data.expansion_rules.get(ref.rule_name) or self.intents.expansion_rules.get(
            ref.rule_name
        )
        if body is None:
            raise ValueError(f"template refers to unknown rule <{ref.rule_name}>")
        return body.expression

    def expr(self, e: Expression, start: int, data: IntentData) -> int:
        nfa = self.nfa
        if isinstance(e, TextChunk):
            return nfa.path(start, normalize(e.text))
        if isinstance(e, RuleReference):
            return self.expr(self._rule(e, data), start, data)
        if isinstance(e, ListReference):
            end = nfa.new()
            for value in self._values(e, data):
                nfa.add(self.expr(value, start, data), end)
            return end
        if isinstance(e, Permutation):
            perms = [Sequence(list(p)) for p in itertools.permutations(e.items)]
            return self.expr(Alternative(perms), start, data)  # type: ignore[arg-type]
        if isinstance(e, Alternative):
            end = nfa.new()
            for item in e.items:
                nfa.add(self.expr(item, start, data), end)
            if e.is_optional:
                nfa.add(start, end)
            return end
        if isinstance(e, Sequence):
            state = start
            for run in self._runs(e.items, data):
                if len(run) == 1:
                    state = self.expr(run[0], state, data)
                    continue
                # Items written without a space between them ("light[s]") form words
                # together: spell the run out as strings, then split into words.
                end = nfa.new()
                for text in self._strings(Sequence(run), data):
                    nfa.add(nfa.path(state, normalize(text)), end)
                state = end
            return state
        raise ValueError(f"unexpected template expression {type(e).__name__}")

    def _runs(self, items: list[Expression], data: IntentData) -> list[list[Expression]]:
        runs: list[list[Expression]] = []
        for item in items:
            if runs and self._edge(runs[-1][-1], data, last=True) and self._edge(item, data):
                runs[-1].append(item)
            else:
                runs.append([item])
        return runs

    def _edge(self, e: Expression, data: IntentData, last: bool = False) -> bool:
        """Can e start (or with last, end) with a non-space character?"""
        if isinstance(e, TextChunk):
            text = e.text[-1:] if last else e.text[:1]
            return bool(text) and not text.isspace()
        if isinstance(e, RuleReference):
            return self._edge(self._rule(e, data), data, last)
        if isinstance(e, ListReference):
            return True
        if isinstance(e, Sequence) and not isinstance(e, Alternative | Permutation):
            items = e.items[::-1] if last else e.items
            for item in items:
                if not (isinstance(item, TextChunk) and item.text == ""):
                    return self._edge(item, data, last)
            return False
        if isinstance(e, Alternative | Permutation):
            return any(self._edge(i, data, last) for i in e.items)
        return False

    def _strings(self, e: Expression, data: IntentData) -> list[str]:
        if isinstance(e, TextChunk):
            return [e.text]
        if isinstance(e, RuleReference):
            return self._strings(self._rule(e, data), data)
        if isinstance(e, ListReference):
            return [s for v in self._values(e, data) for s in self._strings(v, data)]
        if isinstance(e, Alternative):
            out = [s for i in e.items for s in self._strings(i, data)]
            return [*out, ""] if e.is_optional else out
        if isinstance(e, Permutation):
            perms = [Sequence(list(p)) for p in itertools.permutations(e.items)]
            return self._strings(Alternative(perms), data)  # type: ignore[arg-type]
        if isinstance(e, Sequence):
            out = [""]
            for item in e.items:
                out = [a + b for a in out for b in self._strings(item, data)]
                if len(out) > _MAX_GLUED:
                    raise ValueError("template has too many glued alternatives to expand")
            return out
        raise ValueError(f"unexpected template expression {type(e).__name__}")


# --- NFA to a minimal DFA ----------------------------------------------------------------------


@dataclass(frozen=True)
class WordGraph:
    """A minimal acyclic DFA over words: every path from start to a final state is a sentence."""

    n_states: int
    start: int
    finals: frozenset[int]
    arcs: list[tuple[int, int, str]]


def _determinize(nfa: _Nfa, final: int) -> tuple[list[dict[str, int]], set[int]]:
    @cache
    def closure(state: int) -> frozenset[int]:
        seen, stack = {state}, [state]
        while stack:
            for word, dst in nfa.arcs[stack.pop()]:
                if word is None and dst not in seen:
                    seen.add(dst)
                    stack.append(dst)
        return frozenset(seen)

    first = closure(0)
    index: dict[frozenset[int], int] = {first: 0}
    delta: list[dict[str, int]] = [{}]
    finals: set[int] = set()
    todo = [first]
    while todo:
        subset = todo.pop()
        sid = index[subset]
        if final in subset:
            finals.add(sid)
        moves: dict[str, set[int]] = {}
        for s in subset:
            for word, dst in nfa.arcs[s]:
                if word is not None:
                    moves.setdefault(word, set()).update(closure(dst))
        for word, targets in moves.items():
            key = frozenset(targets)
            if key not in index:
                index[key] = len(delta)
                delta.append({})
                todo.append(key)
            delta[sid][word] = index[key]
    return delta, finals


def _minimize(delta: list[dict[str, int]], finals: set[int]) -> WordGraph:
    """Merge states with the same future (acyclic, so one bottom-up pass is exact)."""
    canon: dict[int, int] = {}
    sigs: dict[tuple[Any, ...], int] = {}
    order: list[int] = []
    seen: set[int] = set()
    stack: list[tuple[int, bool]] = [(0, False)]
    while stack:  # iterative post-order: children before parents
        s, done = stack.pop()
        if done:
            order.append(s)
            continue
        if s in seen:
            continue
        seen.add(s)
        stack.append((s, True))
        stack.extend((t, False) for t in delta[s].values() if t not in seen)
    for s in order:
        sig = (s in finals, tuple(sorted((w, canon[t]) for w, t in delta[s].items())))
        canon[s] = sigs.setdefault(sig, len(sigs))
    # Renumber so the start is 0 and states follow a topological order (parents first).
    n = len(sigs)
    rename = {old: n - 1 - old for old in range(n)}
    arcs: set[tuple[int, int, str]] = set()
    for s in order:
        for w, t in delta[s].items():
            arcs.add((rename[canon[s]], rename[canon[t]], w))
    return WordGraph(
        n_states=n,
        start=rename[canon[0]],
        finals=frozenset(rename[canon[s]] for s in finals if s in canon),
        arcs=sorted(arcs),
    )


# --- the grammar ------------------------------------------------------------------------------


class Grammar:
    """The home's closed set of sentences: its word graph, vocabulary and nearest-match snap."""

    def __init__(self, graph: WordGraph, names: list[str], fingerprint: str) -> None:
        self.graph = graph
        self.words = frozenset(w for _, _, w in graph.arcs)
        self.names = names
        self.fingerprint = fingerprint
        self._out: list[list[tuple[int, str]]] = [[] for _ in range(graph.n_states)]
        for src, dst, word in graph.arcs:
            self._out[src].append((dst, word))
        self._into: list[list[tuple[int, str]]] = [[] for _ in range(graph.n_states)]
        for src, dst, word in graph.arcs:
            self._into[dst].append((src, word))

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
        state = self.graph.start
        for w in words:
            nxt = [d for d, x in self._out[state] if x == w]
            if not nxt:
                return False
            state = nxt[0]
        return state in self.graph.finals

    def snap(self, words: list[str]) -> tuple[str, float] | None:
        """The closed-set sentence nearest to `words` by word edit distance, and a similarity
        1 - distance / longer length. Dynamic programming over the DAG (states are numbered
        in topological order), never enumerating sentences."""
        if not words or not self.graph.finals:
            return None
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


def grammar_fingerprint(config: Config) -> str:
    h = hashlib.sha256()
    h.update(GRAMMAR_VERSION.encode())
    h.update(TEMPLATES.read_bytes())
    h.update(config.language.encode())
    h.update(config.home.model_dump_json().encode())
    return h.hexdigest()[:16]


def check_sentences(
    config: Config, custom_sets: list[Any] | None = None, label: str = "home.sentences"
) -> None:
    """Refuse the wearer's own sentences with one line naming the one that is wrong.

    Compiling each template alone (against the same lists and rules as the whole) points at
    the culprit, where the whole build would only say that something somewhere is wrong.
    """
    data: dict[str, Any] = yaml.safe_load(TEMPLATES.read_text(encoding="utf-8"))
    slot_lists = home_slot_lists(config)
    sets = config.home.sentences if custom_sets is None else custom_sets
    for i, custom in enumerate(sets):
        for sentence in custom.sentences:
            data["intents"] = {custom.intent: {"data": [{"sentences": [sentence]}]}}
            where = f"{label}[{i}] ({custom.intent}) {sentence[:60]!r}"
            try:
                compiler = _Compiler(Intents.from_dict(data), slot_lists)
                nfa = compiler.compile()
            except Exception as exc:  # hassil's parser raises bare Exceptions
                raise ConfigError(f"{where}: {exc}") from None
            graph = _minimize(*_determinize(nfa, compiler.final))
            if graph.start in graph.finals:
                raise ConfigError(f"{where}: can be said with no words at all")


def build_grammar(config: Config) -> Grammar:
    intents, slot_lists = load_intents(config)
    compiler = _Compiler(intents, slot_lists)
    nfa = compiler.compile()
    graph = _minimize(*_determinize(nfa, compiler.final))
    names = [*config.home.areas, *(d.name for d in config.home.devices)]
    return Grammar(graph, names, grammar_fingerprint(config))
