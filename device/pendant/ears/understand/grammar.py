"""The closed set of sentences a home can mean, compiled to a minimal word graph.

`build_grammar(config)` expands hassil templates with this home's areas and device names and
with numbers as spoken words, and compiles them into a minimal acyclic DFA over lowercase
words. The templates are Home Assistant's own English sentences (home-assistant-intents) for
the intents we claim, kept by rule to what this home can mean (`home_assistant_dict`), plus
`templates/en.yaml` (what Home Assistant lacks, and the wearer's `home.sentences`), which is
also the "core": the phrasings a recogniser may favour. Nothing is enumerated
sentence by sentence: timer durations alone would be millions of sentences, while the
template graph is determinised and its equivalent suffix states merged, so it stays small.

The recognisers use the graph directly (pocketsphinx as an FSG; hama as prefix trees of phoneme
states; whisper snaps free text to the nearest sentence with `Grammar.snap`).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import itertools
import json
import logging
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

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

from pendant.core.errors import ConfigError
from pendant.core.names import normalize, number_words  # also the grammar's users' (re-exported)

if TYPE_CHECKING:
    import numpy as np

    from pendant.core.config import Config

log = logging.getLogger(__name__)

TEMPLATES = Path(__file__).with_name("templates") / "en.yaml"
# Home Assistant's intents whose English sentences join the closed set.
HOME_ASSISTANT_INTENTS = frozenset({
    "HassTurnOn", "HassTurnOff", "HassLightSet", "HassStartTimer", "HassCancelTimer",
    "HassCancelAllTimers", "HassPauseTimer", "HassUnpauseTimer", "HassTimerStatus",
    "HassGetCurrentTime", "HassGetCurrentDate", "HassGetWeather", "HassClimateGetTemperature",
    "HassGetState", "HassNevermind", "HassMediaPause", "HassMediaUnpause", "HassMediaNext",
    "HassMediaPrevious", "HassListAddItem", "HassSetVolume", "HassClimateSetTemperature",
    "HassSetPosition", "HassIncreaseTimer", "HassDecreaseTimer", "HassShoppingListAddItem",
    "HassVacuumStart", "HassVacuumReturnToBase",
})  # fmt: skip
# Not claimed: HassBroadcast says any words ({message}), which no closed set can hold; and
# HassRespond answers small talk ("hi", "who made you"), which with no wake word would fire on
# every greeting in the room, while the pendant has no voice of its own to answer with.
# Said around any sentence without changing it (Home Assistant's `skip_words`, split by
# where people put them).
# Not "i want" / "i'd like": on the test recordings "what is the outdoor humidity" was heard
# as "i want is the outdoor humidity off".
POLITE_BEFORE = ("please", "can you", "could you", "would you")
POLITE_AFTER = ("please", "for me")
# Home Assistant's wildcard lists and the lists of our templates that stand in for them.
WILDCARDS = {
    "todo_list_item": "shopping_item",
    "shopping_list_item": "shopping_item",
    "timer_name": "timer_name",
    "search_query": "media_name",
}
# Words that do not make a sentence a command on their own: a path of only these and names
# ("the kitchen lamp") is dropped, since the pendant listens without a wake word.
_FILLER = frozenset({"the", "my", "our", "a", "an"})
# Bump when the compilation changes meaning, so cached grammars built by older code rebuild.
GRAMMAR_VERSION = "3"
_MAX_GLUED = 5000

# --- templates and the home's slot lists ------------------------------------------------------


def template_dict(config: Config) -> dict[str, Any]:
    """Our templates plus the wearer's own sentences, as one hassil intents dict."""
    data: dict[str, Any] = yaml.safe_load(TEMPLATES.read_text(encoding="utf-8"))
    # The home's own words for what Home Assistant leaves free (wildcards).
    lists = data["lists"]
    lists["media_name"] = {"values": list(config.home.media)}
    if config.home.list_items:
        lists["shopping_item"] = {"values": list(config.home.list_items)}
    if config.home.timer_names:
        lists["timer_name"] = {"values": list(config.home.timer_names)}
    for custom in config.home.sentences:
        intent = data["intents"].setdefault(custom.intent, {"data": []})
        intent["data"].append({"sentences": list(custom.sentences)})
    # The wearer writes "disco 5 time"; the ears hear "disco five time".
    return _spell_digits(data)


@cache
def _home_assistant_english() -> str:
    # Kept as text: every caller gets its own copy to change (json.loads), and the
    # fingerprint hashes exactly what the sentences were.
    from home_assistant_intents import get_intents

    data = get_intents("en")
    if data is None:
        raise RuntimeError("home-assistant-intents has no English intents")
    return json.dumps(data)


