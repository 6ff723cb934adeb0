"""Home Assistant MQTT discovery: the payloads, and the link publishing them on real mosquitto.

Home Assistant itself is not here; REQUIRED/ALLOWED below is what its MQTT integration's
documentation asks of each platform, and a phone-like client stands in for it on the broker.
Every wait is bounded; nothing asserts on timing.
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from pendant.app.cli import main as cli_main
from pendant.app.local_broker import LocalBroker
from pendant.app.one_process import Pendant
from pendant.app.replay import simulated
from pendant.core.config import Config, parse_config
from pendant.core.errors import ConfigError
from pendant.core.events import EYES_INTENTS, Intent, SentenceSet
from pendant.core.vocabulary import Vocabulary
from pendant.ears.audio.wav import WavSource
from pendant.link import discovery
from pendant.link.command_errors import judge
from pendant.link.gate import Gate
from pendant.link.service import Link
from tests.conftest import REPO, demo_config, speech_files
from tests.support.link_support import WAIT_S, link_config
from tests.support.phone_sets import PARTY
from tests.support.tasks import running, until

TEST_S = 120.0
FENCE = "homeassistant/test-fence"

# From Home Assistant's MQTT documentation (integrations/mqtt and each platform's page).
# Not `object_id`: deprecated in 2025.10 for `default_entity_id`, ignored from 2026.4.
COMMON = {"p", "name", "unique_id", "default_entity_id", "icon", "device_class", "qos"}
COMMON |= {"availability_topic", "payload_available", "payload_not_available"}
COMMON |= {"entity_category"}
REQUIRED = {
    "event": {"state_topic", "event_types"},
    "sensor": {"state_topic"},
    "binary_sensor": {"state_topic"},
    "switch": {"command_topic"},
    "button": {"command_topic"},
}
ALLOWED = {
    "event": {"value_template"},
    "sensor": {"value_template", "unit_of_measurement", "state_class"},
    "binary_sensor": {"value_template", "payload_on", "payload_off"},
    "switch": {"state_topic", "value_template", "payload_on", "payload_off", "state_on"}
    | {"state_off", "optimistic"},
    "button": {"payload_press"},
}
DEVICE_KEYS = {"identifiers", "name", "manufacturer", "model", "sw_version", "configuration_url"}
ORIGIN_KEYS = {"name", "sw_version", "support_url"}
# homeassistant/core.py's VALID_ENTITY_ID, which `default_entity_id` must match (cv.entity_id).
VALID_ENTITY_ID = re.compile(r"^(?!.+__)(?!_)[\da-z_]+(?<!_)\.(?!_)[\da-z_]+(?<!_)$")
# Home Assistant refuses `config` for entities that only report (sensor, binary_sensor).
CATEGORIES = {"sensor": {"diagnostic"}, "binary_sensor": {"diagnostic"}}
# The device-local mosquitto's packet limit (the link's only broker without link.host).
MAX_PACKET = int(
    re.search(
        r"^max_packet_size (\d+)$",
        (REPO / "services/mosquitto/pendant.conf.in").read_text(),
        re.MULTILINE,
    )[1]  # type: ignore[index]
)


def with_discovery(cfg: Config, mode: str) -> Config:
    return cfg.model_copy(update={"link": cfg.link.model_copy(update={"discovery": mode})})


def check_component(platform: str, options: dict[str, Any]) -> None:
    assert REQUIRED[platform] <= options.keys(), (platform, REQUIRED[platform] - options.keys())
    unknown = options.keys() - COMMON - REQUIRED[platform] - ALLOWED[platform]
    assert not unknown, (platform, unknown)
    assert VALID_ENTITY_ID.match(options["default_entity_id"]), options["default_entity_id"]
    assert options["default_entity_id"].split(".")[0] == platform
    if "entity_category" in options:
        allowed = CATEGORIES.get(platform, {"diagnostic", "config"})
        assert options["entity_category"] in allowed, (platform, options["entity_category"])


def check_envelope(payload: dict[str, Any]) -> None:
    assert payload["dev"]["identifiers"] and payload["dev"].keys() <= DEVICE_KEYS
    assert payload["o"]["name"] == "pendant" and payload["o"].keys() <= ORIGIN_KEYS


def leaves(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [s for v in value.values() for s in leaves(v)]
    if isinstance(value, list):
        return [s for v in value for s in leaves(v)]
    return [value] if isinstance(value, str) else []


@pytest.mark.parametrize("mode", ["device", "components"])
def test_payloads_have_what_home_assistant_requires(mode: str) -> None:
    config = with_discovery(demo_config(), mode)
    sent = [(t, json.loads(p)) for t, p in discovery.messages(config)]
    if mode == "device":
        [(topic, payload)] = sent
        assert topic == f"homeassistant/device/{config.device_id}/config"
        assert payload.keys() == {"dev", "o", "cmps", "qos"}
        check_envelope(payload)
        entities = [(c["p"], c) for c in payload["cmps"].values()]
    else:
        entities = []
        for topic, payload in sent:
            _, platform, node, _key, _ = topic.split("/")
            assert node == config.device_id and "p" not in payload
            check_envelope(payload)
            entities.append((platform, {k: v for k, v in payload.items() if k not in ("dev", "o")}))
    for platform, options in entities:
        check_component(platform, options)
    ids = [options["unique_id"] for _, options in entities]
    assert len(ids) == len(set(ids)) == 7
    assert sorted(p for p, _ in entities) == sorted(
        ["event", "sensor", "binary_sensor", "switch", "switch", "button", "button"]
    )
    # Built from names and templates only: nothing of the home (or of speech) is in them.
    home = [d.name for d in config.home.devices] + list(config.home.areas)
    text = json.dumps([p for _, p in sent])
    assert not [name for name in home if name in text]
    names = set(discovery.event_types(config))
    for s in leaves([p for _, p in sent]):
        assert s in names or s.startswith(("{{", "pendant/", "mdi:")) or len(s) <= 40, s


def test_event_types_are_every_intent_the_home_can_produce() -> None:
    config = demo_config()
    types = set(discovery.event_types(config))
    assert {"HassTurnOn", "HassStartTimer", *(s.intent for s in config.home.sentences)} <= types
    assert types >= EYES_INTENTS  # ReadText and SeenObjects, from the eyes' own topic
    # What the grammar-constrained recogniser can say, parsed as the ears parse it.
    import numpy as np

    from pendant.ears.understand.grammar import build_grammar
    from pendant.ears.understand.nlu import IntentParser

    parser = IntentParser(config)
    for sentence in build_grammar(config).sample(np.random.default_rng(0), 300):
        match = parser.parse(sentence)
        assert match is None or match.name in types, sentence


def test_event_types_are_exactly_the_intents_the_gate_lets_out() -> None:
    config = demo_config()
    gate = Gate(Vocabulary.of(config), config.device_id)
    gate.phone_sent([SentenceSet(**PARTY)])
    gate.phone_sent([SentenceSet(intent="WakeMeUp", sentences=["wake me up"])])
    types = discovery.event_types(config, gate.phone.sent)
    assert types == sorted(gate.vocabulary.intents | EYES_INTENTS)
    assert {"PartyMode", "WakeMeUp"} <= set(types)

    def said(name: str, text: str) -> bytes:
        return Intent(device_id=config.device_id, name=name, text=text, confidence=0.9).to_json()

    assert gate.admit(said("PartyMode", "let's party")) is not None
    # An intent of Home Assistant's that only free text reaches (whisper) is not let out, and
    # so not listed either.
    assert gate.admit(said("HassBroadcast", "turn on the light")) is None
    assert "HassBroadcast" not in types


def test_many_phone_intents_keep_the_announcement_within_the_packet_limit(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The longest of everything: device id, app address, and 9 kept sets of 20 new intents.
    config = parse_config(
        {"device_id": "p" * 32, "link": {"app_url": "https://pendant.local:8443/" + "x" * 170}}
    )
    kept = [
        tuple(
            SentenceSet(intent=f"I{k:02d}{i:02d}".ljust(48, "x"), sentences=["party time"])
            for i in range(20)
        )
        for k in range(9)
    ]
    with caplog.at_level("WARNING", logger="pendant.link.discovery"):
        types = discovery.event_types(config, kept)
    assert {s.intent for s in kept[0]} <= set(types)  # the set the ears run comes first
    assert not {s.intent for s in kept[-1]} & set(types)
    assert "not announced to Home Assistant" in caplog.text
    assert len(json.dumps(types)) <= discovery.MAX_EVENT_TYPES_BYTES
    for mode in ("device", "components"):
        for topic, payload in discovery.messages(with_discovery(config, mode), types):
            # A PUBLISH's fixed header, topic length and packet id take under 16 bytes.
            assert len(topic) + len(payload) + 16 <= MAX_PACKET, (mode, topic, len(payload))


def test_the_buttons_send_commands_the_link_takes_from_home_assistant() -> None:
    """Identify blinks the LED; Buzz (issue 15) calls the wearer with the `attention` buzz.
    Both are pressed in Home Assistant, on the home broker, and the link forwards them."""
    config = demo_config()
    [(_, payload)] = discovery.messages(config)
    buttons = {k: c for k, c in json.loads(payload)["cmps"].items() if c["p"] == "button"}
    assert set(buttons) == {"identify", "buzz"}
    forwarded = {}
    for key, button in buttons.items():
        assert button["command_topic"] == f"pendant/{config.device_id}/cmd/{key}"
        press = button["payload_press"].encode()
        verdict = judge(config, button["command_topic"], press, from_home=True)
        assert verdict.outcome == "forwarded", (key, verdict.error)
        forwarded[key] = verdict.command
    assert forwarded["buzz"] is not None and forwarded["buzz"].pattern == "attention"
    assert buttons["buzz"]["default_entity_id"] == "button.pendant_demo_buzz"
    assert buttons["buzz"]["name"] == "Buzz" and "entity_category" not in buttons["buzz"]


def test_the_device_has_a_friendly_name_valid_entity_ids_and_a_link_to_the_app() -> None:
    config = parse_config(
        {"device_id": "pendant-a1b2c3", "link": {"app_url": "https://pendant.local:8443/"}}
    )
    [(_, payload)] = discovery.messages(config)
    device = json.loads(payload)
    assert device["dev"]["name"] == "Pendant a1b2c3"
    assert device["dev"]["configuration_url"] == "https://pendant.local:8443/"
    intent = device["cmps"]["intent"]
    assert intent["default_entity_id"] == "event.pendant_a1b2c3_intent"
    # As before `default_entity_id`: Home Assistant keeps the entities it made of them.
    assert intent["unique_id"] == "pendant-a1b2c3_intent"
    categories = {key: c.get("entity_category") for key, c in device["cmps"].items()}
    assert categories == {
        "intent": None,
        "battery": "diagnostic",
        "listening": "diagnostic",
        "mic_mute": None,
        "camera_mute": None,
        "identify": "diagnostic",
        "buzz": None,
    }

    plain = json.loads(discovery.messages(parse_config({"device_id": "pendant"}))[0][1])
    assert plain["dev"]["name"] == "Pendant" and "configuration_url" not in plain["dev"]
    odd = json.loads(discovery.messages(parse_config({"device_id": "hall--2"}))[0][1])
    assert odd["dev"]["name"] == "Pendant hall--2"
    for platform, options in ((c["p"], c) for c in odd["cmps"].values()):
        check_component(platform, {k: v for k, v in options.items()})
    assert odd["cmps"]["mic_mute"]["default_entity_id"] == "switch.hall_2_mic_mute"

    for bad in ("javascript:alert(1)", "https://pendant.local/\nx", "pendant.local:8443"):
        with pytest.raises(ConfigError, match=r"link\.app_url"):
            parse_config({"link": {"app_url": bad}})


def test_only_new_intents_from_the_phone_make_the_link_announce_again(tmp_path: Path) -> None:
    outbox = str(tmp_path / "outbox.sqlite")
    link = Link(parse_config({"device_id": "pendant-test", "link": {"outbox_path": outbox}}))
    try:

        def sentences(*sets: dict[str, Any]) -> None:
            payload = json.dumps({"sentences": list(sets)}).encode()
            link.on_command(f"{link.base_topic}/cmd/sentences", payload)

        def announced_types() -> set[str]:
            return set(json.loads(link.discovery[0][1])["cmps"]["intent"]["event_types"])

        assert "PartyMode" not in announced_types() and not link._announce_due.is_set()
        sentences(PARTY)
        assert "PartyMode" in announced_types() and link._announce_due.is_set()
        link._announce_due.clear()
        before = link.discovery
        # The same intent again, in other words: nothing new for Home Assistant.
        sentences({"intent": "PartyMode", "sentences": ["party now"]}, PARTY)
        assert link.discovery == before and not link._announce_due.is_set()
    finally:
        for side in link.sides:
            side.outbox.close()


def test_discovery_off_announces_nothing_and_the_cli_prints_the_rest(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert discovery.messages(with_discovery(demo_config(), "off")) == []
    config = tmp_path / "pendant.toml"
    config.write_text('device_id = "cli-test"\n[link]\ndiscovery = "components"\n')
    assert cli_main(["discovery", "--config", str(config)]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(lines) == 7 and all(ln["topic"].endswith("/config") for ln in lines)
    assert {ln["payload"]["unique_id"] for ln in lines} >= {"cli-test_intent"}


# -- on the broker ------------------------------------------------------------------------


async def retained(home: LocalBroker, topic_filter: str = "homeassistant/#") -> dict[str, bytes]:
    """What a newcomer gets retained: collected until a fence published after subscribing."""
    got: dict[str, bytes] = {}
    async with aiomqtt.Client(
        "127.0.0.1", home.port or 0, username="viewer", password=home.password("viewer")
    ) as client:
        await client.subscribe(topic_filter, qos=1, timeout=WAIT_S)
        await client.subscribe(FENCE, qos=1, timeout=WAIT_S)
        await client.publish(FENCE, b"fence", qos=1, timeout=WAIT_S)
        async with asyncio.timeout(WAIT_S):
            async for m in client.messages:
                if str(m.topic) == FENCE:
                    break
                assert m.retain
                got[str(m.topic)] = bytes(m.payload)  # type: ignore[arg-type]
    return got


async def run_link_until_announced(cfg: Config) -> Link:
    link = Link(cfg)
    async with running(link.run()):
        await until(lambda: link.connected.is_set() and link.announced >= 1, "announcement")
        # The stale clears go out before `connected`; PUBACKs precede the announcement's.
    return link


def test_discovery_is_retained_and_republished_when_home_assistant_comes_online(
    tmp_path: Path,
) -> None:
    with (
        LocalBroker(users=("pendant",)) as bus_broker,
        LocalBroker(users=("link", "viewer"), tcp=True) as home,
    ):
        asyncio.run(asyncio.wait_for(_republished(bus_broker, home, tmp_path), TEST_S))


async def _republished(bus_broker: LocalBroker, home: LocalBroker, tmp: Path) -> None:
    cfg = link_config(bus_broker, home, tmp)
    link = Link(cfg)
    [(topic, payload)] = discovery.messages(cfg)
    # The entities go unavailable with the link's last will, which is on this broker.
    for entity in json.loads(payload)["cmps"].values():
        assert entity["availability_topic"] == link.availability_topic
    async with running(link.run()):
        await until(lambda: link.announced >= 1, "the first announcement")
        assert (await retained(home)) == {topic: payload}
        async with aiomqtt.Client(
            "127.0.0.1", home.port or 0, username="viewer", password=home.password("viewer")
        ) as ha:
            await ha.subscribe(topic, qos=1, timeout=WAIT_S)
            await ha.publish(discovery.STATUS_TOPIC, b"online", qos=1, timeout=WAIT_S)
            async with asyncio.timeout(WAIT_S):  # the retained copy, then the fresh one
                fresh = [m async for m in _take(ha.messages, 2)]
        assert [bytes(m.payload) for m in fresh] == [payload, payload]  # type: ignore[arg-type]
        await until(lambda: link.announced >= 2, "the count")  # it counts after the PUBACK


async def _take(messages: Any, n: int) -> Any:
    async for m in messages:
        yield m
        n -= 1
        if n == 0:
            return


def test_a_changed_mode_removes_the_old_announcements(tmp_path: Path) -> None:
    with (
        LocalBroker(users=("pendant",)) as bus_broker,
        LocalBroker(users=("link", "viewer"), tcp=True) as home,
    ):
        asyncio.run(asyncio.wait_for(_modes(bus_broker, home, tmp_path), TEST_S))


async def _modes(bus_broker: LocalBroker, home: LocalBroker, tmp: Path) -> None:
    base = link_config(bus_broker, home, tmp)
    for mode in ("device", "components", "device", "off"):
        cfg = with_discovery(base, mode)
        await run_link_until_announced(cfg)
        # Exactly this mode's topics remain: the other shape's were cleared (empty, retained).
        assert await retained(home) == dict(discovery.messages(cfg)), mode


def event_types_in(payload: bytes) -> set[str]:
    return set(json.loads(payload)["cmps"]["intent"]["event_types"])


def test_the_phones_new_intents_are_announced_and_kept_across_a_restart(tmp_path: Path) -> None:
    with (
        LocalBroker(users=("pendant", "phone")) as bus_broker,
        LocalBroker(users=("link", "viewer"), tcp=True) as home,
    ):
        asyncio.run(asyncio.wait_for(_phone_intents(bus_broker, home, tmp_path), TEST_S))


async def _phone_intents(bus_broker: LocalBroker, home: LocalBroker, tmp: Path) -> None:
    base = link_config(bus_broker, home, tmp)
    # The phones on the pendant's own broker, Home Assistant on the home broker: the
    # sentences come in on one side, the announcement goes out on the other.
    phones = base.link.model_copy(update={"socket": str(bus_broker.socket_path)})
    cfg = base.model_copy(update={"link": phones})
    assert cfg.link.phones_apart
    [(topic, before)] = discovery.messages(cfg)
    assert "PartyMode" not in event_types_in(before)
    link = Link(cfg)
    async with running(link.run()):
        await until(
            lambda: all(s.connected.is_set() for s in link.sides) and link.announced >= 1,
            "both brokers and the first announcement",
        )
        async with (
            aiomqtt.Client(
                "127.0.0.1", home.port or 0, username="viewer", password=home.password("viewer")
            ) as ha,
            aiomqtt.Client(
                str(bus_broker.socket_path),
                transport="unix",
                username="phone",
                password=bus_broker.password("phone"),
            ) as phone,
        ):
            await ha.subscribe(topic, qos=1, timeout=WAIT_S)
            payload = json.dumps({"sentences": [PARTY]}).encode()
            await phone.publish(f"{link.base_topic}/cmd/sentences", payload, qos=1)
            heard: list[set[str]] = []
            async with asyncio.timeout(WAIT_S):  # the retained copy, then the fresh one
                async for m in ha.messages:
                    heard.append(event_types_in(bytes(m.payload)))  # type: ignore[arg-type]
                    if "PartyMode" in heard[-1]:
                        break
            assert heard[0] == event_types_in(before)
        assert "PartyMode" in event_types_in((await retained(home))[topic])

        # Put the old announcement back, as if it had never changed.
        async with aiomqtt.Client(
            "127.0.0.1", home.port or 0, username="viewer", password=home.password("viewer")
        ) as ha:
            await ha.publish(topic, before, qos=1, retain=True, timeout=WAIT_S)
    assert "PartyMode" not in event_types_in((await retained(home))[topic])
    # A restarted link knows the phone's sentences (kept beside its outbox) and says so at once.
    await run_link_until_announced(cfg)
    assert "PartyMode" in event_types_in((await retained(home))[topic])


# -- the whole pendant: a spoken intent arrives as an event, the mute switch mutes ---------


def test_spoken_intent_becomes_an_event_and_the_mute_switch_mutes(tmp_path: Path) -> None:
    wav = next(f for f in speech_files("main") if f.stem == "set a timer for 5 minutes")
    with (
        LocalBroker(users=("pendant",)) as bus_broker,
        LocalBroker(users=("link", "viewer"), tcp=True) as home,
    ):
        asyncio.run(asyncio.wait_for(_round_trip(bus_broker, home, wav), TEST_S))


async def _round_trip(bus_broker: LocalBroker, home: LocalBroker, wav: Path) -> None:
    # A long gap keeps the pendant running after the words, for the mute.
    cfg = simulated(demo_config(), bus_broker, home, realtime=True, gap_ms=30_000)
    pendant = Pendant(cfg, source=WavSource(cfg.audio, [wav]))
    base = pendant.link.base_topic
    device = json.loads(discovery.messages(cfg)[0][1])
    switch = device["cmps"]["mic_mute"]
    got: list[tuple[str, bytes]] = []
    async with aiomqtt.Client(
        "127.0.0.1", home.port or 0, username="viewer", password=home.password("viewer")
    ) as phone:
        await phone.subscribe(f"{base}/#", qos=1, timeout=WAIT_S)

        async def collect() -> None:
            async for m in phone.messages:
                got.append((str(m.topic), bytes(m.payload)))  # type: ignore[arg-type]

        def on(topic: str) -> list[dict[str, Any]]:
            return [json.loads(p) for t, p in got if t == topic and p[:1] == b"{"]

        async with running(collect(), pendant.run()):
            await until(lambda: bool(on(f"{base}/event")), "the event", TEST_S / 2)
            [event] = on(f"{base}/event")
            [intent] = on(f"{base}/intent/HassStartTimer")
            assert event["event_type"] == "HassStartTimer" == intent["name"]
            assert event["event_type"] in device["cmps"]["intent"]["event_types"]
            assert event["minutes"] == 5
            assert (event["text"], event["id"]) == (intent["text"], intent["id"])
            assert render(switch["value_template"], on(f"{base}/status")[-1]) == switch["state_off"]

            await phone.publish(switch["command_topic"], switch["payload_on"], qos=1)
            await until(lambda: on(f"{base}/status")[-1]["mic_muted"], "the mute")
            assert render(switch["value_template"], on(f"{base}/status")[-1]) == switch["state_on"]


def render(template: str, value_json: dict[str, Any]) -> str:
    """Home Assistant's rendering of a value_template, with jinja2 when it is installed."""
    try:
        import jinja2
    except ImportError:
        # The JSON path the template reads, as the template reads it.
        key = "mic_muted" if "mic_muted" in template else "camera_muted"
        assert template == discovery.MUTED_TEMPLATE.format(key=key)
        return "ON" if value_json.get(key, False) else "OFF"
    env = jinja2.Environment()
    return env.from_string(template).render(value_json=value_json).strip()


