"""The templates of the closed set, and this home's lists for their slots.

Home Assistant's own English sentences (home-assistant-intents) for the intents we claim, kept
by rule to what this home can mean (`home_assistant_dict`), and `templates/en.yaml` with the
wearer's `home.sentences`; the slot lists hold this home's areas, names and kinds of device,
and numbers as spoken words. `pendant.ears.understand.grammar` compiles them.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from hassil import (
    IntentData,
    Intents,
    RangeSlotList,
    SlotList,
    TextSlotList,
)

from pendant.core.names import normalize, number_words

if TYPE_CHECKING:
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
def home_assistant_english_text() -> str:
    """The installed home-assistant-intents' English sentences as JSON text; RuntimeError
    when the package has none."""
    # Kept as text: every caller gets its own copy to change (json.loads), and the
    # fingerprint hashes exactly what the sentences were.
    from home_assistant_intents import get_intents

    data = get_intents("en")
    if data is None:
        raise RuntimeError("home-assistant-intents has no English intents")
    return json.dumps(data)


def home_assistant_english() -> dict[str, Any]:
    """All of Home Assistant's English intents (a fresh copy), as hassil reads them."""
    return json.loads(home_assistant_english_text())


def kinds_of(value: Any) -> set[str]:
    """A template's `domain` (one name, a list, or nothing) as a set of device kinds."""
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
            fixed = kinds_of((block.get("slots") or {}).get("domain"))
            needed = kinds_of((block.get("requires_context") or {}).get("domain"))
            if (fixed and not fixed & kinds) or (needed and not needed & kinds):
                continue
            blocks.append(block)
        if blocks:
            intents[name] = {**intent, "data": blocks}
    data["intents"] = intents
    return _spell_digits(data)


def spelled(text: Any) -> Any:
    """Digits in one template's text as words, leaving {lists} and <rules> alone."""
    if not isinstance(text, str) or not any(c.isdigit() for c in text):
        return text
    parts = re.split(r"(\{[^}]*\}|<[^>]*>)", text.replace("1/2", "half"))
    return "".join(p if p[:1] in "{<" else re.sub(r"\d+(?:\.\d+)*", _digit_words, p) for p in parts)


def _spell_digits(data: dict[str, Any]) -> dict[str, Any]:
    """Digits in template text as the recogniser says them ("CO2 level" -> "CO two level"),
    so the NLU matches what the ears hear. Only what is said changes: sentences, rules and
    what list values sound like, not the slot values they give."""
    spell = spelled

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
    wanted = kinds_of((data.requires_context or {}).pop("device_class", None))
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