def home_assistant_english() -> dict[str, Any]:
    """All of Home Assistant's English intents (a fresh copy), as hassil reads them."""
    return json.loads(_home_assistant_english())


def _kinds(value: Any) -> set[str]:
    return {value} if isinstance(value, str) else set(value or [])


def home_assistant_dict(config: Config) -> dict[str, Any]:
    """Home Assistant's English sentences (the installed home-assistant-intents) for the
    intents the pendant claims, keeping only the data blocks this home can use: a block
    about a kind of device (its fixed `domain` slot or its required `domain` context) is
    dropped when the home has no device of that kind."""
    data = home_assistant_english()
    kinds = {d.kind.value for d in config.home.devices}
    intents = {}
    for name, intent in data["intents"].items():
        if name not in HOME_ASSISTANT_INTENTS:
            continue
        blocks = []
        for block in intent["data"]:
            fixed = _kinds((block.get("slots") or {}).get("domain"))
            needed = _kinds((block.get("requires_context") or {}).get("domain"))
            if (fixed and not fixed & kinds) or (needed and not needed & kinds):
                continue
            blocks.append(block)
        if blocks:
            intents[name] = {**intent, "data": blocks}
    data["intents"] = intents
    return _spell_digits(data)


def _spelled(text: Any) -> Any:
    """Digits in one template's text as words, leaving {lists} and <rules> alone."""
    if not isinstance(text, str) or not any(c.isdigit() for c in text):
        return text
    parts = re.split(r"(\{[^}]*\}|<[^>]*>)", text.replace("1/2", "half"))
    return "".join(p if p[:1] in "{<" else re.sub(r"\d+(?:\.\d+)*", _digit_words, p) for p in parts)


def _spell_digits(data: dict[str, Any]) -> dict[str, Any]:
    """Digits in template text as the recogniser says them ("CO2 level" -> "CO two level"),
    so the NLU matches what the ears hear. Only what is said changes: sentences, rules and
    what list values sound like, not the slot values they give."""
    spell = _spelled

    def rules(r: dict[str, Any]) -> dict[str, Any]:
        return {k: spell(v) for k, v in r.items()}

    for intent in data["intents"].values():
        for block in intent["data"]:
            block["sentences"] = [spell(t) for t in block["sentences"]]
            if "expansion_rules" in block:
                block["expansion_rules"] = rules(block["expansion_rules"])
    data["expansion_rules"] = rules(data.get("expansion_rules", {}))
    for slot_list in data.get("lists", {}).values():
        for value in slot_list.get("values", []):
            if isinstance(value, dict):
                value["in"] = spell(value["in"])
    return data


def _digit_words(m: re.Match[str]) -> str:
    return " " + " ".join(number_words(int(n)) for n in m.group().split(".")) + " "


def spoken_forms(name: str) -> list[str]:
    """A name as written and as the recogniser outputs it: "Poo poo sensor 2" is heard as
    "poo poo sensor two", which the NLU must still take for that device."""
    said = " ".join(normalize(name))
    return [name] if said == " ".join(name.lower().split()) else [name, said]


def home_slot_lists(config: Config) -> dict[str, SlotList]:
    """Slot lists from the home: names carry their kind (and area) as hassil context, which
    is what `requires_context: domain` in the templates (ours and Home Assistant's) filters."""
    home = config.home
    devices = home.devices
    # An area's or a floor's alias is another way to say it, as a device's is: the slot
    # carries the area's (the floor's) name.
    areas = [
        (said, a)
        for a in home.areas
        for called in (a, *home.aliases_of_area(a))
        for said in spoken_forms(called)
    ]
    floors = [
        (said, f.name)
        for f in home.floors
        for called in (f.name, *f.aliases)
        for said in spoken_forms(called)
    ]
    lights = [d for d in devices if d.kind.value == "light"]
    return {
        "name": _names_list(devices),
        "area": TextSlotList.from_tuples(areas, allow_template=False),
        "light_dimmable": _names_list(d for d in lights if d.brightness),
        "light_color": _names_list(d for d in lights if d.color),
        "floor": TextSlotList.from_tuples(floors, allow_template=False),
        # Home Assistant's zones are any name (a wildcard); every home has "home".
        "zone": TextSlotList.from_strings(["home"]),
    }