def test_the_readme_shows_the_per_intent_example_as_it_is_tested() -> None:
    """docs/home-assistant-per-intent.yaml (run against a real Home Assistant by
    tests/system/test_home_assistant.py): well-formed automations on the README's example entity,
    the timer one shown in the README as it is in the file."""
    import yaml

    text = (REPO / "docs" / "home-assistant-per-intent.yaml").read_text()
    automations = yaml.safe_load(text)
    example = discovery.entity_id(Config(device_id="pendant-a1b2c3"), "event", "intent")
    for automation in automations:
        assert {"id", "alias", "triggers", "conditions", "actions"} <= automation.keys()
        assert automation["triggers"][0]["entity_id"] == example
        assert automation["conditions"][0]["attribute"] == "event_type"
    timer = text[text.index("- id: pendant_timer") : text.index("\n\n- id: pendant_party_mode")]
    assert f"```yaml\n{timer}\n```" in (REPO / "README.md").read_text()


def test_what_the_camera_read_gets_no_sentence_for_assist() -> None:
    """The blueprint hands `named_text` to Assist: a spoken intent has it, the eyes' ReadText
    (printed words, "unlock the front door" on a sign) never does."""
    cfg = demo_config()
    spoken = Intent(device_id=cfg.device_id, name="HassTurnOn", text="turn on the bed light",
                    confidence=0.9)  # fmt: skip
    read = Intent(device_id=cfg.device_id, name="ReadText", text="unlock the front door",
                  confidence=0.9)  # fmt: skip
    assert "named_text" in json.loads(discovery.event_message(cfg, spoken)[1])
    body = json.loads(discovery.event_message(cfg, read)[1])
    assert "named_text" not in body and body["text"] == "unlock the front door"
    blueprint = (REPO / "docs" / "blueprints" / "pendant-assist.yaml").read_text()
    assert "attributes.named_text is string" in blueprint
    assert "said.named_text" in blueprint and "said.text" not in blueprint
