"""Home Assistant MQTT discovery: the pendant appears as a device with entities.

The link publishes these retained on connect, and again when Home Assistant says `online` on
`homeassistant/status` (it forgets retained discovery only when its broker does, but a
restarted Home Assistant re-reads it from this announcement). Everything here is built from
the config and fixed names, never from the bus: no utterance text can end up in a retained
message.

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
intent name, as Home Assistant's event entity requires; the other keys become attributes.

    pendant --config pendant.toml discovery   # what this config would publish
"""

from __future__ import annotations

import json
from typing import Any

from pendant import __version__
from pendant.config import Config
from pendant.events import Intent

PREFIX = "homeassistant"
STATUS_TOPIC = f"{PREFIX}/status"
"""Home Assistant's birth (`online`) and last will (`offline`)."""
ANNOUNCE_DELAY_S = 5.0
"""After `online`, wait up to this long at random, so a houseful of pendants does not burst."""
QOS = 1

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
    return f"{config.link.topic_prefix}/{config.device_id}"


def event_topic(config: Config) -> str:
    return f"{base_topic(config)}/event"


def intent_names(config: Config) -> list[str]:
    """Every intent name the NLU can publish in this home, for `event_types`.

    Our templates, the wearer's sentences and Home Assistant's sentences for the intents we
    claim (as this home can use them) are the whole closed set a grammar-constrained
    recogniser can produce. The NLU falls back to all of Home Assistant's intents for free
    text, which only an open-vocabulary recogniser (whisper) produces, so those are added for
    it: a missing name would make Home Assistant drop the event.
    """
    from pendant.ears.understand.grammar import home_assistant_dict, template_dict

    names = set(template_dict(config)["intents"]) | set(home_assistant_dict(config)["intents"])
    if config.asr.backend == "whisper":
        from pendant.ears.understand.nlu import _home_assistant_intents

        names |= set(_home_assistant_intents().intents)
    return sorted(names)


def components(config: Config) -> dict[str, Component]:
    """key → one entity's options, with `p` (platform)."""
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
            "event_types": intent_names(config),
        },
        "battery": {
            "p": "sensor",
            "name": "Battery",
            "device_class": "battery",
            "unit_of_measurement": "%",
            "state_class": "measurement",
            "state_topic": status,
            "value_template": BATTERY_TEMPLATE,
        },
        "listening": {
            "p": "binary_sensor",
            "name": "Listening",
            "icon": "mdi:ear-hearing",
            "state_topic": status,
            "value_template": LISTENING_TEMPLATE,
            "payload_on": "ON",
            "payload_off": "OFF",
        },
        "mic_mute": switch("Microphone mute", "mic", "mic_muted"),
        "camera_mute": switch("Camera mute", "camera", "camera_muted"),
        "identify": {
            "p": "button",
            "name": "Identify",
            "device_class": "identify",
            "command_topic": f"{base}/cmd/identify",
            "payload_press": "{}",
        },
    }
    for key, entity in entities.items():
        entity.update(
            unique_id=f"{dev}_{key}",
            object_id=f"{dev}_{key}",
            availability_topic=f"{base}/availability",
            payload_available="online",
            payload_not_available="offline",
            qos=QOS,
        )
    return entities


def _device(config: Config) -> dict[str, Any]:
    return {
        "identifiers": [f"pendant_{config.device_id}"],
        "name": config.device_id,
        "manufacturer": "Pendant",
        "model": "Pendant",
        "sw_version": __version__,
    }


def _origin() -> dict[str, Any]:
    # No support_url: the project has no public address yet.
    return {"name": "pendant", "sw_version": __version__}


def device_topic(config: Config) -> str:
    return f"{PREFIX}/device/{config.device_id}/config"


def component_topic(config: Config, platform: str, key: str) -> str:
    return f"{PREFIX}/{platform}/{config.device_id}/{key}/config"


def _encode(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()


def own_filter(config: Config) -> str:
    """Every discovery topic of this device, in both shapes."""
    return f"{PREFIX}/+/{config.device_id}/#"


def messages(config: Config) -> list[Message]:
    """What the link publishes, retained, for `link.discovery` ("off": nothing)."""
    mode = config.link.discovery
    entities = components(config)
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
    """An intent as a Home Assistant event: slots as attributes, fixed keys winning."""
    body: dict[str, Any] = {s.name: s.value for s in event.slots}
    body.update(event_type=event.name, text=event.text, confidence=event.confidence, id=event.id)
    # Where an answer goes (the blueprint's `cmd/say`), so an automation needs no topic typed.
    body["reply_topic"] = f"{base_topic(config)}/cmd/say"
    return event_topic(config), json.dumps(body).encode()
