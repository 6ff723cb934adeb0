"""The phone's sentence sets the tests send, and what the real ears answer about them (as JSON
the phone sends and reads; `SentenceSet(**PARTY)` for the model)."""

from __future__ import annotations

PARTY = {"intent": "PartyMode", "sentences": ["[it's] party time", "let's party"]}
# Accepted, but one sentence is Home Assistant's better match and one word has no sound.
WARNED = {
    "intent": "PartyMode",
    "sentences": ["[it's] party time", "turn on the kitchen lights", "zxqv now"],
}
WARNINGS = [
    {
        "intent": "PartyMode",
        "sentence": "turn on the kitchen lights",
        "reason": "'turn on the kitchen lights' is heard as HassTurnOn",
    },
    {
        "intent": "PartyMode",
        "sentence": "zxqv now",
        "reason": "'zxqv' has no pronunciation: it will hardly ever be heard",
    },
]
