"""Home Assistant MQTT discovery: the pendant appears as a device with entities.

The link publishes these retained on connect, and again when Home Assistant says `online` on
`homeassistant/status` (it forgets retained discovery only when its broker does, but a
restarted Home Assistant re-reads it from this announcement). Everything here is built from
the config, fixed names and the intent names of the sentences the phone sent (its `sentences`
command, as the link checked it), never from the bus: no utterance text can end up in a
retained message.

Two shapes (`link.discovery`):
- "device": one `homeassistant/device/<id>/config` with every entity under `cmps`
  (Home Assistant 2024.11 and later);
- "components": one `homeassistant/<platform>/<id>/<key>/config` per entity (older Home
  Assistant, openHAB).
The link also subscribes to its own discovery topics: a retained announcement this config no
longer makes (the other shape, discovery turned off) comes back to it and is cleared with an
empty retained payload, so Home Assistant removes that entity and nothing else.

Keys are Home Assistant's full option names, except the documented abbreviations of the
device-discovery envelope itself: `dev` (device), `o` (origin), `cmps` (components) and `p`
(platform).

Intents go out as events on `pendant/<id>/event` (never retained), with `event_type` = the
intent name, as Home Assistant's event entity requires; the other keys become attributes. Home
Assistant drops an event whose type the entity's `event_types` does not list ("Invalid event
type"), so that list is every intent name the link's gate lets out (`event_types`): the closed
set's, the config's sentences', the phone's sentences' and the eyes'. The phone's grow while
the link runs, and the link announces again when they do.

Entity ids: `default_entity_id` (`<platform>.<device id>_<key>`, made a valid entity id), which
replaced `object_id` in Home Assistant 2025.10; `unique_id` stays `<device id>_<key>`, as
before, so Home Assistant keeps the entities it has.

    pendant --config pendant.toml discovery   # what this config would publish
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable
from typing import Any

from pendant import __version__
from pendant.core.config import Config
from pendant.core.events import EYES_INTENTS, Answer, Intent, SentenceSet
from pendant.core.vocabulary import Vocabulary

log = logging.getLogger(__name__)

PREFIX = "homeassistant"
STATUS_TOPIC = f"{PREFIX}/status"
"""Home Assistant's birth (`online`) and last will (`offline`)."""
ANNOUNCE_DELAY_S = 5.0
"""After `online`, wait up to this long at random, so a houseful of pendants does not burst."""
QOS = 1
MAX_EVENT_TYPES_BYTES = 8192
"""`event_types` as JSON at most this long, so that an announcement stays well under the
device-local mosquitto's packet limit (`max_packet_size 16384`, services/mosquitto), the link's
only broker when `link.host` is unset: it would disconnect the link for a bigger one, at every
connect. The closed set's names take under 1 KiB; the rest is for the phone's."""

ANSWER_EVENT_TYPE = "answer"
"""The event entity's type for an `answer` (issue 18), listed while `escalate.enabled`.
Lowercase, beside Home Assistant's CamelCase intents (a phone's own intent named "answer"
would share it)."""
Message = tuple[str, bytes]
Component = dict[str, Any]

# Jinja, rendered by Home Assistant. `.get` because the status event omits unset fields
# (battery_pct, camera_muted on older firmware): a missing key renders None (unknown).
BATTERY_TEMPLATE = "{{ value_json.get('battery_pct') }}"
LISTENING_TEMPLATE = (
    "{{ 'ON' if value_json.get('state') in ('ready', 'listening')"
    " and not value_json.get('mic_muted', false) else 'OFF' }}"
)
MUTED_TEMPLATE = "{{{{ 'ON' if value_json.get('{key}', false) else 'OFF' }}}}"


def base_topic(config: Config) -> str:
    """Where this pendant's topics live on the home broker: `<link.topic_prefix>/<device_id>`."""
    return f"{config.link.topic_prefix}/{config.device_id}"


def event_topic(config: Config) -> str:
    """Where intents go out as events, for Home Assistant's event entity (never retained)."""
    return f"{base_topic(config)}/event"


