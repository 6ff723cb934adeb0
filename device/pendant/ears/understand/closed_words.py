"""Write the words and intent names the templates can put in an intent, for the link's gate.

The link may not import the ears, and must not learn from them what they may say (they hold
the microphone: a rogue ears would declare its own code words). So the words of every
template the ears use (ours and Home Assistant's for the intents we claim: sentences,
expansion rules, list values in and out, fixed slot values, numbers as words, and what the
templates glue into words when compiled for a home with every kind of device) are written to
`pendant/data/closed_words.json` at build time, and `pendant.core.vocabulary` adds the home's names
from the config at run time. A test checks the file is current.

`python -m pendant.ears.understand.closed_words` rewrites it (`make schemas`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from pendant.core.config import DEVICE_CLASSES, Config, DeviceKind, Floor, Home, HomeDevice
from pendant.core.names import normalize, number_words
from pendant.core.vocabulary import CLOSED_WORDS, split_words
from pendant.ears.understand.grammar import build_grammar
from pendant.ears.understand.templates import (
    HOME_ASSISTANT_INTENTS,
    POLITE_AFTER,
    POLITE_BEFORE,
    TEMPLATES,
    home_assistant_english,
)

_OPTIONAL = re.compile(r"\[([^\[\]]*)\]")
# Words no template holds but the NLU or the recogniser put out ('here' is the area_context
# value; booleans and numbers come out of hassil as values).
EXTRA = ("here", "context", "true", "false", "minus", "point", "half", "thousand", "percent")


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, int | float) and not isinstance(value, bool):
        yield str(value)
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _strings(k)
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


_MADE_UP = ("zorb", "zarea", "zfloor")


def _every_kind_home() -> Config:
    devices = []
    for kind in DeviceKind:
        devices.append(HomeDevice(name="Zorb", kind=kind, area="Zarea", color=True))
        for device_class in sorted(DEVICE_CLASSES.get(kind.value, ())):
            devices.append(HomeDevice(name="Zorb", kind=kind, device_class=device_class))
    floor = Floor(name="Zfloor", areas=["Zarea"])
    home = Home(areas=["Zarea"], floors=[floor], devices=devices)
    return Config(device_id="closed-words", home=home)


def closed_words() -> dict[str, list[str]]:
    """The words (as spoken and as slot values) and intent names of every template."""
    ours = yaml.safe_load(TEMPLATES.read_text(encoding="utf-8"))
    theirs = home_assistant_english()
    claimed = {k: v for k, v in theirs["intents"].items() if k in HOME_ASSISTANT_INTENTS}
    sources = [ours, claimed, *(theirs.get(k, {}) for k in ("lists", "expansion_rules"))]
    sources.append(theirs.get("skip_words", []))
    words: set[str] = set(EXTRA)
    for text in _strings([*sources, POLITE_BEFORE, POLITE_AFTER]):
        # "door[s]" and "humidity['s]" are optional endings inside a word.
        for variant in (text, _OPTIONAL.sub(r"\1", text), _OPTIONAL.sub("", text)):
            words.update(normalize(variant))  # as the recognisers spell them
            words.update(split_words(variant))  # as slot values carry them ("tv_show", "100")
    words.update(w for n in range(1000) for w in number_words(n).split())
    # What the templates glue at build time ("(room|area|floor)[s]", "{name}['s]"): the words
    # of a home with every kind, class and feature, less its own made-up names.
    words.update(w for w in build_grammar(_every_kind_home()).words if not w.startswith(_MADE_UP))
    intents = set(ours["intents"]) | set(claimed)
    return {"words": sorted(words), "intents": sorted(intents)}


def write(path: Path = CLOSED_WORDS) -> Path:
    """Write `closed_words()` to `path` (the file the link reads)."""
    path.write_text(json.dumps(closed_words(), indent=0, sort_keys=True) + "\n")
    return path


if __name__ == "__main__":
    print(write())
