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
from templates to a minimal word graph is `pendant.ears.understand.template_nfa` and
`pendant.ears.understand.wordgraph`; the `Grammar` itself, and its JSON, is
`pendant.ears.understand.closed_set` (re-exported here).

The recognisers use the graph directly (pocketsphinx as an FSG; hama as prefix trees of phoneme
states; whisper snaps free text to the nearest sentence with `Grammar.snap`).
"""

from __future__ import annotations

import dataclasses
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
from pendant.ears.understand.closed_set import (
    Grammar,
    grammar_from_parts,
    graph_from_json,
    graph_json,
)
from pendant.ears.understand.template_nfa import NfaCompiler
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
from pendant.ears.understand.wordgraph import Nfa, WordGraph, determinize, minimize

if TYPE_CHECKING:
    from pendant.core.config import Config

log = logging.getLogger(__name__)

# Bump when the compilation changes meaning, so cached grammars built by older code rebuild.
GRAMMAR_VERSION = "3"


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


def grammar_from_json(text: str, config: Config) -> Grammar:
    """Raises ValueError (or KeyError, TypeError) when `text` is not what `grammar_json` wrote."""
    return grammar_from_parts(text, _names(config), grammar_fingerprint(config))


def _names(config: Config) -> list[str]:
    home = config.home
    areas = [*home.areas, *(a for aliases in home.area_aliases.values() for a in aliases)]
    return [*areas, *(n for d in home.devices for n in (d.name, *d.aliases))]


def _read_cached(path: Path) -> tuple[WordGraph, WordGraph] | None:
    """A cached grammar, or None when there is none or it cannot be read (then rebuilt)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return graph_from_json(data["graph"]), graph_from_json(data["core"])
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
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"graph": graph_json(graph), "core": graph_json(core)}))
        os.replace(tmp, path)
        for old in path.parent.glob("grammar-*.json"):
            if old != path:
                old.unlink(missing_ok=True)
    except OSError as exc:
        log.warning("grammar cache %s not written (%s): the next start compiles again", path, exc)
