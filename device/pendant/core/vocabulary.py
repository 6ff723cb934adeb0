"""The words an intent may carry out of the pendant: the closed set, known to the link.

Where the words come from, and why there: the link may not import the ears, and must not take
the list from them either (a rogue ears, which holds the microphone, would declare its own
code words). So they come from data the link already trusts:

- `data/closed_words.json`: every word of the templates and the intent names, written at
  build time by `pendant.ears.understand.closed_words` (a test keeps it current);
- the config: the home's names (areas, floors, devices, media, list items, timer names, the
  wearer's sentences), device kinds and classes, as written and split at digits;
- the phone's sentences, learnt from the `sentences` command the link forwards to the ears
  (`Gate.phone_sent`): what the phone sent, and so words the phone chose. Never from the ears'
  `sentences` answer: a rogue ears could answer with sentences the phone never sent and so
  widen the closed set for its later intents. The link keeps the last few sets the phone sent
  beside its outbox (`PhoneSentences`), since the ears keep running the phone's set across a
  restart of the link.

Words are compared lowercased, accents folded, split at spaces and underscores ("tv_show",
"Kitchen Lights", "Café"). A name's words are also those the recogniser says for it
(`pendant.core.names.normalize`: "2nd Floor" is heard "second floor", "Hi-Fi" "hi fi").

Beside the words: the config's names as spelled (`names`), the slot values an intent may carry
in letters other than ASCII ("Café"), and the devices' Home Assistant entity ids
(`entity_ids`), which a slot may carry only beside the name of the device they belong to.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from pendant.core import state as durable
from pendant.core.config import DEVICE_CLASSES, DeviceKind
from pendant.core.events import SentenceSet
from pendant.core.names import fold, normalize

if TYPE_CHECKING:
    from pendant.core.config import Config

log = logging.getLogger(__name__)

CLOSED_WORDS = Path(__file__).parents[1] / "data" / "closed_words.json"
_SPLIT = re.compile(r"[^a-z0-9']+")
PHONE_SENTENCES_KEPT = 8
"""Sets the phone sent that the link keeps, besides the one the ears run: one a `sentences`
command (at most 4 KiB each)."""
_DIGITS = re.compile(r"(?<=[a-z])(?=[0-9])|(?<=[0-9])(?=[a-z])")


def split_words(text: str) -> list[str]:
    """Lowercase words of `text`, accents folded: letters, digits and apostrophes; anything
    else splits."""
    folded = fold(text).lower().replace("\u2019", "'")
    return [w.strip("'") for w in _SPLIT.split(folded) if w.strip("'")]


def _name_words(names: Iterable[str]) -> set[str]:
    # "PM2 5 sensor" is heard "pm two five sensor": both the name's parts and its digit-split
    # letters ("pm"); number words are in the closed words already.
    words = set()
    for name in names:
        said = normalize(name)
        words.update(said)
        words.update(f"{w}'s" for w in said)
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

    def __init__(
        self,
        words: Iterable[str],
        intents: Iterable[str],
        names: Iterable[str] = (),
        entity_ids: dict[str, set[str]] | None = None,
    ) -> None:
        self.words = set(words)
        self.intents = set(intents)
        self.names = frozenset(names)
        """The config's names as it spells them: slot values, in whatever letters."""
        self.entity_ids = entity_ids or {}
        """Each device's entity id to the names (lowercased) of the devices that have it."""
        self.own = self.names | self.entity_ids.keys()
        """The config's own strings a slot may carry: names as spelled, entity ids."""

    @classmethod
    def of(cls, config: Config) -> Vocabulary:
        """The template words plus this home's names (see the module's docstring)."""
        words, intents = _closed()
        home = config.home
        spelled = [*home.areas, *home.media, *home.list_items, *home.timer_names]
        spelled += [f.name for f in home.floors] + [d.name for d in home.devices]
        names = [*spelled, *(a for d in home.devices for a in d.aliases)]
        names += [a for aliases in home.area_aliases.values() for a in aliases]
        names += [a for f in home.floors for a in f.aliases]
        names += [k.value for k in DeviceKind] + [c for cs in DEVICE_CLASSES.values() for c in cs]
        names += [s for custom in home.sentences for s in custom.sentences]
        entity_ids: dict[str, set[str]] = {}
        for d in home.devices:
            if d.entity_id is not None:
                entity_ids.setdefault(d.entity_id, set()).add(d.name.lower())
        vocabulary = cls(words | _name_words(names), intents, spelled, entity_ids)
        vocabulary.intents.update(custom.intent for custom in home.sentences)
        return vocabulary

    def entity_of(self, entity_id: str, name: str) -> bool:
        """Is `entity_id` the entity of a device called `name` (any case)?"""
        return name.lower() in self.entity_ids.get(entity_id, set())

    def learn(self, sets: Iterable[SentenceSet]) -> None:
        """Add the phone's sentences (from the `sentences` command the phone sent)."""
        for s in sets:
            self.intents.add(s.intent)
            self.words.update(_name_words(s.sentences))

    def unknown(self, text: str) -> list[str]:
        """The words of `text` that are not in the closed set."""
        return [w for w in split_words(text) if w not in self.words]


