"""Sentences to intents and slots, for the demo home."""

from __future__ import annotations

import pytest

from pendant.core.config import Config
from pendant.ears.understand.nlu import IntentParser

CASES: list[tuple[str, str, dict[str, object]]] = [
    ("turn on the TV in the Kitchen", "HassTurnOn", {"name": "TV", "area": "Kitchen"}),
    ("turn off lights in the Office", "HassTurnOff", {"area": "Office", "domain": "light"}),
    ("turn the lights on", "HassTurnOn", {"domain": "light"}),
    ("turn Bed Light on", "HassTurnOn", {"name": "Bed Light"}),
    ("open the blinds in the Office", "HassTurnOn",
     {"device_class": "blind", "area": "Office", "domain": "cover"}),
    ("close the Kitchen windows", "HassTurnOff",
     {"device_class": "window", "area": "Kitchen", "domain": "cover"}),
    ("lock the Front Door", "HassTurnOn", {"name": "Front Door"}),
    ("unlock the front door", "HassTurnOff", {"name": "Front Door"}),
    ("set Bed Light brightness to 50 percent", "HassLightSet",
     {"name": "Bed Light", "brightness": 50}),
    ("set brightness to fifty percent", "HassLightSet", {"brightness": 50}),
    ("set the color of the Bed Light to yellow", "HassLightSet",
     {"name": "Bed Light", "color": "yellow"}),
    ("set lights to red", "HassLightSet", {"color": "red"}),
    ("set a timer for five minutes", "HassStartTimer", {"minutes": 5}),
    ("set a timer for 1 minute", "HassStartTimer", {"minutes": 1}),
    ("create a timer for 5 and a half minutes", "HassStartTimer", {"minutes": 5, "seconds": 30}),
    ("start a timer for one hour and eight minutes", "HassStartTimer", {"hours": 1, "minutes": 8}),
    ("start a timer for twenty five seconds", "HassStartTimer", {"seconds": 25}),
    ("cancel all timers", "HassCancelAllTimers", {}),
    ("stop my timer", "HassCancelTimer", {}),
    ("pause the timer", "HassPauseTimer", {}),
    ("resume the timer", "HassUnpauseTimer", {}),
    ("timer status", "HassTimerStatus", {}),
    ("what time is it", "HassGetCurrentTime", {}),
    ("what's the date", "HassGetCurrentDate", {}),
    ("what's the weather in New York", "HassGetWeather", {"name": "New York"}),
    ("what's the temperature", "HassClimateGetTemperature", {}),
    ("what's the temp of the EcoBee", "HassClimateGetTemperature", {"name": "EcoBee"}),
    ("is the Front Door unlocked", "HassGetState", {"name": "Front Door", "state": "unlocked"}),
    ("is the Sliding Door open", "HassGetState", {"name": "Sliding Door", "state": "open"}),
    ("what is the Outdoor Humidity", "HassGetState", {"name": "Outdoor Humidity"}),
    ("never mind", "HassNevermind", {}),
    ("pause", "HassMediaPause", {}),
    ("resume", "HassMediaUnpause", {}),
    ("resume TV", "HassMediaUnpause", {"name": "TV"}),
    ("next", "HassMediaNext", {}),
    ("skip this song", "HassMediaNext", {}),
    ("add milk to my shopping list", "HassListAddItem", {"item": "milk", "name": "Shopping List"}),
    ("activate Mood Lighting", "HassTurnOn", {"name": "Mood Lighting"}),
    ("run Party Time script", "HassTurnOn", {"name": "Party Time"}),
    ("where is my phone", "FindMyPhone", {}),
    ("Ring my phone!", "FindMyPhone", {}),
]  # fmt: skip


@pytest.fixture(scope="module")
def nlu(config: Config) -> IntentParser:
    return IntentParser(config)


@pytest.mark.parametrize(("text", "intent", "slots"), CASES)
def test_intents_and_slots(
    nlu: IntentParser, text: str, intent: str, slots: dict[str, object]
) -> None:
    match = nlu.parse(text)
    assert match is not None, text
    assert match.name == intent
    assert match.slot_values() == slots
    for slot in match.slots:
        assert slot.entity == slot.name
        if isinstance(slots.get(slot.name), int):
            assert type(slot.value) is int  # spoken numbers come out as numbers


def test_raw_values_are_the_words_said(nlu: IntentParser) -> None:
    match = nlu.parse("set a timer for twenty five minutes")
    assert match is not None
    assert match.text == "set a timer for twenty five minutes"
    assert [(s.name, s.value, s.raw_value) for s in match.slots] == [("minutes", 25, "twenty five")]


def test_no_intent(nlu: IntentParser) -> None:
    for text in ["", "the quick brown fox", "oov 2", "turn on the garage lights"]:
        assert nlu.parse(text) is None, text


