"""The Hermes mirror (Rhasspy / Node-RED): the same intents in the Hermes JSON shape.

Only the NLU and ASR output topics; never hermes/audioServer/*, which carries audio.

Slots are mirrored one for one (`slotName` = the slot's name, `entity` = its list). A sentence
about the wearer's own room ("lights on in here") carries `area_context` (entity
`area_context`, value "here") and, when the pendant knows the room (from `cmd/area`, else
`home.default_area`), `area` (entity `area`) with an empty `rawValue`: nothing was said for it.

Every message carries the pendant event's `id`, textCaptured too (an extra key there, which
rhasspy-hermes ignores; its `sessionId` stays the session's, so it pairs with the intent).
"""

from __future__ import annotations

import json
from typing import Any

from pendant.core.events import Answer, Intent, NotRecognized, Slot, Transcript


def _slot(slot: Slot) -> dict[str, Any]:
    kind = "Number" if isinstance(slot.value, int | float) else "Custom"
    return {
        "entity": slot.entity,
        "slotName": slot.name,
        "rawValue": slot.raw_value,
        "value": {"kind": kind, "value": slot.value},
        "confidence": 1.0,
    }


def intent_message(event: Intent) -> tuple[str, bytes]:
    """The Hermes topic (`hermes/intent/<name>`) and JSON of an intent."""
    body = {
        "input": event.text,
        "intent": {"intentName": event.name, "confidenceScore": event.confidence},
        "slots": [_slot(s) for s in event.slots],
        "siteId": event.device_id,
        "sessionId": event.session_id,
        "id": event.id,
        "customData": None,
    }
    return f"hermes/intent/{event.name}", json.dumps(body).encode()


def not_recognized_message(event: NotRecognized) -> tuple[str, bytes]:
    """The Hermes topic (`hermes/nlu/intentNotRecognized`) and JSON of held talk that matched no
    intent."""
    body = {
        "input": event.text or "",
        "siteId": event.device_id,
        "sessionId": event.session_id,
        "id": event.id,
        "customData": None,
    }
    return "hermes/nlu/intentNotRecognized", json.dumps(body).encode()


def text_captured_message(event: Transcript) -> tuple[str, bytes]:
    """The Hermes topic (`hermes/asr/textCaptured`) and JSON of a transcript; its `seconds` is
    always 0."""
    body = {
        "text": event.text,
        "likelihood": event.confidence,
        "seconds": 0.0,
        "siteId": event.device_id,
        "sessionId": event.session_id,
        # Not in Hermes' textCaptured (rhasspy-hermes' AsrTextCaptured ignores it), but as in
        # its intent messages: the event's id, by which a consumer drops a QoS 1 duplicate.
        "id": event.id,
    }
    return "hermes/asr/textCaptured", json.dumps(body).encode()


def say_message(event: Answer) -> tuple[str, bytes]:
    """The Hermes topic (`hermes/tts/say`) and JSON of an answer to speak, as Rhasspy's
    text-to-speech takes it."""
    body = {
        "text": event.text,
        "lang": None,
        "id": event.id,
        "siteId": event.device_id,
        "sessionId": event.session_id,
    }
    return "hermes/tts/say", json.dumps(body).encode()
