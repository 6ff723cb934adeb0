"""An epsilon-NFA over words, made minimal: the word graph every recogniser reads.

`pendant.ears.understand.template_nfa` writes hassil's templates into an `Nfa`; `determinize`
and `minimize` make it a minimal acyclic DFA, the `WordGraph`. Nothing is enumerated sentence by
sentence (timer durations alone would be millions): the template graph is determinised and its
equivalent suffix states merged, so it stays small. No hassil here: the recogniser's child
process reads word graphs and never loads the template compiler.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from typing import Any

# --- an epsilon-NFA over words -----------------------------------------------------


@dataclass
class Nfa:
    """An epsilon-NFA over words: state 0 the start, arcs of a word or of None (epsilon)."""

    arcs: list[list[tuple[str | None, int]]] = field(default_factory=lambda: [[]])

    def new(self) -> int:
        """A new state, with no arcs yet."""
        self.arcs.append([])
        return len(self.arcs) - 1

    def add(self, src: int, dst: int, word: str | None = None) -> None:
        """An arc from `src` to `dst` on `word` (None: epsilon)."""
        self.arcs[src].append((word, dst))

    def path(self, src: int, words: list[str] | tuple[str, ...]) -> int:
        """A chain of new states from `src` spelling `words`: its last state."""
        for w in words:
            nxt = self.new()
            self.add(src, nxt, w)
            src = nxt
        return src


# --- NFA to a minimal DFA ----------------------------------------------------------------------


@dataclass(frozen=True)
class WordGraph:
    """A minimal acyclic DFA over words: every path from start to a final state is a sentence."""

    n_states: int
    start: int
    finals: frozenset[int]
    arcs: list[tuple[int, int, str]]


def determinize(nfa: Nfa, final: int) -> tuple[list[dict[str, int]], set[int]]:
    """The subset construction: a DFA's transitions per state and its accepting states."""

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


def minimize(delta: list[dict[str, int]], finals: set[int]) -> WordGraph:
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
