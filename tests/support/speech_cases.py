"""Spoken test cases for the demo home (examples/pendant.toml).

Each :class:`Case` is a simple, natural command with numbers spelled as words, the intent
Home Assistant's sentences give it, and the key slots as hassil fills them (names and areas as
the home spells them, numbers as ints). Slots not listed (state, response, ...) are not checked.
:data:`NON_COMMANDS` are ordinary sentences for which the right answer is no intent at all.

``tools/speech_sets.py`` renders these to WAV files; tests compare recogniser output to them.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Case:
    """One spoken command and what recognising it should give."""

    text: str
    intent: str
    slots: dict[str, str | int] = field(default_factory=dict)


CASES: list[Case] = [
    # HassTurnOn: lights, switches, fans, scenes, scripts, locks and covers.
    Case("turn on the lights in the kitchen", "HassTurnOn", {"area": "Kitchen", "domain": "light"}),
    Case("turn on the bed light", "HassTurnOn", {"name": "Bed Light"}),
    Case("turn on the standing light", "HassTurnOn", {"name": "Standing Light"}),
    Case("switch on the coffee maker", "HassTurnOn", {"name": "Coffee Maker"}),
    Case("turn on the ceiling fan", "HassTurnOn", {"name": "Ceiling Fan"}),
    Case("turn on the tv", "HassTurnOn", {"name": "TV"}),
    Case("activate mood lighting", "HassTurnOn", {"name": "Mood Lighting"}),
    Case("run party time", "HassTurnOn", {"name": "Party Time"}),
    Case("lock the front door", "HassTurnOn", {"name": "Front Door"}),
    Case("open the garage door", "HassTurnOn", {"name": "Garage Door"}),
    # HassTurnOff
    Case("turn off the lights in the office", "HassTurnOff", {"area": "Office", "domain": "light"}),
    Case("turn off the kitchen lights", "HassTurnOff", {"name": "Kitchen Lights"}),
    Case("turn off the bed light", "HassTurnOff", {"name": "Bed Light"}),
    Case("switch off the coffee maker", "HassTurnOff", {"name": "Coffee Maker"}),
    Case("turn off the ceiling fan", "HassTurnOff", {"name": "Ceiling Fan"}),
    Case("turn off the tv", "HassTurnOff", {"name": "TV"}),
    Case("unlock the front door", "HassTurnOff", {"name": "Front Door"}),
    Case("close the sliding door", "HassTurnOff", {"name": "Sliding Door"}),
    # HassLightSet
    Case(
        "set the bed light to fifty percent",
        "HassLightSet",
        {"name": "Bed Light", "brightness": 50},
    ),
    Case(
        "set the kitchen lights brightness to twenty percent",
        "HassLightSet",
        {"name": "Kitchen Lights", "brightness": 20},
    ),
    Case("set the bed light to red", "HassLightSet", {"name": "Bed Light", "color": "red"}),
    Case(
        "set the kitchen lights to blue",
        "HassLightSet",
        {"name": "Kitchen Lights", "color": "blue"},
    ),
    Case(
        "set the lights in the office to eighty percent",
        "HassLightSet",
        {"area": "Office", "brightness": 80},
    ),
    # HassStartTimer
    Case("set a timer for five minutes", "HassStartTimer", {"minutes": 5}),
    Case("start a timer for ten minutes", "HassStartTimer", {"minutes": 10}),
    Case("set a timer for one hour", "HassStartTimer", {"hours": 1}),
    Case("set a timer for thirty seconds", "HassStartTimer", {"seconds": 30}),
    Case(
        "set a timer for two hours and fifteen minutes",
        "HassStartTimer",
        {"hours": 2, "minutes": 15},
    ),
    Case("start a twenty minute timer", "HassStartTimer", {"minutes": 20}),
    # HassCancelTimer, HassPauseTimer, HassUnpauseTimer, HassTimerStatus
    Case("cancel the timer", "HassCancelTimer", {}),
    Case("stop my timer", "HassCancelTimer", {}),
    Case("pause the timer", "HassPauseTimer", {}),
    Case("pause my timer", "HassPauseTimer", {}),
    Case("resume the timer", "HassUnpauseTimer", {}),
    Case("continue my timer", "HassUnpauseTimer", {}),
    Case("how much time is left on my timer", "HassTimerStatus", {}),
    Case("timer status", "HassTimerStatus", {}),
    # HassGetCurrentTime, HassGetCurrentDate
    Case("what time is it", "HassGetCurrentTime", {}),
    Case("what's the time", "HassGetCurrentTime", {}),
    Case("what's the date", "HassGetCurrentDate", {}),
    Case("what is today's date", "HassGetCurrentDate", {}),
    # HassGetWeather
    Case("what's the weather", "HassGetWeather", {}),
    Case("what's the weather in new york", "HassGetWeather", {"name": "New York"}),
    # HassGetState
    Case("is the front door locked", "HassGetState", {"name": "Front Door"}),
    Case("is the garage door open", "HassGetState", {"name": "Garage Door"}),
    Case("what is the outdoor humidity", "HassGetState", {"name": "Outdoor Humidity"}),
    # HassNevermind
    Case("never mind", "HassNevermind", {}),
    # Media
    Case("pause the tv", "HassMediaPause", {"name": "TV"}),
    Case("pause", "HassMediaPause", {}),
    Case("next track", "HassMediaNext", {}),
    Case("skip to the next song on the tv", "HassMediaNext", {"name": "TV"}),
    # HassListAddItem
    Case(
        "add milk to my shopping list", "HassListAddItem", {"item": "milk", "name": "Shopping List"}
    ),
    Case(
        "add eggs to the shopping list",
        "HassListAddItem",
        {"item": "eggs", "name": "Shopping List"},
    ),
    # FindMyPhone (the home's own sentences)
    Case("find my phone", "FindMyPhone", {}),
    Case("where is my phone", "FindMyPhone", {}),
    Case("ring my phone", "FindMyPhone", {}),
]

NON_COMMANDS: list[str] = [
    "I think we should leave around six tonight",
    "the meeting went much better than I expected",
    "my sister is coming to visit next weekend",
    "did you see the game last night",
    "we need to remember to water the plants",
    "that restaurant on the corner has really good soup",
    "I read an interesting book about the ocean",
    "the kids were so tired after school today",
    "can you believe how fast this year has gone",
    "he said the train was running a little late",
]
