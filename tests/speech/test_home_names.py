"""A home named as Home Assistant names it: accents, ordinals, hyphens ("Café", "2nd Floor",
"Hi-Fi"), device aliases and entity ids, from the config through the grammar (what the ears
can hear), the NLU (what it means), the link's gate (what may leave) and the Home Assistant
event (what an automation reads)."""

from __future__ import annotations

import json

import pytest

from pendant.core.config import Config, parse_config
from pendant.core.events import Intent, Slot
from pendant.core.names import normalize
from pendant.core.vocabulary import Vocabulary
from pendant.ears.understand.grammar import Grammar, build_grammar
from pendant.ears.understand.nlu import IntentMatch, IntentParser
from pendant.link.discovery import event_message, named_text
from pendant.link.gate import Gate

LOCK = "lock.nuki_smart_lock_3_0_pro_a8032ab12345_front_door_lock"
HOME = {
    "device_id": "pendant-names",
    "home": {
        "areas": ["Café", "Kitchen", "Bedroom"],
        # Keyed in any case; the intent names the area (the floor) as the config spells it.
        "area_aliases": {"kitchen": ["Cooking Area"]},
        "floors": [{"name": "2nd Floor", "areas": ["Bedroom"], "aliases": ["Upstairs"]}],
        "devices": [
            {"name": "Hi-Fi", "kind": "media_player", "area": "Café",
             "entity_id": "media_player.hi_fi"},
            {"name": "Bed Light", "kind": "light", "area": "Bedroom", "aliases": ["Night Light"],
             "entity_id": "light.bed_light"},
            # Two lamps of one name: which is meant is Home Assistant's to tell (by area).
            {"name": "Lamp", "kind": "light", "area": "Kitchen", "entity_id": "light.kitchen_lamp"},
            {"name": "Lamp", "kind": "light", "area": "Café", "entity_id": "light.cafe_lamp"},
            # Long, with hex: an id a gate judging text would take for encoded bytes.
            {"name": "Front Door", "kind": "lock", "entity_id": LOCK},
        ],
    },
}  # fmt: skip


@pytest.fixture(scope="module")
def home() -> Config:
    return parse_config(HOME)


@pytest.fixture(scope="module")
def nlu(home: Config) -> IntentParser:
    return IntentParser(home)


@pytest.fixture(scope="module")
def heard(home: Config) -> Grammar:
    return build_grammar(home)


def understood(nlu: IntentParser, heard: Grammar, text: str) -> IntentMatch:
    """What the ears make of `text`: heard (in the closed set), then understood."""
    words = normalize(text)
    assert heard.accepts(words), text
    match = nlu.parse(" ".join(words))
    assert match is not None, text
    return match


def entity_ids(match: IntentMatch) -> dict[str, str | None]:
    return {s.name: s.entity_id for s in match.slots}


def test_names_with_accents_and_hyphens_are_heard_and_spelled_as_the_config_spells_them(
    nlu: IntentParser, heard: Grammar
) -> None:
    match = understood(nlu, heard, "turn on the hi fi in the cafe")
    assert match.name == "HassTurnOn"
    assert match.slot_values() == {"name": "Hi-Fi", "area": "Café"}
    assert {s.name: s.raw_value for s in match.slots} == {"name": "hi fi", "area": "cafe"}
    assert entity_ids(match) == {"name": "media_player.hi_fi", "area": None}


def test_a_floor_with_an_ordinal_is_heard_in_words(nlu: IntentParser, heard: Grammar) -> None:
    match = understood(nlu, heard, "turn off the lights on the second floor")
    assert match.slot_values() == {"floor": "2nd Floor", "domain": "light"}


def test_an_alias_names_the_device_by_its_name(nlu: IntentParser, heard: Grammar) -> None:
    match = understood(nlu, heard, "turn on the night light")
    assert match.name == "HassTurnOn"
    assert match.slot_values() == {"name": "Bed Light"}
    assert [s.raw_value for s in match.slots] == ["night light"]
    assert entity_ids(match) == {"name": "light.bed_light"}


@pytest.mark.parametrize(
    ("said", "slots", "raw"),
    [
        ("turn off the lights in the cooking area", {"area": "Kitchen", "domain": "light"},
         "cooking area"),
        ("turn off the lights upstairs", {"floor": "2nd Floor", "domain": "light"}, "upstairs"),
        ("turn on the upstairs lights", {"floor": "2nd Floor", "domain": "light"}, "upstairs"),
    ],
)  # fmt: skip
def test_an_area_or_floor_alias_names_the_area_or_floor_by_its_name(
    nlu: IntentParser, heard: Grammar, said: str, slots: dict[str, str], raw: str
) -> None:
    match = understood(nlu, heard, said)
    assert match.slot_values() == slots
    assert [s.raw_value for s in match.slots if s.name in ("area", "floor")] == [raw]
    # Without the alias the words are no name of this home's: not heard.
    assert not heard.accepts(normalize(said.replace(raw, "pantry")))


def test_a_name_two_devices_share_carries_an_entity_only_where_the_area_tells_them_apart(
    nlu: IntentParser, heard: Grammar
) -> None:
    match = understood(nlu, heard, "turn on the lamp")
    assert match.slot_values() == {"name": "Lamp"}
    assert entity_ids(match) == {"name": None}
    match = understood(nlu, heard, "turn on the lamp in the kitchen")
    assert match.slot_values() == {"name": "Lamp", "area": "Kitchen"}
    assert entity_ids(match)["name"] == "light.kitchen_lamp"


