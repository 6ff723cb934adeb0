"""Sentences to intents with hassil, Home Assistant's own matcher.

Three layers, tried in order:
1. our templates (`templates/en.yaml`) plus the wearer's `home.sentences`;
2. Home Assistant's English sentences for the intents we claim, as this home can use them
   (`templates.home_assistant_dict`). With 1, the closed set the grammar-constrained
   recogniser can produce, so every sentence it outputs has an intent;
3. all of Home Assistant's English intents, for free text from an open-vocabulary
   recogniser that was not snapped to the closed set.
All see the same slot lists built from the home.

    # sentences on stdin, JSON out:
    python -m pendant.ears.understand.nlu --config examples/pendant.toml
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any

from hassil import Intents, RecognizeResult, recognize_best

from pendant.core.events import Slot
from pendant.core.names import normalize
from pendant.ears.understand.templates import (
    POLITE_AFTER,
    POLITE_BEFORE,
    home_assistant_english,
    load_intents,
)

if TYPE_CHECKING:
    from collections.abc import Iterable

    from pendant.core.config import Config

MAX_SLOTS = 16
# Home Assistant's sentences about the speaker's own room ("lights on in here") take the
# area from context. A wearable does not know its room, so the NLU gives hassil this
# stand-in and publishes the slot `area_context: "here"` instead (plus `area`: the room Home
# Assistant last said the wearer is in, else the home's default area); a name no area can
# have, since it holds "<".
HERE = "<here>"
SKIP_WORDS = sorted({*POLITE_BEFORE, *POLITE_AFTER}, key=len, reverse=True)


@dataclass(frozen=True, slots=True)
class IntentMatch:
    """An intent read in a sentence: its name, its slots, and the sentence."""

    name: str
    slots: list[Slot]
    text: str
    """The sentence matched, normalised to lowercase words."""

    def slot_values(self) -> dict[str, str | int | float]:
        """Each slot's value by the slot's name (of two with one name, the later)."""
        return {s.name: s.value for s in self.slots}

    def to_json(self) -> dict[str, Any]:
        """The match as plain JSON types: what `python -m pendant.ears.understand.nlu` prints."""
        return {
            "intent": self.name,
            "text": self.text,
            "slots": [s.model_dump() for s in self.slots],
        }


@cache
def _home_assistant_intents() -> Intents:
    # Parsed once per process: the English file is large and the same for every home.
    return Intents.from_dict(home_assistant_english())


def _value(value: Any) -> str | int | float:
    """hassil gives 5.0 for '5' and 5 for 'five': publish whole numbers as int either way."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, int | float | str):
        return value
    return str(value)


class IntentParser:
    """`IntentParser(config).parse("turn on the kitchen lights")` -> IntentMatch | None."""

    def __init__(self, config: Config, home_assistant: bool = True) -> None:
        sources, self._slot_lists = load_intents(config)
        self._default_area = config.home.default_area
        self._devices = config.home.devices
        self._layers = [*sources, _home_assistant_intents()] if home_assistant else sources

    def parse(self, text: str, here: str | None = None) -> IntentMatch | None:
        """`here`: the area the wearer is in, when known (cmd/area); else home.default_area."""
        sentence = " ".join(normalize(text))
        if not sentence:
            return None
        for intents in self._layers:
            result = self._recognize(sentence, intents)
            if result is not None:
                break
        else:
            return None
        area = here or self._default_area
        slots = self._with_entity(self._slots(result, area))
        return IntentMatch(result.intent.name, slots, sentence)

    def _with_entity(self, slots: list[Slot]) -> list[Slot]:
        """`slots` with the `name` slot carrying its device's entity id, when the config
        knows it and the name (with the area and domain said, if any) is one device's: two
        lamps of one name in different rooms are Home Assistant's to tell apart."""
        values = {s.name: s.value for s in slots}
        name = values.get("name")
        if not isinstance(name, str):
            return slots
        area, domain = values.get("area"), values.get("domain")
        devices = [
            d
            for d in self._devices
            if d.name == name
            and (area is None or (d.area or "").lower() == str(area).lower())
            and (domain is None or d.kind.value == domain)
        ]
        if len(devices) != 1 or devices[0].entity_id is None:
            return slots
        entity_id = devices[0].entity_id
        return [
            s.model_copy(update={"entity_id": entity_id}) if s.name == "name" else s for s in slots
        ]

    def contested(
        self, match: IntentMatch, rivals: Iterable[str], here: str | None = None
    ) -> str | None:
        """The first of the recogniser's `rivals` (sentences it heard nearly as well as
        `match`) that means another action, or None: "turn on the tv" against "turn off the
        tv" is too close to call, against "switch on the tv" it is not."""
        for rival in rivals:
            other = self.parse(rival, here=here)
            if other is None or (other.name, other.slot_values()) != (
                match.name,
                match.slot_values(),
            ):
                return rival
        return None

    def _recognize(self, sentence: str, intents: Intents) -> RecognizeResult | None:
        # Prefer a named device over an area reading: "turn off the kitchen lights" is the
        # device Kitchen Lights when the home has one, as Home Assistant resolves it.
        return recognize_best(
            sentence,
            intents,
            slot_lists=self._slot_lists,
            skip_words=SKIP_WORDS,
            intent_context={"area": HERE},
            language="en",
            best_slot_name="name",
        )

    @staticmethod
    def _slots(result: RecognizeResult, default_area: str | None) -> list[Slot]:
        slots: list[Slot] = []
        seen: set[str] = set()
        for entity in result.entities_list:
            if entity.name in seen or len(slots) >= MAX_SLOTS:
                continue  # hassil can report a slot twice (e.g. from a list and a fixed slot)
            seen.add(entity.name)
            if entity.value == HERE:
                # Not entity "area": a consumer looking up the area by entity (Hermes) must
                # not take "here" for the name of one.
                here = Slot(name="area_context", value="here", raw_value="", entity="area_context")
                slots.append(here)
                if default_area is not None:
                    slots.append(Slot(name="area", value=default_area, raw_value="", entity="area"))
                continue
            raw = entity.text_clean if isinstance(entity.text, str) else ""
            slots.append(
                Slot(
                    name=entity.name[:100],
                    value=_value(entity.value),
                    raw_value=raw[:100],
                    entity=entity.name[:100],
                )
            )
        return slots


def main(argv: list[str] | None = None) -> int:
    """Reads sentences from stdin, one a line, and prints each one's intent as JSON (or "no intent")
    until stdin ends; 2 if the config is invalid."""
    from pendant.core.config import load_config
    from pendant.core.errors import ConfigError

    parser = argparse.ArgumentParser(prog=f"python -m {__name__}", description=__doc__)
    parser.add_argument("--config", help="pendant.toml (default: the device's, else built-in)")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    nlu = IntentParser(config)
    interactive = sys.stdin.isatty()
    while True:
        if interactive:
            print("> ", end="", flush=True)
        line = sys.stdin.readline()
        if not line:
            return 0
        if not line.strip():
            continue
        match = nlu.parse(line)
        print(json.dumps(match.to_json()) if match else "no intent", flush=True)


if __name__ == "__main__":
    sys.exit(main())