class PhoneSentences:
    """The sets of sentences the phone sent (its `sentences` commands), and the one the ears
    run.

    Kept in `path` (beside the link's outbox; None: in RAM only) so that a restarted link still
    knows the words of the set the ears run, which the ears keep across restarts. The phone's
    last `PHONE_SENTENCES_KEPT` sets (`recent`, newest first), and apart from them the one the
    ears last said is in force (`running`, from their answer: `confirm`), which no number of
    sets sent after it can push out: a phone that sends nine sets before the ears answer the
    first must not make the link forget the words of the set the ears still run (review L5).
    """

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.recent: list[tuple[SentenceSet, ...]] = []
        """The last sets the phone sent, newest first."""
        self.running: tuple[SentenceSet, ...] | None = None
        """The set the ears last said is in force, if the phone sent it."""
        self._load()

    @property
    def sent(self) -> list[tuple[SentenceSet, ...]]:
        """Every set kept: the one the ears run first, then the phone's recent ones."""
        head = [self.running] if self.running is not None else []
        return head + [s for s in self.recent if s != self.running]

    def _load(self) -> None:
        if self.path is None:
            return
        try:
            if not self.path.exists():
                return
            data = json.loads(self.path.read_text())
            if isinstance(data, list):  # as the link kept them before `running`
                data = {"recent": data, "running": None}
            recent = [tuple(SentenceSet.model_validate(s) for s in sets) for sets in data["recent"]]
            running = data["running"]
            if running is not None:
                running = tuple(SentenceSet.model_validate(s) for s in running)
        except Exception as exc:
            # Any of it (RecursionError: '[' nested deeper than the parser's stack): a file
            # that cannot be read must not stop the link. Only words are lost: intents of the
            # phone's sentences wait for it to send them again (the gate drops them meanwhile).
            why = f"{type(exc).__name__}: {str(exc)[:200]}"
            log.error("cannot read %s (%s): the phone's sentences are unknown", self.path, why)
            return
        self.recent, self.running = recent[:PHONE_SENTENCES_KEPT], running

    def add(self, sets: list[SentenceSet]) -> None:
        """The phone sent `sets`."""
        key = tuple(sets)
        self.recent = [key, *(s for s in self.recent if s != key)][:PHONE_SENTENCES_KEPT]
        self._write()

    def confirm(self, sets: list[SentenceSet]) -> None:
        """The ears run `sets`: if the phone sent them, keep them (see the class docstring)."""
        key = tuple(sets)
        if key in self.sent and self.running != key:
            self.running = key
            self._write()

    def _write(self) -> None:
        if self.path is None:
            return
        dump = lambda sets: [s.model_dump() for s in sets]  # noqa: E731
        data = {
            "running": dump(self.running) if self.running is not None else None,
            "recent": [dump(sets) for sets in self.recent],
        }
        try:
            # 0600 whatever the umask: the wearer's own sentences (the unit's UMask says so too).
            durable.write_file(self.path, json.dumps(data))
        except OSError as exc:
            log.error("cannot keep the phone's sentences in %s: %s", self.path, exc.strerror)
