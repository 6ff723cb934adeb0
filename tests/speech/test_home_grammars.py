"""Grammars compiled for homes other than the demo's, each a second or so of compiling
(what keeps them out of `tests/unit`): the cache, the fingerprint, the wearer's sentences,
and the link's vocabulary keeping up with the closed set."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pendant.core.config import Config, CustomSentences, Floor, HomeDevice
from pendant.core.names import normalize
from pendant.core.vocabulary import CLOSED_WORDS, Vocabulary
from pendant.ears.understand import grammar as grammar_module
from pendant.ears.understand.closed_words import closed_words
from pendant.ears.understand.grammar import Grammar, build_grammar
from pendant.ears.understand.nlu import IntentParser


def test_the_committed_closed_words_are_current() -> None:
    assert json.loads(CLOSED_WORDS.read_text()) == closed_words(), "run `make schemas`"


def test_every_word_of_the_homes_grammar_is_known(config: Config, grammar: Grammar) -> None:
    vocabulary = Vocabulary.of(config)
    assert sorted(grammar.words - vocabulary.words) == []
    # A home with floors, digits in names and its own lists.
    home = config.home.model_copy(
        update={
            "areas": [*config.home.areas, "Kid's Room"],
            "floors": [Floor(name="Upstairs", areas=["Kid's Room"])],
            "devices": [*config.home.devices, HomeDevice(name="PM2 5 Sensor", kind="sensor")],
            "list_items": ["oat milk", "Quinoa"],
            "timer_names": ["sourdough"],
            "media": ["Jazz Classics"],
        }
    )
    other = config.model_copy(update={"home": home})
    assert sorted(build_grammar(other).words - Vocabulary.of(other).words) == []


def test_wearer_sentences_with_digits_are_understood_as_heard(config: Config) -> None:
    party = CustomSentences(intent="PartyMode", sentences=["disco 5 time", "party at 10"])
    home = config.home.model_copy(update={"sentences": [party]})
    changed = config.model_copy(update={"home": home})
    grammar, nlu = build_grammar(changed), IntentParser(changed)
    for sentence in ("disco 5 time", "party at 10"):
        heard = normalize(sentence)  # what the ears output: "disco five time"
        assert grammar.accepts(heard), sentence
        match = nlu.parse(" ".join(heard))
        assert match is not None and match.name == "PartyMode", sentence


def test_fingerprint_follows_config(config: Config, grammar: Grammar) -> None:
    assert build_grammar(config).fingerprint == grammar.fingerprint
    home = config.home.model_copy(update={"areas": [*config.home.areas, "Garage"]})
    changed = build_grammar(config.model_copy(update={"home": home}))
    assert changed.fingerprint != grammar.fingerprint
    assert changed.accepts(normalize("turn on the garage lights"))
    assert not grammar.accepts(normalize("turn on the garage lights"))


def test_compiled_grammar_is_cached_by_content(
    config: Config,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    first = build_grammar(config, tmp_path)
    (cached,) = tmp_path.glob("grammar-*.json")
    assert first.fingerprint in cached.name
    # Read back, not compiled: the templates are not even loaded.
    with monkeypatch.context() as m:
        m.setattr(grammar_module, "load_intents", lambda _: pytest.fail("compiled again"))
        again = build_grammar(config, tmp_path)
    assert again.graph == first.graph and again.core == first.core
    # Another home compiles anew and replaces the old file.
    other = config.model_copy(
        update={"home": config.home.model_copy(update={"areas": [*config.home.areas, "Attic"]})}
    )
    build_grammar(other, tmp_path)
    assert [p.name for p in tmp_path.glob("grammar-*.json")] != [cached.name]
    # A damaged file is rebuilt, with a warning, not a crash.
    (damaged,) = tmp_path.glob("grammar-*.json")
    damaged.write_text("{not json")
    assert build_grammar(other, tmp_path).graph.arcs
    assert "unreadable" in caplog.text
    assert json.loads(damaged.read_text())["graph"]["arcs"]
