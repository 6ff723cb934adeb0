"""The pendant's one config file (TOML), validated strictly at start-up.

Every field carries a description: `pendant config-docs` prints the reference from these
models, so the README and the code cannot disagree.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
import tomllib
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pendant.core import wire
from pendant.core.asking import DEFAULT_ASK_PHRASES
from pendant.core.backends import (
    AUDIO_SOURCES,
    CAMERAS,
    DETECTORS,
    GAUGES,
    PIN_FACTORIES,
    RECOGNIZERS,
)
from pendant.core.errors import ConfigError
from pendant.core.names import (
    ENTITY_ID_MAX_CHARS,
    ENTITY_ID_PATTERN,
    NAME_MAX_CHARS,
    NAME_PATTERN,
)

DEVICE_CONFIG_PATH = Path("/etc/pendant/pendant.toml")
# The device config the package installs as DEVICE_CONFIG_PATH when there is none
# (packaging/pendant.toml copies this same file to /usr/share/pendant/device-pendant.toml).
DEVICE_DEFAULTS_PATH = Path(__file__).parents[1] / "data" / "device-pendant.toml"
# The SD card's pendant.toml, as the image's first boot installs it in the drop-in folder:
# named to come after home-broker.toml, so what the wearer wrote on the card wins.
CARD_DROP_IN = "sd-card.toml"


# A setting that chooses a backend takes its choices (`Literal[X.choices]`) from the backend's
# table in pendant.core.backends: registered once, for the config, its docs and the component.


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DeviceKind(StrEnum):
    """What a device in `home.devices` is: one of Home Assistant's domains (an entity id's
    part before the dot, which `pendant home import` takes it from)."""

    light = "light"
    fan = "fan"
    switch = "switch"
    media_player = "media_player"
    cover = "cover"
    lock = "lock"
    climate = "climate"
    sensor = "sensor"
    script = "script"
    scene = "scene"
    todo = "todo"
    weather = "weather"
    binary_sensor = "binary_sensor"
    person = "person"
    valve = "valve"
    vacuum = "vacuum"


# What people call things: letters (accented Latin ones too: "Café"), digits, spaces,
# hyphens and apostrophes ("2nd Floor", "Hi-Fi"); see pendant.core.names.
Name = Annotated[
    str,
    Field(min_length=1, max_length=NAME_MAX_CHARS, pattern=NAME_PATTERN),
]
NAME_RULE = (
    "a name is letters (accented Latin ones too), digits, spaces, hyphens and apostrophes, "
    "starting with a letter or digit"
)
# What starts a question in conversation mode ("ask home assistant"): words a recogniser writes.
AskPhrase = Annotated[str, Field(min_length=2, max_length=60, pattern=r"^[A-Za-z][A-Za-z0-9' -]*$")]
# Home Assistant's entity ids ("light.bed_light").
EntityId = Annotated[str, Field(max_length=ENTITY_ID_MAX_CHARS, pattern=ENTITY_ID_PATTERN)]


# Home Assistant's device classes, for the kinds whose sentences ask by class ("is smoke
# detected", "open the garage door", "what is the humidity").
DEVICE_CLASSES: dict[str, frozenset[str]] = {
    "binary_sensor": frozenset({
        "battery", "battery_charging", "carbon_monoxide", "cold", "connectivity", "door",
        "garage_door", "gas", "heat", "light", "lock", "moisture", "motion", "moving",
        "occupancy", "opening", "plug", "power", "presence", "problem", "running", "safety",
        "smoke", "sound", "tamper", "update", "vibration", "window"
    }),
    "cover": frozenset({
        "awning", "blind", "curtain", "damper", "door", "garage", "gate", "shade", "shutter",
        "window"
    }),
    "sensor": frozenset({
        "apparent_power", "aqi", "area", "atmospheric_pressure", "battery",
        "blood_glucose_concentration", "carbon_dioxide", "carbon_monoxide", "conductivity",
        "current", "data_rate", "data_size", "date", "distance", "duration", "energy",
        "energy_distance", "energy_storage", "enum", "frequency", "gas", "humidity",
        "illuminance", "irradiance", "moisture", "monetary", "nitrogen_dioxide",
        "nitrogen_monoxide", "nitrous_oxide", "ozone", "ph", "pm1", "pm10", "pm25", "power",
        "power_factor", "precipitation", "precipitation_intensity", "pressure", "reactive_energy",
        "reactive_power", "signal_strength", "sound_pressure", "speed", "sulphur_dioxide",
        "temperature", "timestamp", "volatile_organic_compounds",
        "volatile_organic_compounds_parts", "voltage", "volume", "volume_flow_rate",
        "volume_storage", "water", "weight", "wind_direction", "wind_speed"
    }),
}  # fmt: skip


class HomeDevice(_Strict):
    """One of `[[home.devices]]`: a thing in the home the wearer can name in a sentence."""

    name: Name = Field(
        description="What people call it, e.g. 'Bed Light': letters (accents too), digits, "
        "spaces, hyphens, apostrophes. Intents name the device by it."
    )
    kind: DeviceKind = Field(description="One of: " + ", ".join(k.value for k in DeviceKind) + ".")
    area: Name | None = Field(None, description="The area it is in; must be one of home.areas.")
    aliases: list[Name] = Field(
        default_factory=list,
        description="Other ways to say it (Home Assistant's aliases), e.g. ['Night Light']; "
        "an intent still names the device by its name.",
    )
    color: bool = Field(False, description="Lights only: it takes a colour.")
    brightness: bool = Field(True, description="Lights only: it can be dimmed.")
    device_class: str | None = Field(
        None,
        description="Sensors, binary sensors and covers: Home Assistant's device class "
        "(e.g. 'smoke', 'garage_door', 'humidity'). Set, the device answers only the "
        "questions about its class; unset, any.",
    )
    entity_id: EntityId | None = Field(
        None,
        description="Its Home Assistant entity, e.g. 'light.bed_light' (`pendant home import` "
        "sets it): an intent naming the device carries it in the slot.",
    )

    @model_validator(mode="after")
    def _class_fits_kind(self) -> HomeDevice:
        if self.device_class is None:
            return self
        classes = DEVICE_CLASSES.get(self.kind.value)
        if classes is None:
            raise ValueError(
                f"device_class is for {', '.join(DEVICE_CLASSES)} only, not {self.kind.value}"
            )
        if self.device_class not in classes:
            raise ValueError(
                f"device_class {self.device_class!r} is not a {self.kind.value} class; one of: "
                + ", ".join(sorted(classes))
            )
        return self


class CustomSentences(_Strict):
    """One of `[[home.sentences]]`: an intent of the wearer's own and the sentences that ask
    for it."""

    intent: str = Field(
        description="Intent name published for these sentences, e.g. 'PartyMode'.",
        pattern=r"^[A-Z][A-Za-z0-9]{0,47}$",
    )
    sentences: list[Annotated[str, Field(min_length=1, max_length=200)]] = Field(
        min_length=1, description='hassil templates, e.g. "[it\'s] party time".'
    )


class Floor(_Strict):
    """One of `[[home.floors]]`: a floor, the areas on it and other ways to say it."""

    name: Name = Field(description="What people call it, e.g. 'Upstairs' or 'First Floor'.")
    areas: list[Name] = Field(
        default_factory=list, description="The areas on this floor; each one of home.areas."
    )
    aliases: list[Name] = Field(
        default_factory=list,
        description="Other ways to say it (Home Assistant's aliases), e.g. ['Upstairs']; "
        "an intent still names the floor by its name.",
    )


class Home(_Strict):
    """`[home]`: what the wearer's sentences can name (areas, floors, devices, media, list
    items, timers) and their own intents. An area named anywhere in it must be one of `areas`."""

    areas: list[Name] = Field(
        default_factory=list,
        description="Area names, e.g. ['Kitchen']; also the only names cmd/area takes.",
    )
    area_aliases: dict[Name, list[Name]] = Field(
        default_factory=dict,
        description="Other ways to say an area (Home Assistant's aliases), by area: under "
        "`[home.area_aliases]`, `Kitchen = ['Cooking Area']`; each key one of home.areas (any "
        "case). An intent still names the area by its name.",
    )
    floors: list[Floor] = Field(
        default_factory=list,
        description="Floors and their areas ('lights off upstairs'); an area is on one floor.",
    )
    devices: list[HomeDevice] = Field(default_factory=list, description="Things that can be named.")
    media: list[Name] = Field(
        default_factory=list,
        description="Music, shows and playlists asked for by name ('play My Favorites'); "
        "each is words the recogniser may hear, so keep it to what is played.",
    )
    list_items: list[Name] = Field(
        default_factory=list,
        description="What is added to lists ('add oat milk to my shopping list'); empty: "
        "milk, eggs, bread, butter, cheese, apples, bananas, coffee, sugar, rice, pasta.",
    )
    timer_names: list[Name] = Field(
        default_factory=list,
        description="Names timers are given ('a pizza timer'); empty: pizza, pasta, cookies, "
        "chicken, potatoes, laundry, dinner, oven, homework, medicine.",
    )
    sentences: list[CustomSentences] = Field(
        default_factory=list, description="The wearer's own intents and the sentences for them."
    )
    default_area: Name | None = Field(
        None,
        description="The area a sentence about 'here' ('lights on in here') means when Home "
        "Assistant has not set one on cmd/area: such intents carry the slot area_context "
        "'here', and this as their area; must be one of home.areas.",
    )

    @model_validator(mode="after")
    def _areas_known(self) -> Home:
        known = {a.lower() for a in self.areas}
        if self.default_area is not None and self.default_area.lower() not in known:
            raise ValueError(
                f"default_area {self.default_area!r} is not in home.areas {self.areas!r}"
            )
        for i, dev in enumerate(self.devices):
            if dev.area is not None and dev.area.lower() not in known:
                raise ValueError(
                    f"devices[{i}].area {dev.area!r} is not in home.areas {self.areas!r}"
                )
        entity_ids: dict[str, int] = {}
        for i, dev in enumerate(self.devices):
            if dev.entity_id is None:
                continue
            if dev.entity_id in entity_ids:
                raise ValueError(
                    f"devices[{i}].entity_id {dev.entity_id!r} is also devices"
                    f"[{entity_ids[dev.entity_id]}]'s"
                )
            entity_ids[dev.entity_id] = i
        on_floor: dict[str, str] = {}
        for i, floor in enumerate(self.floors):
            if floor.name.lower() in known:
                raise ValueError(f"floors[{i}].name {floor.name!r} is also an area")
            for area in floor.areas:
                if area.lower() not in known:
                    raise ValueError(
                        f"floors[{i}].areas: {area!r} is not in home.areas {self.areas!r}"
                    )
                if area.lower() in on_floor:
                    raise ValueError(
                        f"floors[{i}].areas: {area!r} is already on {on_floor[area.lower()]!r}"
                    )
                on_floor[area.lower()] = floor.name
        floor_names = [f.name.lower() for f in self.floors]
        if len(set(floor_names)) != len(floor_names):
            raise ValueError("floors: two floors have the same name")
        for area, aliases in self.area_aliases.items():
            if area.lower() not in known:
                raise ValueError(f"area_aliases: {area!r} is not in home.areas {self.areas!r}")
            for alias in aliases:
                if alias.lower() in known and alias.lower() != area.lower():
                    raise ValueError(f"area_aliases.{area}: {alias!r} is another area's name")
        for i, floor in enumerate(self.floors):
            for alias in floor.aliases:
                if alias.lower() in known:
                    raise ValueError(f"floors[{i}].aliases: {alias!r} is an area's name")
        return self

    def aliases_of_area(self, area: str) -> list[str]:
        """The aliases `area_aliases` gives `area` (its key in any case)."""
        said = [
            aliases for key, aliases in self.area_aliases.items() if key.lower() == area.lower()
        ]
        return [a for aliases in said for a in aliases]


class AudioConfig(_Strict):
    """`[audio]`: the microphone on the pendant, or WAV files in simulation."""

    source: Literal[AUDIO_SOURCES.choices] = Field(
        "wav", description="'mic' (sounddevice) on the pendant, 'wav' (files) in simulation."
    )
    files: list[str] = Field(default_factory=list, description="WAV files the 'wav' source plays.")
    realtime: bool = Field(True, description="'wav' source: pace files in real time.")
    gap_ms: int = Field(
        1500, ge=0, le=60_000, description="'wav' source: silence played after each file."
    )
    device: str | None = Field(None, description="'mic' source: sounddevice name or index.")
    capture_rate_hz: int = Field(
        48_000, ge=8_000, le=192_000, description="'mic' source: rate the microphone runs at."
    )
    capture_channels: int = Field(
        2, ge=1, le=8, description="'mic' source: channels the microphone delivers."
    )
    chunk_ms: Literal[10, 20, 30] = Field(30, description="Frame length fed to the VAD.")


class VadConfig(_Strict):
    """`[vad]`: how sound is cut into utterances (webrtcvad's gate, then Silero's check)."""

    @model_validator(mode="before")
    @classmethod
    def _retired(cls, data: Any) -> Any:
        # Retired 2026-12-07: a config that still sets it loads (a device must start), and
        # says once per load what to do.
        if isinstance(data, dict) and "sentence_hangover_ms" in data:
            data = {k: v for k, v in data.items() if k != "sentence_hangover_ms"}
            logging.getLogger(__name__).warning(
                "vad.sentence_hangover_ms is no longer used (a confident command that could "
                "go on waits vad.hangover_ms): remove it from the config"
            )
        return data

    webrtc_aggressiveness: int = Field(2, ge=0, le=3, description="webrtcvad gate, 0 (lax)-3.")
    silero_threshold: float = Field(
        0.3,
        gt=0,
        lt=1,
        description="Silero speech probability that confirms speech; a frame below it is quiet.",
    )
    pre_roll_ms: int = Field(300, ge=0, le=2000, description="Audio kept before speech starts.")
    hangover_ms: int = Field(
        500, ge=100, le=5000, description="Silence that ends an utterance (end-of-speech)."
    )
    min_speech_ms: int = Field(100, ge=30, le=5000, description="Shorter bursts are ignored.")
    max_utterance_s: float = Field(10.0, gt=0.5, le=60, description="Longer utterances are cut.")


class AsrConfig(_Strict):
    """`[asr]`: the recogniser, and how sure it must be of an utterance for an intent."""

    backend: Literal[RECOGNIZERS.choices] = Field(
        "hama",
        description="Recogniser: 'hama' (a phoneme CTC model searching the closed set: few "
        "wrong actions, little other speech accepted), 'pocketsphinx' (accepts more short "
        "commands unheld, and more bystanders' speech) or 'whisper' (Pi 5).",
    )
    min_confidence: float = Field(
        0.5,
        ge=0,
        le=1,
        description="Utterances heard without the button held give no intent below this: "
        "not a word is published.",
    )
    min_confidence_pressed: float = Field(
        0.2,
        ge=0,
        le=1,
        description="The same for what is said while holding the button: it is the wearer's, "
        "so only a mishearing needs ruling out, not a bystander (below it: not_recognized).",
    )


class ListenConfig(_Strict):
    """`[listen]`: always listening or press-to-talk, and which actions wait for a confirming
    tap."""

    mode: Literal["conversation", "press_to_talk"] = Field(
        "conversation",
        description="'conversation': always listening (and holding the button talks too); "
        "'press_to_talk': only the button opens it.",
    )
    confirm_kinds: list[DeviceKind] = Field(
        default_factory=lambda: [DeviceKind.lock, DeviceKind.cover, DeviceKind.valve],
        description="Conversation mode: an action on these kinds of device (unlock, open the "
        "garage door) heard without the button held waits for a tap on the button, within "
        "listen.confirm_s, and is dropped without one. [] acts on everything heard.",
    )
    confirm_s: float = Field(
        8.0,
        ge=1,
        le=60,
        description="How long an action, or a phone's change to the enrolled voices, waits for "
        "its confirming tap.",
    )


class BusConfig(_Strict):
    """`[bus]`: how the components reach the device-local broker (a Unix socket, else host and
    port), and their login."""

    socket: str | None = Field(
        "/run/mosquitto/pendant.sock",
        description="Unix socket of the device-local mosquitto; empty to use host/port.",
    )
    host: str = Field("127.0.0.1", description="Bus host when no socket is set.")
    port: int = Field(1883, ge=1, le=65535, description="Bus port when no socket is set.")
    username: str | None = Field(None, description="Bus user name.")
    password_file: str | None = Field(None, description="File (0600) holding the bus password.")


class LinkConfig(_Strict):
    """`[link]`: the brokers outside the device (the home broker, the phones' socket) and how
    the link sends to them. Refused at load: a password file without a user name, and TLS
    settings that cannot apply (link.cafile with link.tls false, either with no home broker)."""

    socket: str | None = Field(
        None,
        description="Unix socket of the device-local mosquitto, where paired phones read the "
        "public topics and send commands. Alone, it is the outside broker too; with link.host, "
        "the home broker is link.host and this socket serves phones only. The link logs in "
        "there with its bus credentials (or, when it is the only broker, link.username).",
    )
    host: str | None = Field(
        None,
        description="The home broker (Home Assistant, Node-RED): the link publishes there from "
        "its outbox, announces itself (last will included) and takes the home's commands. "
        "Default: none when link.socket is set, else 127.0.0.1.",
    )
    port: int | None = Field(
        None, ge=1, le=65535, description="Home broker port (default 8883 with TLS, else 1883)."
    )
    tls: bool | None = Field(
        None,
        description="TLS to link.host, checked against link.cafile. Default: on, but for a "
        "loopback host (127.0.0.0/8, ::1, localhost). Plaintext to another host only with "
        "false, which logs a warning: its password and every event cross the network readable.",
    )
    cafile: str | None = Field(
        None,
        description="CA certificate (PEM) that must sign the home broker's certificate "
        "(default: the system CA store).",
    )
    username: str | None = Field(None, description="Home broker user name.")
    password_file: str | None = Field(None, description="File (0600) holding its password.")
    topic_prefix: str = Field("pendant", pattern=r"^[a-z0-9_-]{1,32}$", description="Topic root.")
    hermes: bool = Field(True, description="Mirror intents on hermes/intent/* for Node-RED.")
    outbox_path: str = Field(
        "/var/lib/pendant/outbox.sqlite",
        description="SQLite file where events wait for the home broker, across restarts "
        "('' keeps them in RAM only).",
    )
    intent_expiry_s: float = Field(
        300.0,
        gt=0,
        le=7 * 86_400,
        description="Intents (and transcripts, errors) older than this are dropped, not sent late.",
    )
    gate_burst: int = Field(
        10,
        ge=1,
        le=10_000,
        description="Events of one type the schema gate lets out at once; after that one "
        "per link.gate_every_s, the rest waiting their turn.",
    )
    gate_every_s: float = Field(
        0.5,
        gt=0,
        le=3600,
        description="Seconds after which the gate lets one more event of a type out.",
    )
    discovery: Literal["device", "components", "off"] = Field(
        "device",
        description="Home Assistant MQTT discovery: 'device' (one retained message, Home "
        "Assistant 2024.11+), 'components' (one per entity, older Home Assistant, openHAB) or "
        "'off' (removes what was announced).",
    )
    app_url: str | None = Field(
        None,
        max_length=200,
        # http(s), a host, then an optional path; visible ASCII only (it goes into JSON that
        # Home Assistant shows as a link).
        pattern=r"^https?://[!-.0-~]+(/[!-~]*)?$",
        description="The companion app's address as the home reaches the pendant (the web "
        "server, port 8443), e.g. 'https://pendant.local:8443/': Home Assistant's device page "
        "links to it (discovery's configuration_url). Unset: no link.",
    )

    @model_validator(mode="after")
    def _password_needs_user(self) -> LinkConfig:
        if self.password_file and not self.username:
            raise ValueError("link.password_file is set but link.username is not")
        if self.cafile and self.tls is False:
            raise ValueError("link.cafile is set but link.tls is false")
        if self.home_host is None and (self.tls or self.cafile):
            raise ValueError("link.tls and link.cafile are for link.host, not link.socket")
        return self

    @property
    def home_host(self) -> str | None:
        """The home broker's host: link.host, 127.0.0.1 when neither it nor link.socket is
        set, None when the device-local broker (link.socket) is the only one."""
        if self.host:
            return self.host
        return None if self.socket else "127.0.0.1"

    @property
    def phones_apart(self) -> bool:
        """Phones (link.socket) and the home broker (link.host) are two brokers."""
        return bool(self.socket and self.host)

    @property
    def loopback(self) -> bool:
        """The home broker is this machine: nothing the link sends it crosses a network."""
        host = self.home_host
        if host is None:
            return True
        if host.lower() in ("localhost", "localhost."):
            return True
        try:
            return ipaddress.ip_address(host).is_loopback
        except ValueError:
            return False

    @property
    def uses_tls(self) -> bool:
        """Whether the link speaks TLS to the home broker (never over link.socket)."""
        if self.home_host is None:
            return False
        return self.tls if self.tls is not None else not self.loopback

    @property
    def broker_port(self) -> int:
        """link.port, or the usual one for TLS (8883) or plaintext (1883)."""
        return self.port or (8883 if self.uses_tls else 1883)


class BodyConfig(_Strict):
    """`[body]`: the GPIO backend, the battery gauge and the button's timings, which must rise:
    double_press_s < long_hold_s < pairing_hold_s."""

    pin_factory: Literal[PIN_FACTORIES.choices] = Field(
        "lgpio",
        description="GPIO backend: 'lgpio' on the pendant, 'mock' (gpiozero's mock pins, "
        "nothing wired) in simulation.",
    )
    battery: Literal[GAUGES.choices] = Field(
        "pisugar3",
        description="Battery gauge: 'pisugar3' (PiSugar 3 over I2C) or 'simulated' (drains "
        "from body.simulated_start_pct).",
    )
    i2c_bus: int = Field(1, ge=0, le=31, description="'pisugar3': the I2C bus, /dev/i2c-N.")
    low_battery_pct: int = Field(
        15, ge=0, le=100, description="Under this level the battery counts as low (LED, event)."
    )
    battery_poll_s: float = Field(
        30.0, gt=0, le=3600, description="How often the battery gauge is read."
    )
    battery_report_s: float = Field(
        180.0,
        gt=0,
        le=3600,
        description="A battery event goes out at least this often, even when nothing changed.",
    )
    double_press_s: float = Field(
        0.4,
        ge=0.1,
        le=1.0,
        description="Two presses this short, this close together: a double press (read this). "
        "While the pairing window is open, presses this short are counted instead (a phone's "
        "code).",
    )
    long_hold_s: float = Field(
        2.0,
        gt=0.3,
        le=10,
        description="Holding the button this long turns talk into the mute gesture: a buzz, "
        "and letting go toggles the privacy mute.",
    )
    pairing_hold_s: float = Field(
        8.0, gt=0.3, le=60, description="Holding the button this long opens the pairing window."
    )
    simulated_start_pct: int = Field(
        80, ge=0, le=100, description="'simulated' battery: the level it starts at."
    )
    simulated_drain_pct_per_min: float = Field(
        0.5,
        ge=0,
        le=100,
        description="'simulated' battery: how fast it drains (and charges, when charging).",
    )

    @model_validator(mode="after")
    def _holds_in_order(self) -> BodyConfig:
        if not self.double_press_s < self.long_hold_s < self.pairing_hold_s:
            raise ValueError(
                "double_press_s < long_hold_s < pairing_hold_s must hold, got "
                f"{self.double_press_s} / {self.long_hold_s} / {self.pairing_hold_s}"
            )
        return self


class PairingConfig(_Strict):
    """`[pairing]`: the pairing window the button opens."""

    window_s: float = Field(
        120.0,
        gt=0,
        le=900,
        description="How long the pairing window (opened by holding the button for "
        "body.pairing_hold_s) stays open; its one-time phone account is revoked if no phone "
        "the wearer accepted (by pressing the code its screen showed at the web server's "
        "/pair) took it by then.",
    )


class EscalateConfig(_Strict):
    """`[escalate]`: what the closed set cannot hear goes, as text only, to a bigger model the
    wearer chose: Home Assistant's conversation agent, or an OpenAI-compatible chat server on
    the home's network (Ollama, llama.cpp's server, vLLM). Off unless enabled; only the link
    talks to it. Refused at load: enabled without escalate.url, or an openai target without
    escalate.model."""

    enabled: bool = Field(
        False,
        description="Send requests the closed set rejects (press-to-talk, the follow-up "
        "window after a question, and sentences that start with one of escalate.ask_phrases) "
        "to escalate.target. The ears' recogniser process then loads Whisper base "
        "(whisper-base from the model cache) to write them down: about 350 MB more at its peak "
        "(make bench: escalate_recognizer_peak_rss_mb). Off on the Pi Zero 2 W image, "
        "whose 512 MB cannot hold it and whose cores cannot transcribe free speech in time.",
    )
    ask_phrases: list[AskPhrase] = Field(
        default_factory=lambda: list(DEFAULT_ASK_PHRASES),
        max_length=5,
        description="In conversation mode, a sentence the closed set rejects that starts with "
        "one of these (its first word exactly, the rest perhaps slightly misheard) is a question "
        "without the button; the phrase is not sent. To find one, every sentence the closed "
        "set rejects is written down (in RAM, dropped unless it is a question): [] for none, "
        "which saves that CPU.",
    )
    target: Literal["home_assistant", "openai"] = Field(
        "home_assistant",
        description="'home_assistant': its conversation API over the WebSocket API (its "
        "built-in agent, or the one escalate.agent_id names); 'openai': a chat completions "
        "server (…/v1), offered the home's intents as tools.",
    )
    url: str | None = Field(
        None,
        max_length=200,
        pattern=r"^https?://[!-~]+$",
        description="Home Assistant's http(s) address (http://homeassistant.local:8123), or "
        "the chat server's base address up to /v1 (http://192.168.1.20:11434/v1).",
    )
    token_file: str | None = Field(
        None,
        description="File (0600) with Home Assistant's long-lived access token, or the chat "
        "server's API key (none for a server that takes none).",
    )
    cafile: str | None = Field(
        None, description="CA certificate (PEM) for an https:// escalate.url (default: system)."
    )
    model: str | None = Field(
        None,
        max_length=100,
        pattern=r"^[!-~]+$",
        description="openai: the model the server should run, e.g. 'llama3.2:3b'.",
    )
    agent_id: str | None = Field(
        None,
        max_length=100,
        pattern=r"^[a-z0-9_.]+$",
        description="home_assistant: the conversation agent (default: Home Assistant's "
        "built-in one, never the preferred pipeline's agent; with one named, no device goes).",
    )
    timeout_s: float = Field(
        8.0, gt=0, le=60, description="How long to wait for an answer before 'no answer'."
    )

    @field_validator("url")
    @classmethod
    def _address(cls, v: str | None) -> str | None:
        if v is None:
            return v
        parts = urlsplit(v)
        try:
            _ = parts.port  # ValueError when out of range
            (parts.hostname or "").encode("idna")
        except (ValueError, UnicodeError):
            raise ValueError(f"{v[:80]!r} has no valid host and port") from None
        if not parts.hostname:
            raise ValueError(f"{v[:80]!r} names no host")
        if parts.query or parts.fragment:
            raise ValueError("must be an address only, without ?query or #fragment")
        return v

    @model_validator(mode="after")
    def _complete(self) -> EscalateConfig:
        if self.enabled and not self.url:
            raise ValueError("escalate.enabled is true but escalate.url is not set")
        if self.enabled and self.target == "openai" and not self.model:
            raise ValueError("escalate.target 'openai' needs escalate.model")
        return self


class SpeakerConfig(_Strict):
    """`[speaker]`: only the wearer. Utterances are checked against the voices enrolled on the
    device (`pendant voice enrol`, or the phone app's "read these five sentences"); one whose
    voice is none of them publishes nothing. The voiceprints stay in the ears' state directory
    (0600) and never leave the device. Until a voice is enrolled the check is not in force (the
    phone says so): everyone's commands are heard, as with 'off'."""

    check: Literal["off", "conversation", "always"] = Field(
        "conversation",
        description="'conversation': utterances heard without the button are checked (held "
        "talk is the wearer's hand: not checked); 'always': held talk too (a refused press "
        "shows 'not your voice' on the phone); 'off': no check. Needs an enrolled voice.",
    )
    threshold: float | None = Field(
        None,
        gt=0,
        lt=1,
        description="Cosine similarity to an enrolled voice from which an utterance is that "
        "voice's; higher refuses more bystanders and more of the wearer. Default: the voice "
        "encoder's calibrated threshold (make bench: speaker_*).",
    )


class ModelsConfig(_Strict):
    """`[models]`: the model cache."""

    cache_dir: str = Field(
        "~/.cache/pendant/models", description="Where fetched, verified models are kept."
    )


class DetectorConfig(_Strict):
    """`[eyes.detector]`: the object detector behind 'what is this', and the model it runs."""

    type: Literal[DETECTORS.choices] = Field(
        "auto",
        description="Object detector backend: 'auto' picks an accelerator that is present "
        "(Hailo, Coral, the IMX500 AI Camera), else 'cpu' (onnxruntime). A configured "
        "accelerator that is missing falls back to 'cpu' with a warning.",
    )
    model: str | None = Field(
        None,
        description="Model file: a .hef (hailo), an Edge TPU .tflite (coral), an .rpk (imx500); "
        "for 'cpu' any YOLO/YOLOX/SSD/PicoDet .onnx file, or a manifest model's name: "
        "'yolox-nano' (COCO's 80 everyday objects, for 'what is this'); default "
        "'picodet-layout' (document layout).",
    )
    format: Literal["auto", "yolo", "yolox", "ssd", "picodet"] = Field(
        "auto",
        description="'cpu' model's output format; 'auto' tells it from the output shapes and "
        "metadata: 'yolo' (v5/v8/11, v10 end-to-end), 'yolox' (undecoded grid rows), 'ssd' "
        "(boxes + scores, TF or DetectionOutput style), 'picodet'.",
    )
    labels: str | None = Field(
        None,
        description="Model's labels, one a line (default: the model's own, else COCO's 80).",
    )
    min_score: float = Field(0.5, gt=0, lt=1, description="Weaker detections are not reported.")


class EyesConfig(_Strict):
    """`[eyes]`: the camera, used on request only, and what reads and masks its frames."""

    camera: Literal[CAMERAS.choices] = Field(
        "files",
        description="'picamera2' on the pendant; 'files' (images served in turn) in simulation.",
    )
    files: list[str] = Field(
        default_factory=list,
        description="'files' camera: images served in turn; empty: the bundled demo images.",
    )
    width: int = Field(640, ge=160, le=4056, description="Frame width in pixels.")
    height: int = Field(480, ge=120, le=3040, description="Frame height in pixels.")
    face_threshold: float = Field(
        0.6,
        gt=0,
        lt=1,
        description="Face score from which a region is masked; lower masks more (and more "
        "non-faces).",
    )
    ocr_min_confidence: float = Field(
        0.7, ge=0, lt=1, description="OCR lines read with less confidence are left out."
    )
    detector: DetectorConfig = Field(
        default_factory=DetectorConfig, description="Object detector for 'what is this'."
    )
    linger_s: float = Field(
        30.0,
        ge=0,
        le=3600,
        description="The models run for a capture in a process of their own, one at a time; "
        "the process is kept this long after it for the next ('read this' twice: no new start), "
        "then its memory is given back. 0: a new one for every capture.",
    )
    read_timeout_s: float = Field(
        60.0,
        gt=0,
        le=600,
        description="A capture whose models give no scene within this long (loading "
        "included) is given up, and their process killed.",
    )


class Config(_Strict):
    """The config file as a whole, validated and frozen: a model per table, and a key it does
    not know refused (`parse_config` says which and why)."""

    device_id: str = Field(
        "pendant",
        pattern=wire.DEVICE_ID_PATTERN,
        description="Names this pendant in every topic; lowercase letters, digits, '-'.",
    )
    language: Literal["en"] = Field("en", description="Language of speech and sentences.")
    home: Home = Field(default_factory=Home, description="The home the wearer talks about.")
    audio: AudioConfig = Field(default_factory=AudioConfig, description="Where sound comes from.")
    vad: VadConfig = Field(default_factory=VadConfig, description="Cutting speech into utterances.")
    asr: AsrConfig = Field(default_factory=AsrConfig, description="Speech recognition.")
    eyes: EyesConfig = Field(
        default_factory=EyesConfig, description="The camera, on request: OCR and objects."
    )
    listen: ListenConfig = Field(default_factory=ListenConfig, description="How to talk to it.")
    bus: BusConfig = Field(default_factory=BusConfig, description="The device-local broker.")
    link: LinkConfig = Field(
        default_factory=LinkConfig, description="The home broker, and the phones' broker."
    )
    body: BodyConfig = Field(
        default_factory=BodyConfig, description="Button, LED, haptics, mute switch, battery."
    )
    pairing: PairingConfig = Field(
        default_factory=PairingConfig, description="The pairing window (pendant service pairing)."
    )
    models: ModelsConfig = Field(default_factory=ModelsConfig, description="Model cache.")
    escalate: EscalateConfig = Field(
        default_factory=EscalateConfig,
        description="Asking a bigger model, as text, what the closed set cannot hear.",
    )
    speaker: SpeakerConfig = Field(
        default_factory=SpeakerConfig,
        description="Only the wearer: commands in enrolled voices alone.",
    )

    @field_validator("device_id")
    @classmethod
    def _no_double_dash(cls, v: str) -> str:
        if v.endswith("-"):
            raise ValueError("must not end with '-'")
        return v


def _key(loc: tuple[int | str, ...]) -> str:
    """`home.devices[0].kind` for pydantic's ("home", "devices", 0, "kind")."""
    key = ""
    for part in loc:
        if isinstance(part, int):
            key += f"[{part}]"
        elif not re.fullmatch(r"function-after\[.*\]", part):
            key += f".{part}" if key else part
    return key


def _inner_model(ann: Any) -> type[BaseModel] | None:
    """The model a field holds: itself, or inside a list or an optional."""
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return ann
    for arg in get_args(ann):
        if (found := _inner_model(arg)) is not None:
            return found
    return None


def _known_keys(loc: tuple[int | str, ...]) -> list[str]:
    """The keys the table at `loc` takes ([] when `loc` is not a table of the model)."""
    model: type[BaseModel] | None = Config
    for part in loc:
        if isinstance(part, int) or re.fullmatch(r"function-after\[.*\]", part):
            continue
        field = model.model_fields.get(part) if model else None
        model = _inner_model(field.annotation) if field else None
    return list(model.model_fields) if model else []


def _describe(err: dict[str, Any]) -> str:
    """One validation error as `key.path: what to fix`."""
    key = _key(err["loc"])
    msg = err["msg"].removeprefix("Value error, ")
    if (
        err["type"] == "string_pattern_mismatch"
        and err.get("ctx", {}).get("pattern") == NAME_PATTERN
    ):
        msg = NAME_RULE  # not the pattern's 200 characters of Unicode ranges
    if err["type"] == "extra_forbidden":
        # A misspelt key is the usual cause: the line lists the spellings that would do.
        known = _known_keys(err["loc"][:-1])
        table = _key(err["loc"][:-1]) or "the top level"
        hint = f" ({table} takes: {', '.join(known)})" if known else ""
        return f"{key}: unknown key, remove it or check its spelling{hint}"
    return f"{key}: {msg}" if key else msg


def parse_config(data: dict[str, Any], source: str = "config") -> Config:
    """`data` (TOML as parsed) as a checked Config. Raises ConfigError, not pydantic's
    ValidationError: `source`, the first problem (`key.path: what to fix`), how many more."""
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        more = len(exc.errors()) - 1
        tail = f" (and {more} more)" if more else ""
        raise ConfigError(f"{source}: {_describe(first)}{tail}") from None


def _toml_error(p: Path, text: str, exc: tomllib.TOMLDecodeError) -> str:
    """`FILE:line:col: message`, as compilers say it (tomllib puts the place in its message
    until Python 3.14 gives it as attributes)."""
    msg = str(exc)
    m = re.fullmatch(r"(.*) \(at line (\d+), column (\d+)\)", msg, re.S)
    if m:
        return f"{p}:{m[2]}:{m[3]}: not valid TOML: {m[1]}"
    if msg.endswith(" (at end of document)"):
        lines = text.splitlines() or [""]
        what = msg.removesuffix(" (at end of document)")
        return f"{p}:{len(lines)}:{len(lines[-1]) + 1}: not valid TOML: {what}"
    return f"{p}: not valid TOML: {msg}"


def _read_toml(p: Path) -> dict[str, Any]:
    try:
        # -sig: a byte-order mark, which some Windows editors put first, is not TOML.
        text = p.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ConfigError(f"{p}: config file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p}: cannot read config: {exc}") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(_toml_error(p, text, exc)) from None


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """`over` on top of `base`, table by table (a key set in both takes `over`'s value)."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def drop_in_dir(path: Path) -> Path:
    """Where files that add to the config at `path` live: /etc/pendant/pendant.d/ for
    /etc/pendant/pendant.toml. Provisioning writes the home broker there
    (`pendant.setup.provision --bridge-host`) and the image's first boot the SD card's pendant.toml
    (`CARD_DROP_IN`), so each is merged over the device's config instead of replacing it."""
    return path.parent / f"{path.stem}.d"


def _drop_ins(path: Path, skip: frozenset[str] = frozenset()) -> list[Path]:
    extra = drop_in_dir(path)
    if not extra.is_dir():
        return []
    # Loud, not skipped: a folder the service cannot list (made under a umask of 0077) would
    # otherwise drop the home broker and the card's settings without a word.
    if not os.access(extra, os.R_OK | os.X_OK):
        raise ConfigError(f"{extra}: cannot read the config's drop-ins: chmod 755 {extra}")
    return [q for q in sorted(extra.glob("*.toml")) if q.name not in skip]


def _layered(path: Path, skip: frozenset[str] = frozenset()) -> tuple[dict[str, Any], list[Path]]:
    data = _read_toml(path)
    parts = _drop_ins(path, skip)
    for part in parts:
        data = _merge(data, _read_toml(part))
    return data, parts


def merged_toml(path: Path, skip: frozenset[str] = frozenset()) -> dict[str, Any]:
    """The config file at `path` with its drop-ins (but those named in `skip`) merged on top,
    as TOML data, not checked: what `load_config` validates."""
    return _layered(path, skip)[0]


def load_config(path: str | Path | None) -> Config:
    """The config at `path` (default /etc/pendant/pendant.toml, or the defaults when there is
    none), with the `*.toml` files of its drop-in folder (`drop_in_dir`) merged on top, in
    name order."""
    if path is None:
        return Config() if not DEVICE_CONFIG_PATH.exists() else load_config(DEVICE_CONFIG_PATH)
    p = Path(path)
    data, parts = _layered(p)
    # Checked merged, so the line names every file that took part.
    extra = drop_in_dir(p)
    source = f"{p} (with {', '.join(q.name for q in parts)} in {extra})" if parts else str(p)
    return parse_config(data, source)


def card_base(config: str | Path | None) -> Path:
    """What an SD card's pendant.toml is merged over: `config` if given, else the device's
    config when this is a device, else the device config a new pendant starts from."""
    if config is not None:
        return Path(config)
    return DEVICE_CONFIG_PATH if DEVICE_CONFIG_PATH.exists() else DEVICE_DEFAULTS_PATH


def check_card(card: Path, base: Path) -> list[str]:
    """What is wrong with `card`, a pendant.toml as the SD card carries it, merged over the
    config at `base` (and its drop-ins, but the card's own, which `card` stands for), one line
    a problem: `key.path: what to fix`, or `FILE:line:col: ...` for broken TOML. [] if none."""
    try:
        over = _read_toml(card)
        data = merged_toml(base, skip=frozenset({CARD_DROP_IN}))
    except ConfigError as exc:
        return [str(exc)]
    try:
        Config.model_validate(_merge(data, over))
    except ValidationError as exc:
        return [_describe(err) for err in exc.errors()]
    return []


def _type_name(ann: Any) -> str:
    if get_origin(ann) is Annotated:
        return _type_name(get_args(ann)[0])
    args = [a for a in get_args(ann) if a is not type(None)]
    if get_origin(ann) is Literal:
        return " / ".join(repr(a) for a in args)
    if isinstance(ann, type) and issubclass(ann, StrEnum):
        return "name"
    if get_origin(ann) is list:
        return f"list of {_type_name(args[0])}" if args else "list"
    if get_origin(ann) is dict:
        return f"table of {_type_name(args[1])}" if args else "table"
    if len(args) == 1 and len(get_args(ann)) == 2:
        return f"{_type_name(args[0])}, optional"
    if args and get_origin(ann) is not None and get_origin(ann) is not Annotated:
        return " or ".join(_type_name(a) for a in args)
    return getattr(ann, "__name__", str(ann))


def _shown(value: Any) -> str:
    """A default as the config spells it: ['lock'], not [<DeviceKind.lock: 'lock'>]."""
    if isinstance(value, list):
        return "[" + ", ".join(_shown(v) for v in value) + "]"
    return repr(value.value if isinstance(value, StrEnum) else value)


def config_reference(model: type[BaseModel] = Config, prefix: str = "") -> list[str]:
    """One line per key: `key` (type, default): description. Drives the README's table."""
    lines: list[str] = []
    for name, field in model.model_fields.items():
        key = f"{prefix}{name}"
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            lines.append(f"| `[{key}]` | table | | {field.description} |")
            lines.extend(config_reference(ann, key + "."))
            continue
        item = next(iter(get_args(ann)), None)
        if isinstance(item, type) and issubclass(item, BaseModel):
            lines.append(f"| `[[{key}]]` | list of tables | | {field.description} |")
            lines.extend(config_reference(item, key + "[]."))
            continue
        default = (
            "" if field.is_required() else _shown(field.get_default(call_default_factory=True))
        )
        tname = _type_name(ann)
        lines.append(f"| `{key}` | {tname} | {default} | {field.description} |")
    return lines
