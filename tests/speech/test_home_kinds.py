"""Floors, binary sensors, persons, valves, vacuums, media names and the intents that use
them: heard (in the closed set) and understood with the slots Home Assistant expects."""

from __future__ import annotations

import tomllib
from typing import Any

import pytest

from pendant.core.config import Config
from pendant.core.names import normalize
from pendant.ears.understand.grammar import Grammar, build_grammar
from pendant.ears.understand.nlu import IntentParser

HOME = """
[home]
areas = ["Kitchen", "Bedroom", "Hall"]
media = ["Abbey Road", "Morning Jazz"]
list_items = ["oat milk", "tea"]
timer_names = ["bread"]

[[home.floors]]
name = "Upstairs"
areas = ["Bedroom"]

[[home.floors]]
name = "Ground Floor"
areas = ["Kitchen", "Hall"]

[[home.devices]]
name = "Hall Light"
kind = "light"
area = "Hall"

[[home.devices]]
name = "Smoke Alarm"
kind = "binary_sensor"
device_class = "smoke"
area = "Kitchen"

[[home.devices]]
name = "Back Door"
kind = "binary_sensor"
device_class = "door"

[[home.devices]]
name = "Sam"
kind = "person"

[[home.devices]]
name = "Water Valve"
kind = "valve"

[[home.devices]]
name = "Robo"
kind = "vacuum"

[[home.devices]]
name = "Speaker"
kind = "media_player"
area = "Kitchen"

[[home.devices]]
name = "Thermostat"
kind = "climate"

[[home.devices]]
name = "Bedroom Blind"
kind = "cover"
device_class = "blind"
area = "Bedroom"

[[home.devices]]
name = "Groceries"
kind = "todo"
"""


def _config(text: str) -> Config:
    return Config.model_validate(tomllib.loads(text))


@pytest.fixture(scope="module")
def home() -> tuple[Grammar, IntentParser]:
    config = _config(HOME)
    return build_grammar(config), IntentParser(config)


@pytest.mark.parametrize(
    ("sentence", "intent", "slots"),
    [
        ("turn off the lights upstairs", "HassTurnOff", {"floor": "Upstairs", "domain": "light"}),
        ("turn on the ground floor lights", "HassTurnOn", {"floor": "Ground Floor"}),
        ("is the back door open", "HassGetState",
         {"name": "Back Door", "state": "on", "device_class": "door"}),
        ("is the smoke alarm on", "HassGetState", {"name": "Smoke Alarm", "device_class": "smoke"}),
        ("is sam at home", "HassGetState", {"name": "Sam", "state": "home", "domain": "person"}),
        ("is anyone home", "HassGetState", {"state": "home", "domain": "person"}),
        ("open the water valve", "HassTurnOn", {"name": "Water Valve", "domain": "valve"}),
        ("set water valve position to 50", "HassSetPosition",
         {"name": "Water Valve", "position": 50}),
        ("start robo", "HassVacuumStart", {"name": "Robo"}),
        ("return robo to base", "HassVacuumReturnToBase", {"name": "Robo"}),
        ("vacuum the ground floor", "HassVacuumStart", {"floor": "Ground Floor"}),
        ("play abbey road", "HassMediaSearchAndPlay", {"search_query": "Abbey Road"}),
        ("play the album abbey road on the speaker", "HassMediaSearchAndPlay",
         {"search_query": "Abbey Road", "media_class": "album", "name": "Speaker"}),
        ("set speaker volume to 40", "HassSetVolume", {"name": "Speaker", "volume_level": 40}),
        ("set the thermostat to 20.5 degrees", "HassClimateSetTemperature",
         {"name": "Thermostat", "temperature": 20.5}),
        ("set the bedroom blind position to 30 percent", "HassSetPosition",
         {"name": "Bedroom Blind", "position": 30}),
        ("add five minutes to the timer", "HassIncreaseTimer", {"minutes": 5}),
        ("remove two minutes from the bread timer", "HassDecreaseTimer",
         {"minutes": 2, "name": "bread"}),
        ("add oat milk to my groceries", "HassListAddItem",
         {"item": "oat milk", "name": "Groceries"}),
        ("put tea on the list", "HassShoppingListAddItem", {"item": "tea"}),
        ("check tea off my shopping list", "HassShoppingListCompleteItem", {"item": "tea"}),
        ("remove oat milk from my groceries list", "HassListCompleteItem",
         {"item": "oat milk", "name": "Groceries"}),
    ],
)  # fmt: skip
def test_heard_and_understood(
    home: tuple[Grammar, IntentParser], sentence: str, intent: str, slots: dict[str, Any]
) -> None:
    grammar, nlu = home
    assert grammar.accepts(normalize(sentence)), sentence
    match = nlu.parse(sentence)
    assert match is not None and match.name == intent
    assert slots.items() <= match.slot_values().items()


@pytest.mark.parametrize(
    "sentence",
    [
        "is the smoke alarm open",  # a door's question; the alarm is a smoke sensor
        "is the back door detected",
        "play yellow submarine",  # not one of home.media
        "add milk to my shopping list",  # home.list_items replaced the built-in items
        "broadcast that dinner is ready",  # any words: not claimed
        "hello home assistant",  # small talk: not claimed
    ],
)
def test_not_in_the_closed_set(home: tuple[Grammar, IntentParser], sentence: str) -> None:
    grammar, _ = home
    assert not grammar.accepts(normalize(sentence)), sentence


def test_a_device_with_no_class_answers_every_class_question() -> None:
    config = _config(HOME.replace('device_class = "smoke"\n', ""))
    grammar = build_grammar(config)
    for sentence in ("is the smoke alarm on", "is the smoke alarm open"):
        assert grammar.accepts(normalize(sentence)), sentence


def test_floor_sentences_need_floors() -> None:
    config = _config(HOME)
    config = config.model_copy(update={"home": config.home.model_copy(update={"floors": []})})
    assert not build_grammar(config).accepts(normalize("turn off the lights upstairs"))