def test_home_assistant_intents_back_free_text(nlu: IntentParser, config: Config) -> None:
    # Not an intent the closed set claims (any words follow), but Home Assistant's sentences
    # know it.
    text = "broadcast that dinner is ready"
    assert IntentParser(config, home_assistant=False).parse(text) is None
    match = nlu.parse(text)
    assert match is not None and match.name == "HassBroadcast"
    assert match.slot_values() == {"message": "dinner is ready"}


def test_custom_intent_from_config(config: Config) -> None:
    from pendant.core.config import CustomSentences

    home = config.home.model_copy(
        update={
            "sentences": [CustomSentences(intent="PartyMode", sentences=["[it's] party o'clock"])]
        }
    )
    nlu = IntentParser(config.model_copy(update={"home": home}))
    match = nlu.parse("It's party o'clock")
    assert match is not None and match.name == "PartyMode"


def test_names_with_digits_are_understood_as_heard(config: Config) -> None:
    """The recogniser says "two" for the 2 in "Poo poo sensor 2" (it outputs words); the
    device is still the one meant, and one without the digit stays itself."""
    from pendant.core.config import HomeDevice
    from pendant.core.names import normalize

    devices = [
        HomeDevice(name=n, kind="sensor")
        for n in ("Poo poo sensor", "Poo poo sensor 2", "Heat pump CO2 sensor", "Furnace")  # type: ignore[arg-type]
    ]
    home = config.home.model_copy(update={"devices": devices, "areas": ["Kitchen", "Room 101"]})
    nlu = IntentParser(config.model_copy(update={"home": home}))
    for said, name in [
        ("what's the poo poo sensor 2", "Poo poo sensor 2"),
        ("what's the poo poo sensor two", "Poo poo sensor 2"),
        ("what's the poo poo sensor", "Poo poo sensor"),
        ("what is the heat pump co2 sensor", "Heat pump CO2 sensor"),
    ]:
        assert " ".join(normalize(said)).count("two") == said.count("2") + said.count("two")
        match = nlu.parse(said)
        assert match is not None, said
        assert (match.name, match.slot_values()) == ("HassGetState", {"name": name}), said
    match = nlu.parse("turn on the lights in room 101")
    assert match is not None and match.slot_values().get("area") == "Room 101"


def test_here_is_the_speakers_area(config: Config) -> None:
    # The pendant does not know its room: "in here" is published as the speaker's context,
    # with the home's default area when it names one.
    match = IntentParser(config).parse("turn on the lights in here")
    assert match is not None and match.name == "HassTurnOn"
    assert match.slot_values() == {"domain": "light", "area_context": "here"}
    home = config.home.model_copy(update={"default_area": "Office"})
    match = IntentParser(config.model_copy(update={"home": home})).parse("lights off in here")
    assert match is not None and match.name == "HassTurnOff"
    assert match.slot_values() == {"domain": "light", "area_context": "here", "area": "Office"}


def test_the_area_home_assistant_gives_wins_over_the_default_area(config: Config) -> None:
    # cmd/area tells the pendant its room; without one (cleared) the default area stands.
    home = config.home.model_copy(update={"default_area": "Office"})
    parser = IntentParser(config.model_copy(update={"home": home}))
    match = parser.parse("turn on the lights in here", here="Kitchen")
    assert match is not None and match.name == "HassTurnOn"
    assert match.slot_values() == {"domain": "light", "area_context": "here", "area": "Kitchen"}
    by_name = {s.name: s for s in match.slots}
    # "here" is no area's name: a consumer looking areas up by entity must not find it.
    assert (by_name["area_context"].entity, by_name["area"].entity) == ("area_context", "area")
    assert by_name["area"].raw_value == ""  # nothing was said for it
    match = parser.parse("turn on the lights in here", here=None)
    assert match is not None and match.slot_values()["area"] == "Office"
    # A named area is what was said, whatever room the wearer is in.
    match = parser.parse("turn off the lights in the office", here="Kitchen")
    assert match is not None and match.slot_values()["area"] == "Office"
    assert "area_context" not in match.slot_values()
    # And it needs no default area.
    match = IntentParser(config).parse("lights on in here", here="Kitchen")
    assert match is not None and match.slot_values()["area"] == "Kitchen"


def test_a_rival_that_means_another_action_contests_the_sentence(nlu: IntentParser) -> None:
    match = nlu.parse("turn on the tv")
    assert match is not None
    assert nlu.contested(match, []) is None
    assert nlu.contested(match, ["switch on the tv"]) is None  # the same action
    assert nlu.contested(match, ["switch on the tv", "turn off the tv"]) == "turn off the tv"
    fifty = nlu.parse("set the bed light to fifty percent")
    assert fifty is not None
    assert nlu.contested(fifty, ["set the bed light to fifteen percent"]) is not None
