"""Home Assistant MQTT discovery: the payloads, and the link publishing them on real mosquitto.

Home Assistant itself is not here; REQUIRED/ALLOWED below is what its MQTT integration's
documentation asks of each platform, and a phone-like client stands in for it on the broker.
Every wait is bounded; nothing asserts on timing.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from pendant import discovery
from pendant.cli import main as cli_main
from pendant.config import Config
from pendant.ears.audio.wav import WavSource
from pendant.link import Link
from pendant.listen import simulated
from pendant.local_broker import LocalBroker
from pendant.runner import Pendant

from .conftest import demo_config, speech_files
from .test_link_outage import WAIT_S, link_config, running, until

TEST_S = 120.0
FENCE = "homeassistant/test-fence"

# From Home Assistant's MQTT documentation (integrations/mqtt and each platform's page).
COMMON = {"p", "name", "unique_id", "object_id", "icon", "device_class", "qos"}
COMMON |= {"availability_topic", "payload_available", "payload_not_available"}
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
DEVICE_KEYS = {"identifiers", "name", "manufacturer", "model", "sw_version"}
ORIGIN_KEYS = {"name", "sw_version", "support_url"}


def with_discovery(cfg: Config, mode: str) -> Config:
    return cfg.model_copy(update={"link": cfg.link.model_copy(update={"discovery": mode})})


def check_component(platform: str, options: dict[str, Any]) -> None:
    assert REQUIRED[platform] <= options.keys(), (platform, REQUIRED[platform] - options.keys())
    unknown = options.keys() - COMMON - REQUIRED[platform] - ALLOWED[platform]
    assert not unknown, (platform, unknown)


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
    assert len(ids) == len(set(ids)) == 6
    assert sorted(p for p, _ in entities) == sorted(
        ["event", "sensor", "binary_sensor", "switch", "switch", "button"]
    )
    # Built from names and templates only: nothing of the home (or of speech) is in them.
    home = [d.name for d in config.home.devices] + list(config.home.areas)
    text = json.dumps([p for _, p in sent])
    assert not [name for name in home if name in text]
    names = set(discovery.intent_names(config))
    for s in leaves([p for _, p in sent]):
        assert s in names or s.startswith(("{{", "pendant/", "mdi:")) or len(s) <= 40, s


def test_event_types_are_every_intent_the_home_can_produce() -> None:
    config = demo_config()
    types = set(discovery.intent_names(config))
    assert {"HassTurnOn", "HassStartTimer", *(s.intent for s in config.home.sentences)} <= types
    # What the grammar-constrained recogniser can say, parsed as the ears parse it.
    import numpy as np

    from pendant.ears.understand.grammar import build_grammar
    from pendant.ears.understand.nlu import IntentParser

    parser = IntentParser(config)
    for sentence in build_grammar(config).sample(np.random.default_rng(0), 300):
        match = parser.parse(sentence)
        assert match is None or match.name in types, sentence


def test_discovery_off_announces_nothing_and_the_cli_prints_the_rest(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert discovery.messages(with_discovery(demo_config(), "off")) == []
    config = tmp_path / "pendant.toml"
    config.write_text('device_id = "cli-test"\n[link]\ndiscovery = "components"\n')
    assert cli_main(["discovery", "--config", str(config)]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(lines) == 6 and all(ln["topic"].endswith("/config") for ln in lines)
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
