"""The words an intent may carry out of the pendant: the closed set, known to the link.

Where the words come from, and why there: the link may not import the ears, and must not take
the list from them either (a rogue ears, which holds the microphone, would declare its own
code words). So they come from data the link already trusts:

- `data/closed_words.json`: every word of the templates and the intent names, written at
  build time by `pendant.ears.understand.closed_words` (a test keeps it current);
- the config: the home's names (areas, floors, devices, media, list items, timer names, the
  wearer's sentences), device kinds and classes, as written and split at digits;
- the phone's sentences, learnt from the `sentences` event once it passed the gate: the phone
  set them, and the event itself already carried every one of those words out.

Words are compared lowercased, split at spaces and underscores ("tv_show", "Kitchen Lights").
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from pendant.config import DEVICE_CLASSES, DeviceKind

if TYPE_CHECKING:
    from pendant.config import Config
    from pendant.events import SentenceSet

CLOSED_WORDS = Path(__file__).with_name("data") / "closed_words.json"
_SPLIT = re.compile(r"[^a-z0-9']+")
_DIGITS = re.compile(r"(?<=[a-z])(?=[0-9])|(?<=[0-9])(?=[a-z])")


def split_words(text: str) -> list[str]:
    """Lowercase words of `text`: letters, digits and apostrophes; anything else splits."""
    return [w.strip("'") for w in _SPLIT.split(text.lower()) if w.strip("'")]


def _name_words(names: Iterable[str]) -> set[str]:
    # "PM2 5 sensor" is heard "pm two five sensor": both the name's parts and its digit-split
    # letters ("pm"); number words are in the closed words already.
    words = set()
    for name in names:
        for word in split_words(name):
            parts = {word, *_DIGITS.split(word)}
            words.update(parts)
            # "what is the {name}['s] humidity": the templates glue 's to a name.
            words.update(f"{w}'s" for w in parts)
    return words


@cache
def _closed() -> tuple[frozenset[str], frozenset[str]]:
    data = json.loads(CLOSED_WORDS.read_text())
    return frozenset(data["words"]), frozenset(data["intents"])


class Vocabulary:
    """Words and intent names the closed set can emit; `Vocabulary.of(config)` for a home."""

    def __init__(self, words: Iterable[str], intents: Iterable[str]) -> None:
        self.words = set(words)
        self.intents = set(intents)

    @classmethod
    def of(cls, config: Config) -> Vocabulary:
        """The template words plus this home's names (see the module's docstring)."""
        words, intents = _closed()
        home = config.home
        names = [*home.areas, *home.media, *home.list_items, *home.timer_names]
        names += [f.name for f in home.floors] + [d.name for d in home.devices]
        names += [k.value for k in DeviceKind] + [c for cs in DEVICE_CLASSES.values() for c in cs]
        names += [s for custom in home.sentences for s in custom.sentences]
        vocabulary = cls(words | _name_words(names), intents)
        vocabulary.intents.update(custom.intent for custom in home.sentences)
        return vocabulary

    def learn(self, sets: Iterable[SentenceSet]) -> None:
        """Add the phone's sentences (from a `sentences` event that passed the gate)."""
        for s in sets:
            self.intents.add(s.intent)
            self.words.update(_name_words(s.sentences))

    def unknown(self, text: str) -> list[str]:
        """The words of `text` that are not in the closed set."""
        return [w for w in split_words(text) if w not in self.words]