def _names_list(devices: Iterable[Any]) -> TextSlotList:
    """Device names and aliases with their kind (and area) as hassil context. An alias is
    another way to say the device: the slot it fills carries the device's name, the one
    Home Assistant and the rest of the pendant know it by."""
    values = []
    for d in devices:
        ctx = {"domain": d.kind.value}
        if d.area:
            ctx["area"] = d.area
        for called in (d.name, *d.aliases):
            values += [(said, d.name, ctx) for said in spoken_forms(called)]
    return TextSlotList.from_tuples(values, allow_template=False)


def load_intents(config: Config) -> tuple[list[Intents], dict[str, SlotList]]:
    """Where the closed set comes from, in the order the NLU tries them: our templates and
    the wearer's sentences, then Home Assistant's. Home Assistant's free-text lists
    (wildcards) become our closed ones: items to add to a list and timer names."""
    ours = Intents.from_dict(template_dict(config))
    theirs = Intents.from_dict(home_assistant_dict(config))
    slot_lists = home_slot_lists(config)
    for wildcard, closed in WILDCARDS.items():
        slot_lists[wildcard] = ours.slot_lists[closed]
    for name, ranged in theirs.slot_lists.items():
        if isinstance(ranged, RangeSlotList) and ranged.fraction_type is not None:
            theirs.slot_lists[name] = _spoken_halves(ranged)
    # Home Assistant sets brightness or colour on any light; we only on the lights that take
    # it, as our own templates do with {light_dimmable:name} and {light_color:name}.
    light_set = theirs.intents.get("HassLightSet")
    for data in light_set.data if light_set else []:
        said = " ".join(data.sentence_texts)
        capable = "light_dimmable" if "brightness" in said else "light_color"
        data.slot_lists["name"] = slot_lists[capable]
    for intent in theirs.intents.values():
        for data in intent.data:
            _by_class(data, config)
    return [ours, theirs], slot_lists


def _by_class(data: IntentData, config: Config) -> None:
    """A block asking about a device class ("is smoke detected") names the devices of that
    class, and those with no class set: Pendant's devices need not carry one, and Home
    Assistant, which knows it, answers or declines. hassil would refuse every device
    whose context lacks the class, so the requirement becomes this list."""
    wanted = _kinds((data.requires_context or {}).pop("device_class", None))
    if not wanted:
        return
    fits = [d for d in config.home.devices if d.device_class is None or d.device_class in wanted]
    data.slot_lists["name"] = _names_list(fits)


def _spoken_halves(ranged: RangeSlotList) -> TextSlotList:
    """A range with halves as the words the recogniser outputs ("twenty point five" is 20.5,
    where hassil's own number parsing gives 25)."""
    nums = range(ranged.start, ranged.stop + 1, ranged.step)
    values: list[tuple[str, Any]] = [(number_words(n), n) for n in nums]
    values += [(f"{number_words(n)} point five", n + 0.5) for n in nums[:-1]]
    return TextSlotList.from_tuples(values, allow_template=False, name=ranged.name)


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


_Layers = tuple[int | None, int | None]
"""NFA states for one point of a sentence: (no command word said yet, one said)."""