def event_types(config: Config, phone: Iterable[Iterable[SentenceSet]] = ()) -> list[str]:
    """Every intent name the link's gate lets out, for the event entity's `event_types`.

    The gate passes an intent only if it is one of the eyes' or its name is in its
    vocabulary (`pendant.link.gate`): the closed set's, the config's sentences' and the phone's
    (`pendant.core.vocabulary`). `phone`: the sets the phone sent, the one the ears run first
    (`PhoneSentences.sent`); their names are listed while the list stays within
    `MAX_EVENT_TYPES_BYTES`, the rest left out with a warning (Home Assistant then drops their
    events). An open-vocabulary recogniser (whisper) may understand more of Home Assistant's
    intents, but the gate drops those: listing them would promise events that never come.
    """
    names = Vocabulary.of(config).intents | EYES_INTENTS
    if config.escalate.enabled:
        names.add(ANSWER_EVENT_TYPE)
    size = len(json.dumps(sorted(names)))
    left_out: set[str] = set()
    for sets in phone:
        for s in sets:
            if s.intent in names or s.intent in left_out:
                continue
            cost = len(json.dumps(s.intent)) + len(", ")
            if size + cost > MAX_EVENT_TYPES_BYTES:
                left_out.add(s.intent)
                continue
            names.add(s.intent)
            size += cost
    if left_out:
        log.warning(
            "discovery: %d of the phone's intents are not announced to Home Assistant (too "
            "many names), which drops their events",
            len(left_out),
        )
    return sorted(names)


def device_name(config: Config) -> str:
    """What Home Assistant calls the device: "Pendant a1b2c3" for `pendant-a1b2c3`."""
    if config.device_id == "pendant":
        return "Pendant"
    return f"Pendant {config.device_id.removeprefix('pendant-')}"


def entity_id(config: Config, platform: str, key: str) -> str:
    """`default_entity_id`: `<platform>.<device id>_<key>` as Home Assistant accepts it.

    Its entity ids are lowercase letters, digits and single underscores (`VALID_ENTITY_ID` in
    homeassistant/core.py); a device id may hold '-', even '--'.
    """
    return f"{platform}.{re.sub(r'[^a-z0-9]+', '_', f'{config.device_id}_{key}')}"


def components(config: Config, intents: Iterable[str] | None = None) -> dict[str, Component]:
    """key → one entity's options, with `p` (platform).

    `intents`: the event entity's `event_types` (default: `event_types(config)`).
    """
    base, dev = base_topic(config), config.device_id
    status, mute = f"{base}/status", f"{base}/cmd/mute"

    def switch(name: str, arg: str, status_key: str) -> Component:
        return {
            "p": "switch",
            "name": name,
            "icon": "mdi:microphone-off" if arg == "mic" else "mdi:camera-off",
            "command_topic": mute,
            "payload_on": json.dumps({arg: True}),
            "payload_off": json.dumps({arg: False}),
            "state_topic": status,
            "value_template": MUTED_TEMPLATE.format(key=status_key),
            "state_on": "ON",
            "state_off": "OFF",
            # What Home Assistant shows is what the device reports, not what was asked.
            "optimistic": False,
        }

    entities: dict[str, Component] = {
        "intent": {
            "p": "event",
            "name": "Intent",
            "icon": "mdi:account-voice",
            "state_topic": event_topic(config),
            "event_types": sorted(intents) if intents is not None else event_types(config),
        },
        "battery": {
            "p": "sensor",
            "name": "Battery",
            "device_class": "battery",
            "unit_of_measurement": "%",
            "state_class": "measurement",
            "state_topic": status,
            "value_template": BATTERY_TEMPLATE,
            "entity_category": "diagnostic",
        },
        "listening": {
            "p": "binary_sensor",
            "name": "Listening",
            "icon": "mdi:ear-hearing",
            "state_topic": status,
            "value_template": LISTENING_TEMPLATE,
            "payload_on": "ON",
            "payload_off": "OFF",
            "entity_category": "diagnostic",
        },
        "mic_mute": switch("Microphone mute", "mic", "mic_muted"),
        "camera_mute": switch("Camera mute", "camera", "camera_muted"),
        "identify": {
            "p": "button",
            "name": "Identify",
            "device_class": "identify",
            "command_topic": f"{base}/cmd/identify",
            "payload_press": "{}",
            "entity_category": "diagnostic",
        },
        "buzz": {
            "p": "button",
            "name": "Buzz",
            "icon": "mdi:vibrate",
            "command_topic": f"{base}/cmd/buzz",
            "payload_press": json.dumps({"pattern": "attention"}),
        },
    }
    # No category for the event, the mute switches and the buzz: they are what the device is
    # for (the buzz calls the wearer), and belong on the dashboard Home Assistant makes.
    for key, entity in entities.items():
        entity.update(
            unique_id=f"{dev}_{key}",
            default_entity_id=entity_id(config, entity["p"], key),
            availability_topic=f"{base}/availability",
            payload_available="online",
            payload_not_available="offline",
            qos=QOS,
        )
    return entities


def _device(config: Config) -> dict[str, Any]:
    device: dict[str, Any] = {
        "identifiers": [f"pendant_{config.device_id}"],
        "name": device_name(config),
        "manufacturer": "Pendant",
        "model": "Pendant",
        "sw_version": __version__,
    }
    if config.link.app_url:
        device["configuration_url"] = config.link.app_url
    return device