def intent_of(match: IntentMatch, **slot_updates: object) -> bytes:
    slots = [s.model_copy(update=slot_updates) if s.name == "name" else s for s in match.slots]
    event = Intent(
        device_id="pendant-names", name=match.name, text=match.text, confidence=0.9, slots=slots
    )
    return event.to_json()


def test_the_gate_lets_names_out_as_spelled_with_their_own_entity_only(
    home: Config, nlu: IntentParser, heard: Grammar
) -> None:
    gate = Gate(Vocabulary.of(home), home.device_id)
    match = understood(nlu, heard, "turn on the hi fi in the cafe")
    out = gate.admit(intent_of(match))
    assert isinstance(out, Intent)
    assert {s.name: (s.value, s.entity_id) for s in out.slots} == {
        "name": ("Hi-Fi", "media_player.hi_fi"),
        "area": ("Café", None),
    }
    # Another device's entity beside this name (a lock past the tap it waits for), an entity
    # the config does not have, a name that is none of the config's in letters not ASCII.
    for update in (
        {"entity_id": LOCK},
        {"entity_id": "light.kitchen"},
        {"value": "Hï-Fi", "entity_id": None},
    ):
        assert gate.admit(intent_of(match, **update)) is None, update
    assert gate.dropped == {"vocabulary": 2, "blob": 1}
    # An alias heard: the name and its entity go out, the words said were the alias's.
    alias = understood(nlu, heard, "turn on the night light")
    assert gate.admit(intent_of(alias)) is not None
    # An area's and a floor's alias heard: the area and the floor go out by their names.
    for said, slot in (
        ("turn off the lights in the cooking area", ("area", "Kitchen")),
        ("turn off the lights upstairs", ("floor", "2nd Floor")),
    ):
        out = gate.admit(intent_of(understood(nlu, heard, said)))
        assert isinstance(out, Intent), said
        assert slot in {(s.name, s.value) for s in out.slots}
    # A gate whose config has no such alias takes the words for none of the home's.
    unaliased = parse_config({**HOME, "home": {**HOME["home"], "area_aliases": {}}})
    cooking = understood(nlu, heard, "turn off the lights in the cooking area")
    assert Gate(Vocabulary.of(unaliased), unaliased.device_id).admit(intent_of(cooking)) is None
    lock = gate.admit(intent_of(understood(nlu, heard, "unlock the front door")))
    assert isinstance(lock, Intent) and lock.slots[0].entity_id == LOCK


def test_home_assistant_reads_the_entity_beside_the_name(home: Config, nlu: IntentParser) -> None:
    match = nlu.parse("turn on the hi fi in the cafe")
    assert match is not None
    event = Intent(device_id="pendant-names", name=match.name, text=match.text, confidence=1,
                   slots=match.slots)  # fmt: skip
    _, payload = event_message(home, event)
    body = json.loads(payload)
    assert body["name"] == "Hi-Fi" and body["area"] == "Café"
    assert body["name_entity_id"] == "media_player.hi_fi"
    # Not `entity_id`: Home Assistant takes an entity with that attribute for a group.
    assert "entity_id" not in body
    # What the blueprint hands to Assist, which knows "Café", not "cafe".
    assert body["text"] == "turn on the hi fi in the cafe"
    assert body["named_text"] == "turn on the Hi-Fi in the Café"


@pytest.mark.parametrize(
    ("said", "named"),
    [
        ("turn off the lights on the second floor", "turn off the lights on the 2nd Floor"),
        ("turn on the night light", "turn on the Bed Light"),
        ("turn off the lights in the cooking area", "turn off the lights in the Kitchen"),
        ("turn on the lamp in the kitchen", "turn on the Lamp in the Kitchen"),
        ("set a timer for five minutes", "set a timer for five minutes"),
    ],
)
def test_the_named_text_spells_the_homes_names_as_home_assistant_has_them(
    home: Config, nlu: IntentParser, said: str, named: str
) -> None:
    match = nlu.parse(said)
    assert match is not None
    event = Intent(device_id="pendant-names", name=match.name, text=match.text, confidence=1,
                   slots=match.slots)  # fmt: skip
    assert named_text(home, event) == named


def test_slots_without_an_entity_say_nothing_of_one() -> None:
    slot = Slot(name="area", value="Kitchen", raw_value="kitchen", entity="area")
    assert "entity_id" not in json.loads(slot.model_dump_json(exclude_none=True))


def test_an_eyes_intent_carries_no_entity(home: Config) -> None:
    """The eyes name no device: a ReadText with an entity (the lock's) is dropped, the same
    one without it passes."""
    from pendant.core import bus
    from pendant.core.events import Slot

    gate = Gate(Vocabulary.of(home), home.device_id)

    def read(entity_id: str | None) -> bytes:
        slot = Slot(name="text", value="exit", raw_value="", entity="text", entity_id=entity_id)
        return Intent(
            device_id="pendant-names", name="ReadText", text="exit", confidence=0.9, slots=[slot]
        ).to_json()

    assert gate.admit(read(LOCK), topic=bus.EYES_INTENT_TOPIC) is None
    assert gate.dropped == {"vocabulary": 1}
    assert isinstance(gate.admit(read(None), topic=bus.EYES_INTENT_TOPIC), Intent)
