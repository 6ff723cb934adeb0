"""hassil templates to an epsilon-NFA over words (`NfaCompiler`), for
`pendant.ears.understand.wordgraph` to make minimal.
"""

from __future__ import annotations

import itertools
import logging
from functools import cache

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

from pendant.core.names import normalize, number_words
from pendant.ears.understand.templates import kinds_of
from pendant.ears.understand.wordgraph import Nfa

log = logging.getLogger(__name__)

# Words that do not make a sentence a command on their own: a path of only these and names
# ("the kitchen lamp") is dropped, since the pendant listens without a wake word.
_FILLER = frozenset({"the", "my", "our", "a", "an"})
_MAX_GLUED = 5000


@cache
def _words(text: str) -> tuple[str, ...]:
    # The same few hundred template words come back tens of thousands of times in a compile
    # (once per list value they sit beside); normalising each once saves a third of it.
    return tuple(normalize(text))


_Layers = tuple[int | None, int | None]
"""NFA states for one point of a sentence: (no command word said yet, one said)."""


class NfaCompiler:
    """Walks hassil expressions, writing each sentence's paths into one NFA.

    Every point of a sentence is a pair of states, before and after its first command word
    (a word of the template itself, not of a list, that is not an article); only paths that
    said one reach the end."""

    def __init__(self, intents: Intents, slot_lists: dict[str, SlotList]) -> None:
        self.intents = intents
        self.slot_lists = slot_lists
        self.nfa = Nfa()

    def compile(self) -> Nfa:
        """Every sentence of the intents into one NFA; its accepting state is `self.final`."""
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
        wanted = kinds_of((data.requires_context or {}).get("domain"))
        unwanted = kinds_of((data.excludes_context or {}).get("domain"))
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

    def _along(self, words: tuple[str, ...], at: _Layers) -> _Layers:
        """The words from each layer, which they leave unchanged."""
        return tuple(None if s is None else self.nfa.path(s, words) for s in at)  # type: ignore[return-value]

    def _text(self, text: str, at: _Layers) -> _Layers:
        words = _words(text)
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
            return self._along(_words(e.text), at) if listed else self._text(e.text, at)
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