def _origin() -> dict[str, Any]:
    # No support_url: the project has no public address yet.
    return {"name": "pendant", "sw_version": __version__}


def device_topic(config: Config) -> str:
    """The retained topic of the "device" shape: one message with every entity."""
    return f"{PREFIX}/device/{config.device_id}/config"


def component_topic(config: Config, platform: str, key: str) -> str:
    """The retained topic of one entity (`key`, of `platform`) in the "components" shape."""
    return f"{PREFIX}/{platform}/{config.device_id}/{key}/config"


def _encode(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()


def own_filter(config: Config) -> str:
    """Every discovery topic of this device, in both shapes."""
    return f"{PREFIX}/+/{config.device_id}/#"


def messages(config: Config, intents: Iterable[str] | None = None) -> list[Message]:
    """What the link publishes, retained, for `link.discovery` ("off": nothing).

    `intents`: the event entity's `event_types` (default: `event_types(config)`).
    """
    mode = config.link.discovery
    if mode == "off":
        return []
    entities = components(config, intents)
    if mode == "device":
        payload = {"dev": _device(config), "o": _origin(), "cmps": entities, "qos": QOS}
        return [(device_topic(config), _encode(payload))]
    if mode == "components":
        out: list[Message] = []
        for key, entity in entities.items():
            # The platform is in the topic; `p` belongs to the device envelope only.
            options = {k: v for k, v in entity.items() if k != "p"}
            payload = {**options, "dev": _device(config), "o": _origin()}
            out.append((component_topic(config, entity["p"], key), _encode(payload)))
        return out
    return []


def is_stale(current: list[Message], topic: str, payload: bytes) -> bool:
    """A retained announcement of ours that `current` no longer makes (another mode, a
    removed entity, discovery turned off): the link clears it with an empty retained
    payload, which is how Home Assistant is told to remove it."""
    return bool(payload) and topic.endswith("/config") and topic not in {t for t, _ in current}


def event_message(config: Config, event: Intent) -> Message:
    """An intent as a Home Assistant event: slots as attributes, fixed keys winning. A slot
    that carries its device's entity id adds it as `<slot>_entity_id` (`name_entity_id`):
    not `entity_id`, which Home Assistant reads as a group's members (`expand()`, the
    more-info dialog)."""
    body: dict[str, Any] = {s.name: s.value for s in event.slots}
    body.update({f"{s.name}_entity_id": s.entity_id for s in event.slots if s.entity_id})
    body.update(event_type=event.name, text=event.text, confidence=event.confidence, id=event.id)
    # The sentence for Assist (the blueprint), the names spelled as the config spells them;
    # never for what the camera read or saw: printed words are not the wearer's command.
    if event.name not in EYES_INTENTS:
        body["named_text"] = named_text(config, event)
    # Where an answer goes (the blueprint's `cmd/say`), so an automation needs no topic typed.
    body["reply_topic"] = f"{base_topic(config)}/cmd/say"
    return event_topic(config), json.dumps(body).encode()


def answer_event_message(config: Config, event: Answer) -> Message:
    """A bigger model's answer (`pendant.link.ask`) as a Home Assistant event of type
    `ANSWER_EVENT_TYPE`: the question as sent, the words, the outcome, who answered."""
    body = {
        "event_type": ANSWER_EVENT_TYPE,
        "question": event.question,
        "text": event.text,
        "outcome": event.outcome,
        "target": event.target,
        "id": event.id,
        "reply_topic": f"{base_topic(config)}/cmd/say",
    }
    return event_topic(config), json.dumps(body).encode()


def named_text(config: Config, event: Intent) -> str:
    """The intent's sentence with the home's names spelled as the config (and so Home
    Assistant) spells them: "turn on the hi fi in the cafe" is "turn on the Hi-Fi in the
    Café", and an alias said is the device's name. Assist, which the blueprint hands the
    sentence to, knows "Café" and "2nd Floor", not "cafe" and "second floor". Made from the
    slots the gate let out, so it says nothing they did not."""
    home = config.home
    names = {*home.areas, *home.media, *home.list_items, *home.timer_names}
    names |= {f.name for f in home.floors} | {d.name for d in home.devices}
    text = event.text
    named = [s for s in event.slots if isinstance(s.value, str) and s.value in names]
    # Longest first: "kitchen lights" (a device) before "kitchen" (an area) within it.
    for slot in sorted(named, key=lambda s: len(s.raw_value), reverse=True):
        if slot.raw_value:
            said = re.compile(rf"(?<![\w']){re.escape(slot.raw_value)}(?![\w'])")
            text = said.sub(lambda _, value=slot.value: value, text, count=1)
    return text
