"""Rhasspy / Node-RED consumers can read what the pendant publishes on hermes/*.

Real recordings go through the whole pendant (real mosquitto, real models); a subscriber on the
home broker collects `hermes/intent/#`, `hermes/nlu/intentNotRecognized` and
`hermes/asr/textCaptured`, and every payload is checked two ways:

1. Against the message shapes Rhasspy documents (rhasspy.readthedocs.io, "Reference", MQTT
   API: `hermes/intent/<intentName>`, `hermes/nlu/intentNotRecognized`,
   `hermes/asr/textCaptured`): required keys present with the right JSON types, optional
   keys, when sent, of the right type. This check always runs.
2. By parsing it with rhasspy-hermes itself (`NluIntent.from_dict`, ...), Rhasspy's own
   message classes. Its last release (0.6.2, 2021) pins `paho-mqtt==1.5.0` and
   `dataclasses-json==0.5.6`, while the pendant (and aiomqtt) need paho-mqtt >= 2.1; its
   modules work with both newer ones, so the dev group of the lock takes it with those pins
   overridden (pyproject.toml, `[tool.uv] override-dependencies`): `make test` runs this check.

docs/node-red-flow.json, the example flow, is checked here too: it is a well-formed Node-RED
export, and its `mqtt in` topics match topics the pendant really published in the run.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from pendant.app.local_broker import LocalBroker
from pendant.core.events import Intent, Transcript
from pendant.ears.understand.nlu import IntentParser
from pendant.link import hermes
from tests.conftest import REPO, demo_config, speech_files
from tests.integration.test_runner import press_to_talk_messages
from tests.support.pipeline import run_files

try:
    from rhasspyhermes.asr import AsrTextCaptured
    from rhasspyhermes.nlu import NluIntent, NluIntentNotRecognized
except ImportError:  # not a declared dependency; see the module docstring
    NluIntent = NluIntentNotRecognized = AsrTextCaptured = None  # type: ignore[assignment,misc]

FLOW = REPO / "docs" / "node-red-flow.json"
DEVICE_ID = "pendant-demo"
TIMEOUT_S = 60
COMMANDS = ("set a timer for 5 minutes", "what's the date", "turn off lights in the Office")
HERMES = ("hermes/intent/", "hermes/nlu/intentNotRecognized", "hermes/asr/textCaptured")

# -- the shapes Rhasspy documents ------------------------------------------------------------

STR, NUM, OBJ, LIST = (str,), (int, float), (dict,), (list,)
NULL = (type(None),)

INTENT_SHAPE = {
    "required": {"input": STR, "intent": OBJ},
    "optional": {
        "siteId": STR,  # defaults to "default"; Rhasspy treats it as compulsory
        "id": STR + NULL,
        "slots": LIST + NULL,
        "sessionId": STR + NULL,
        "customData": STR + NULL,
        "asrTokens": LIST + NULL,
        "asrConfidence": NUM + NULL,
        "rawInput": STR + NULL,
        "wakewordId": STR + NULL,
        "lang": STR + NULL,
    },
}
INTENT_INNER_SHAPE = {"required": {"intentName": STR, "confidenceScore": NUM}, "optional": {}}
SLOT_SHAPE = {
    "required": {"entity": STR, "value": OBJ},
    "optional": {"slotName": STR, "rawValue": STR, "confidence": NUM, "range": OBJ + NULL},
}
NOT_RECOGNIZED_SHAPE = {
    "required": {"input": STR},
    "optional": {
        "siteId": STR,
        "id": STR + NULL,
        "customData": STR + NULL,
        "sessionId": STR + NULL,
    },
}
TEXT_CAPTURED_SHAPE = {
    "required": {"text": STR, "likelihood": NUM, "seconds": NUM},
    "optional": {
        "siteId": STR,
        "sessionId": STR + NULL,
        "wakewordId": STR + NULL,
        "asrTokens": LIST + NULL,
        "lang": STR + NULL,
        # Not in Rhasspy's textCaptured: the pendant's event id, as in its intent messages,
        # for dropping QoS 1 duplicates (rhasspy-hermes ignores the key).
        "id": STR,
    },
}


def check_shape(body: dict[str, Any], shape: dict[str, dict[str, tuple[type, ...]]]) -> None:
    for key, types in shape["required"].items():
        assert key in body, f"required {key!r} missing from {body}"
        assert isinstance(body[key], types) and not isinstance(body[key], bool), (key, body)
    for key, types in shape["optional"].items():
        if key in body:
            assert isinstance(body[key], types) and not isinstance(body[key], bool), (key, body)


def check_intent_shape(body: dict[str, Any]) -> None:
    check_shape(body, INTENT_SHAPE)
    check_shape(body["intent"], INTENT_INNER_SHAPE)
    for slot in body.get("slots") or []:
        check_shape(slot, SLOT_SHAPE)
        assert isinstance(slot["value"].get("kind"), str), slot
        assert "value" in slot["value"], slot


# -- MQTT topic matching ---------------------------------------------------------------------


def topic_matches(pattern: str, topic: str) -> bool:
    """MQTT filter matching: `+` one level, `#` the rest (including none)."""
    pat, top = pattern.split("/"), topic.split("/")
    for i, p in enumerate(pat):
        if p == "#":
            return i == len(pat) - 1
        if i >= len(top) or (p != "+" and p != top[i]):
            return False
    return len(pat) == len(top)


def test_topic_matching() -> None:
    assert topic_matches("hermes/intent/#", "hermes/intent/HassStartTimer")
    assert topic_matches("pendant/+/intent/#", "pendant/pendant-demo/intent/HassTurnOff")
    assert not topic_matches("pendant/+/intent/#", "pendant/a/b/intent/X")
    assert not topic_matches("hermes/intent/#", "hermes/nlu/intentNotRecognized")
    assert not topic_matches("hermes/intent/+", "hermes/intent")
    assert topic_matches("hermes/intent/#", "hermes/intent")


# -- the Node-RED flow ----------------------------------------------------------------------


def load_flow() -> list[dict[str, Any]]:
    flow = json.loads(FLOW.read_text())
    assert isinstance(flow, list) and flow, "a Node-RED export is a JSON array of nodes"
    return flow


def test_node_red_flow_is_an_importable_export() -> None:
    flow = load_flow()
    assert all(isinstance(n, dict) and "id" in n and "type" in n for n in flow)
    ids = [n["id"] for n in flow]
    assert len(ids) == len(set(ids)), "node ids must be unique"
    by_id = {n["id"]: n for n in flow}
    for node in flow:
        for output in node.get("wires", []):
            for target in output:
                assert target in by_id, f"{node['id']} wires to missing {target}"
        if "z" in node:
            assert by_id[node["z"]]["type"] == "tab", node
    brokers = [n for n in flow if n["type"] == "mqtt-broker"]
    assert len(brokers) == 1
    ins = [n for n in flow if n["type"] == "mqtt in"]
    assert {n["topic"] for n in ins} == {"hermes/intent/#", "pendant/+/intent/#"}
    for node in ins:
        assert node["broker"] == brokers[0]["id"] and node["datatype"] == "json", node
    (switch,) = [n for n in flow if n["type"] == "switch"]
    assert switch["property"] == "payload.intent.intentName"
    assert switch["propertyType"] == "msg"
    assert len(switch["rules"]) == len(switch["wires"]) == int(switch["outputs"])
    names = {r["v"] for r in switch["rules"] if r["t"] == "eq"}
    assert {"HassTurnOn", "HassStartTimer"} <= names
    for output in switch["wires"]:
        assert [by_id[t]["type"] for t in output] == ["debug"]


def check_flow_against(published: list[str]) -> None:
    """Each `mqtt in` of the flow receives something the pendant really published."""
    for node in (n for n in load_flow() if n["type"] == "mqtt in"):
        assert any(topic_matches(node["topic"], t) for t in published), (node["topic"], published)


# -- the run ---------------------------------------------------------------------------------


def paired(messages: list[tuple[str, dict[str, Any]]]) -> list[tuple[str, dict, dict]]:
    """(hermes topic, hermes body, the pendant's own intent it mirrors), by event id."""
    native = {m["id"]: m for t, m in messages if t.startswith(f"pendant/{DEVICE_ID}/intent/")}
    return [(t, m, native[m["id"]]) for t, m in messages if t.startswith("hermes/intent/")]


def test_intents_and_transcripts_parse_as_rhasspy_hermes(
    brokers: tuple[LocalBroker, LocalBroker],
) -> None:
    files = [f for f in speech_files("main") if f.stem in COMMANDS]
    assert len(files) == len(COMMANDS)
    config = demo_config()
    got = run_files(config, files, brokers)
    topics = [t for t, _ in got.messages]
    assert not any(t.startswith("hermes/audioServer") for t in topics)
    parser = IntentParser(config)
    expected = {}
    for f in files:
        match = parser.parse(f.stem)
        assert match is not None
        expected[match.name] = match

    pairs = paired(got.messages)
    assert sorted(t for t, _, _ in pairs) == sorted(f"hermes/intent/{n}" for n in expected)
    for topic, body, native in pairs:
        check_intent_shape(body)
        name = body["intent"]["intentName"]
        want = expected[name]
        assert topic == f"hermes/intent/{name}"
        assert body["siteId"] == DEVICE_ID
        assert body["sessionId"] == native["session_id"]
        assert body["input"] == native["text"]
        assert 0 <= body["intent"]["confidenceScore"] <= 1
        by_name = {s["slotName"]: s for s in body["slots"]}
        assert {k: s["value"]["value"] for k, s in by_name.items()} == want.slot_values()
        assert {k: s["rawValue"] for k, s in by_name.items()} == {
            s["name"]: s["raw_value"] for s in native["slots"]
        }
        for slot in body["slots"]:
            kind = "Number" if isinstance(slot["value"]["value"], int | float) else "Custom"
            assert slot["value"]["kind"] == kind
            assert 0 <= slot["confidence"] <= 1

        if NluIntent is not None:
            parsed = NluIntent.from_dict(body)
            assert NluIntent.topic(intent_name=parsed.intent.intent_name) == topic
            assert NluIntent.is_topic(topic) and NluIntent.get_intent_name(topic) == name
            assert parsed.intent.intent_name == name
            assert 0 <= parsed.intent.confidence_score <= 1
            assert parsed.site_id == DEVICE_ID
            assert parsed.session_id == native["session_id"]
            assert parsed.input == native["text"]
            slots = {s.slot_name: s for s in parsed.slots or []}
            assert {k: s.value["value"] for k, s in slots.items()} == want.slot_values()
            assert {k: s.raw_value for k, s in slots.items()} == {
                k: s["rawValue"] for k, s in by_name.items()
            }
            assert parsed.to_dict()["intent"]["intentName"] == name

    timer = next(b for t, b, _ in pairs if t == "hermes/intent/HassStartTimer")
    assert [(s["entity"], s["slotName"], s["rawValue"], s["value"]) for s in timer["slots"]] == [
        ("minutes", "minutes", "five", {"kind": "Number", "value": 5})
    ]
    off = next(b for t, b, _ in pairs if t == "hermes/intent/HassTurnOff")
    area = next(s for s in off["slots"] if s["slotName"] == "area")
    assert (area["rawValue"], area["value"]) == ("office", {"kind": "Custom", "value": "Office"})
    date = next(b for t, b, _ in pairs if t.startswith("hermes/intent/HassGetCurrentDate"))
    assert date["slots"] == []

    captured = [m for t, m in got.messages if t == "hermes/asr/textCaptured"]
    sessions = {n["session_id"]: n["text"] for _, _, n in pairs}
    assert len(captured) == len(pairs)
    for body in captured:
        check_shape(body, TEXT_CAPTURED_SHAPE)
        assert body["siteId"] == DEVICE_ID
        assert sessions[body["sessionId"]] == body["text"]
        assert isinstance(body["id"], str)
        assert 0 <= body["likelihood"] <= 1
        if AsrTextCaptured is not None:
            parsed = AsrTextCaptured.from_dict(body)
            assert AsrTextCaptured.topic() == "hermes/asr/textCaptured"
            assert (parsed.text, parsed.site_id) == (body["text"], DEVICE_ID)
            assert parsed.session_id == body["sessionId"]

    check_flow_against(topics)


def test_not_recognized_parses_as_rhasspy_hermes(
    brokers: tuple[LocalBroker, LocalBroker],
) -> None:
    wav = next(f for f in speech_files("main") if f.stem == "oov_4")
    seen = asyncio.run(asyncio.wait_for(press_to_talk_messages(brokers, wav), TIMEOUT_S))
    native = [m for t, m in seen if t == f"pendant/{DEVICE_ID}/not_recognized"]
    hermes = [m for t, m in seen if t == "hermes/nlu/intentNotRecognized"]
    assert len(native) == len(hermes) == 1, seen
    body = hermes[0]
    check_shape(body, NOT_RECOGNIZED_SHAPE)
    assert body["siteId"] == DEVICE_ID
    assert body["sessionId"] == native[0]["session_id"]
    assert body["id"] == native[0]["id"]
    assert body["input"] == native[0].get("text", "")
    assert not any(t.startswith("hermes/intent/") for t, _ in seen)
    if NluIntentNotRecognized is not None:
        parsed = NluIntentNotRecognized.from_dict(body)
        assert NluIntentNotRecognized.topic() == "hermes/nlu/intentNotRecognized"
        assert (parsed.site_id, parsed.session_id) == (DEVICE_ID, native[0]["session_id"])
        assert parsed.input == body["input"]


@pytest.mark.skipif(NluIntent is None, reason="rhasspy-hermes is not installed")
def test_rhasspy_hermes_rejects_what_it_could_not_read() -> None:
    """The parse is a real check: a payload without a required key does not parse."""
    with pytest.raises(KeyError):
        NluIntent.from_dict({"intent": {"intentName": "X", "confidenceScore": 1.0}})
    with pytest.raises(KeyError):
        AsrTextCaptured.from_dict({"text": "x", "likelihood": 1.0})


def test_an_intent_about_here_mirrors_its_context_and_its_area() -> None:
    """ "Lights on in here": `area_context` keeps its own entity, so a flow that finds the area
    by entity gets the room (from cmd/area or home.default_area), never "here"."""
    config = demo_config()
    match = IntentParser(config).parse("turn on the lights in here", here="Kitchen")
    assert match is not None
    event = Intent(
        device_id=DEVICE_ID, name=match.name, text=match.text, confidence=0.9, slots=match.slots
    )
    topic, payload = hermes.intent_message(event)
    body = json.loads(payload)
    check_intent_shape(body)
    assert topic == "hermes/intent/HassTurnOn"
    slots = {s["slotName"]: s for s in body["slots"]}
    assert slots["area_context"]["entity"] == "area_context"
    assert slots["area_context"]["value"] == {"kind": "Custom", "value": "here"}
    assert [s["value"]["value"] for s in body["slots"] if s["entity"] == "area"] == ["Kitchen"]
    assert slots["area"]["rawValue"] == ""  # nothing was said for it
    if NluIntent is not None:
        parsed = NluIntent.from_dict(body)
        by_entity = {s.entity: s.value["value"] for s in parsed.slots or []}
        assert by_entity["area"] == "Kitchen" and by_entity["area_context"] == "here"


def test_text_captured_carries_the_event_id_and_the_session() -> None:
    """textCaptured has the transcript's `id` (to drop a QoS 1 duplicate by), and keeps the
    session's `sessionId`, which pairs it with its intent; rhasspy-hermes still reads it."""
    event = Transcript(device_id=DEVICE_ID, text="set a timer for five minutes", confidence=0.8)
    topic, payload = hermes.text_captured_message(event)
    body = json.loads(payload)
    check_shape(body, TEXT_CAPTURED_SHAPE)
    assert topic == "hermes/asr/textCaptured"
    assert (body["id"], body["sessionId"]) == (event.id, event.session_id)
    if AsrTextCaptured is not None:
        parsed = AsrTextCaptured.from_dict(body)
        assert (parsed.text, parsed.session_id) == (event.text, event.session_id)
