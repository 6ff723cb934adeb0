"""Warnings about the wearer's own sentences: ones the ears cannot hear, or hear as another intent.

`grammar.check_sentences` refuses a template hassil cannot read. One it can read may still
never work as meant: a word the recogniser has no pronunciation for, or a sentence the NLU
takes for another intent ("turn on the kitchen lights" under PartyMode stays HassTurnOn, the
better match). So, after the ears accept a set, each template is compiled alone (as the closed
set holds it), and a few of its sentences, chosen to use between them as many of its words as
they can, are put to the checks `pendant intents -` makes, in this order:

1. the closed set holds the sentence (`Grammar.accepts`): the recogniser outputs nothing else;
2. every word has a pronunciation (`Recognizer.guessed`; the home's names are the config's
   business, not the template's, and are left out);
3. the NLU gives the wearer's intent;
4. no word's sound is only espeak-ng's guess (a milder warning).

At most one warning a template (the first check that fails), at most MAX_SENTENCE_WARNINGS.
Bounded: EXAMPLES_PER_TEMPLATE sentences a template and the first MAX_TEMPLATES templates
(a template costs about what `check_sentences` spent on it, plus a few NLU parses);
`sentence_warnings_async` lets the loop run after each template.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING

from pendant.core.events import (
    MAX_EVENT_BYTES,
    MAX_SENTENCE_WARNINGS,
    Sentences,
    SentenceSet,
    SentenceWarning,
)
from pendant.core.names import normalize
from pendant.ears.asr.pronounce import ESPEAK, LETTERS
from pendant.ears.understand.grammar import Grammar, TemplateCompiler
from pendant.ears.understand.wordgraph import WordGraph

if TYPE_CHECKING:
    from pendant.core.config import Config
    from pendant.ears.understand.nlu import IntentParser

EXAMPLES_PER_TEMPLATE = 3
MAX_TEMPLATES = 40
MAX_REASON = 100  # SentenceWarning.reason


def examples(graph: WordGraph, count: int) -> list[list[str]]:
    """Up to `count` sentences of the graph that between them use as many of its arcs as they
    can: each the path through the most arcs not used yet. Two passes over the arcs each,
    never enumerating the graph's sentences (a template with a list can hold thousands)."""
    exits: list[list[tuple[str, int]]] = [[] for _ in range(graph.n_states)]
    for src, dst, word in graph.arcs:
        exits[src].append((word, dst))
    used: set[tuple[int, str]] = set()
    found: list[list[str]] = []
    dead = -1
    for _ in range(count):
        gain = [dead] * graph.n_states
        step: list[tuple[str, int] | None] = [None] * graph.n_states
        # States are in topological order (grammar._minimize): children last.
        for state in reversed(range(graph.n_states)):
            best = 0 if state in graph.finals else dead
            for word, dst in exits[state]:
                if gain[dst] == dead:
                    continue
                here = gain[dst] + ((state, word) not in used)
                if here > best:
                    best, step[state] = here, (word, dst)
            gain[state] = best
        if gain[graph.start] == dead or (found and gain[graph.start] == 0):
            break
        words, state = [], graph.start
        while (move := step[state]) is not None:
            used.add((state, move[0]))
            words.append(move[0])
            state = move[1]
        found.append(words)
    return found


def _quoted(sentence: str, rest: str) -> str:
    """`'sentence'rest`, the sentence shortened so the whole fits a warning's reason."""
    room = MAX_REASON - len(rest) - 2
    if len(sentence) > room:
        sentence = sentence[: room - 1].rstrip() + "…"
    return f"'{sentence}'{rest}"


def template_warning(
    intent: str,
    graph: WordGraph,
    grammar: Grammar,
    parser: IntentParser,
    guessed: Mapping[str, str],
) -> str | None:
    """Why a template (compiled alone to `graph`) will not work as the wearer's `intent`, in
    one line, or None when it will as far as its examples show."""
    names = {w for name in grammar.names for w in normalize(name)}
    words = sorted({w for _, _, w in graph.arcs} - names)
    sentences = examples(graph, EXAMPLES_PER_TEMPLATE)
    for sentence in sentences:
        if not grammar.accepts(sentence):
            return _quoted(" ".join(sentence), " is not in the closed set: it can never be heard")
    for word in words:
        if guessed.get(word) == LETTERS:
            return _quoted(word, " has no pronunciation: it will hardly ever be heard")
    for sentence in sentences:
        text = " ".join(sentence)
        match = parser.parse(text)
        if match is None:
            return _quoted(text, " is understood as no intent")
        if match.name != intent:
            return _quoted(text, f" is heard as {match.name}")
    for word in words:
        if guessed.get(word) == ESPEAK:
            return _quoted(word, " is in no dictionary: its sound is espeak-ng's guess")
    return None


def _each_template(
    config: Config,
    sets: Sequence[SentenceSet],
    grammar: Grammar,
    parser: IntentParser,
    guessed: Mapping[str, str],
) -> Iterator[SentenceWarning | None]:
    """One answer per template checked, so a caller can pause between them."""
    templates = TemplateCompiler(config)
    pairs = ((s.intent, t) for s in sets for t in s.sentences)
    for intent, template in itertools.islice(pairs, MAX_TEMPLATES):
        try:
            graph = templates.graph(intent, template)
        except Exception:  # hassil's bare Exceptions; check_sentences refused these already
            yield None
            continue
        reason = template_warning(intent, graph, grammar, parser, guessed)
        yield (
            None
            if reason is None
            else SentenceWarning(intent=intent, sentence=template, reason=reason)
        )


async def sentence_warnings_async(
    config: Config,
    sets: Sequence[SentenceSet],
    grammar: Grammar,
    parser: IntentParser,
    guessed: Mapping[str, str],
) -> list[SentenceWarning]:
    """The warnings for the wearer's `sets`, checked against the grammar and NLU that run them
    (built from `config` plus the sets) and the recogniser's guessed pronunciations; the loop
    runs (audio, commands) after each template."""
    found: list[SentenceWarning] = []
    for warning in _each_template(config, sets, grammar, parser, guessed):
        if warning is not None:
            found.append(warning)
        await asyncio.sleep(0)
    return found[:MAX_SENTENCE_WARNINGS]


def fitted(event: Sentences) -> Sentences:
    """The event with as many of its warnings as keep it within MAX_EVENT_BYTES: the gate
    drops a bigger one, and the sets matter more than what is said about them."""
    while event.warnings and len(event.to_json()) > MAX_EVENT_BYTES:
        event = event.model_copy(update={"warnings": event.warnings[:-1]})
    return event