class _Compiler:
    """Walks hassil expressions, writing each sentence's paths into one NFA.

    Every point of a sentence is a pair of states, before and after its first command word
    (a word of the template itself, not of a list, that is not an article); only paths that
    said one reach the end."""

    def __init__(self, intents: Intents, slot_lists: dict[str, SlotList]) -> None:
        self.intents = intents
        self.slot_lists = slot_lists
        self.nfa = _Nfa()

    def compile(self) -> _Nfa:
        self.final = self.nfa.new()
        for intent in self.intents.intents.values():
            for data in intent.data:
                for sentence in data.sentences:
                    _, said = self.expr(sentence.expression, (0, None), data)
                    if said is not None:
                        self.nfa.add(said, self.final)
        return self.nfa

    def _list(self, ref: ListReference, data: IntentData) -> SlotList:
        for lists in (data.slot_lists, self.slot_lists, self.intents.slot_lists):
            if ref.list_name in lists:
                return lists[ref.list_name]
        raise ValueError(f"template refers to unknown list {{{ref.list_name}}}")

    def _values(self, ref: ListReference, data: IntentData) -> list[Expression]:
        """The spoken forms of a list, filtered by the data block's required and excluded
        domains; none for a wildcard the home does not fill (the sentences using it drop out)."""
        slot_list = self._list(ref, data)
        if isinstance(slot_list, RangeSlotList):
            nums = range(slot_list.start, slot_list.stop + 1, slot_list.step)
            return [TextChunk(number_words(n)) for n in nums]
        if not isinstance(slot_list, TextSlotList):
            return []
        wanted = _kinds((data.requires_context or {}).get("domain"))
        unwanted = _kinds((data.excludes_context or {}).get("domain"))
        out = []
        for value in slot_list.values:
            domain = (value.context or {}).get("domain")
            if domain is not None and ((wanted and domain not in wanted) or domain in unwanted):
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

    def _along(self, words: list[str], at: _Layers) -> _Layers:
        """The words from each layer, which they leave unchanged."""
        return tuple(None if s is None else self.nfa.path(s, words) for s in at)  # type: ignore[return-value]

    def _text(self, text: str, at: _Layers) -> _Layers:
        words = normalize(text)
        if not words:
            return at
        nfa = self.nfa
        if all(w in _FILLER for w in words):
            return self._along(words, at)
        join = nfa.new()
        for s in at:
            if s is not None:
                nfa.add(s, join)
        return None, nfa.path(join, words)

    def _union(self, ends: list[_Layers]) -> _Layers:
        out: list[int | None] = []
        for layer in range(2):
            states = [e[layer] for e in ends if e[layer] is not None]
            if len(states) == 1:
                out.append(states[0])
            elif not states:
                out.append(None)
            else:
                join = self.nfa.new()
                for s in states:
                    self.nfa.add(s, join)  # type: ignore[arg-type]
                out.append(join)
        return out[0], out[1]

    def expr(self, e: Expression, at: _Layers, data: IntentData, listed: bool = False) -> _Layers:
        """Write e's paths from the states `at`; `listed`: e is a list value, whose words
        are names, not command words."""
        if at == (None, None):
            return at
        if isinstance(e, TextChunk):
            return self._along(normalize(e.text), at) if listed else self._text(e.text, at)
        if isinstance(e, RuleReference):
            return self.expr(self._rule(e, data), at, data, listed)
        if isinstance(e, ListReference):
            return self._union([self.expr(v, at, data, True) for v in self._values(e, data)])
        if isinstance(e, Permutation):
            perms = [Sequence(list(p)) for p in itertools.permutations(e.items)]
            return self.expr(Alternative(perms), at, data, listed)  # type: ignore[arg-type]
        if isinstance(e, Alternative):
            ends = [self.expr(item, at, data, listed) for item in e.items]
            if e.is_optional:
                ends.append(at)
            return self._union(ends)
        if isinstance(e, Sequence):
            for run in self._runs(e.items, data):
                if len(run) == 1:
                    at = self.expr(run[0], at, data, listed)
                    continue
                # Items written without a space between them ("light[s]") form words
                # together: spell the run out as strings, then split into words.
                texts = self._strings(Sequence(run), data)
                ends = [self.expr(TextChunk(t), at, data, listed) for t in texts]
                at = self._union(ends)
            return at
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


def _trim(delta: list[dict[str, int]], finals: set[int]) -> None:
    """Drop arcs into states from which no final state can be reached (dead ends left by
    lists the home does not fill and by sentences of names only)."""
    into: list[list[int]] = [[] for _ in delta]
    for src, moves in enumerate(delta):
        for dst in moves.values():
            into[dst].append(src)
    live, stack = set(finals), list(finals)
    while stack:
        for src in into[stack.pop()]:
            if src not in live:
                live.add(src)
                stack.append(src)
    for moves in delta:
        for word in [w for w, t in moves.items() if t not in live]:
            del moves[word]


def _minimize(delta: list[dict[str, int]], finals: set[int]) -> WordGraph:
    """Merge states with the same future (acyclic, so one bottom-up pass is exact)."""
    _trim(delta, finals)
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
    h.update(_home_assistant_english().encode())
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
        said = _spelled(template)
        data = {**self._data, "intents": {intent: {"data": [{"sentences": [said]}]}}}
        compiler = _Compiler(Intents.from_dict(data), self._slot_lists)
        return _minimize(*_determinize(compiler.compile(), compiler.final))


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
    full, core = _Nfa(), _Nfa()
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
                compiler = _Compiler(dataclasses.replace(intents, intents={name: one}), slot_lists)
                graph = _minimize(*_determinize(compiler.compile(), compiler.final))
                _append(full, graph, begin, end)
                if intents is ours:
                    _append(core, graph, 0, core_final)
    return _minimize(*_determinize(full, final)), _minimize(*_determinize(core, core_final))


def _append(nfa: _Nfa, graph: WordGraph, begin: int, end: int) -> None:
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
    data = json.loads(text)
    graph, core = _graph_from_json(data["graph"]), _graph_from_json(data["core"])
    return Grammar(graph, _names(config), grammar_fingerprint(config), core)


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
