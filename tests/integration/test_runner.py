"""The one-process pendant: press-to-talk over the bus, and config changes while running."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiomqtt
import numpy as np
import pytest
import soundfile

from pendant.app.local_broker import LocalBroker
from pendant.app.one_process import Pendant
from pendant.app.replay import simulated
from pendant.core import bus
from pendant.core.config import load_config
from pendant.core.events import Button, Command
from pendant.ears import service as ears_service
from pendant.ears.audio import RATE_HZ
from pendant.ears.audio.wav import WavSource
from tests.conftest import DEMO_CONFIG, demo_config, speech_files

TIMEOUT_S = 60


async def press_to_talk_messages(
    brokers: tuple[LocalBroker, LocalBroker],
    wav: Path,
    press: bool = True,
    end: str = "release",
    **asr: float,
) -> list[tuple[str, dict[str, Any]]]:
    """Play `wav` in real time in press-to-talk mode, holding the button through it or not;
    every message the home broker then carries (plain-text ones as {"raw": text}). `asr`
    overrides settings of the config's [asr] table."""
    bus_broker, home = brokers
    config = demo_config()
    config = config.model_copy(
        update={
            "listen": config.listen.model_copy(update={"mode": "press_to_talk"}),
            "asr": config.asr.model_copy(update=asr),
        }
    )
    # A long quiet tail: the button is released well before the simulated mic runs out, however
    # loaded the machine is.
    cfg = simulated(config, bus_broker, home, realtime=True, gap_ms=3000)
    source = WavSource(cfg.audio, [wav])
    pendant = Pendant(cfg, source=source)
    seen: list[tuple[str, dict[str, Any]]] = []
    async with (
        aiomqtt.Client(
            "127.0.0.1", home.port or 0, username="viewer", password=home.password("viewer")
        ) as viewer,
        bus.bus_client(cfg.bus, "test-button") as button,
    ):
        await viewer.subscribe("#", qos=1)

        async def collect() -> None:
            async for m in viewer.messages:
                payload = bytes(m.payload)  # type: ignore[arg-type]
                try:
                    seen.append((str(m.topic), json.loads(payload)))
                except ValueError:  # availability is plain "online"/"offline"
                    seen.append((str(m.topic), {"raw": payload.decode(errors="replace")}))

        async def hold() -> None:
            while source.started_ms is None:
                await asyncio.sleep(0.01)
            # A bad event on the button topic must be ignored, not crash the pendant.
            await button.publish(bus.topic("button"), b"\xff not json", qos=1)
            if press:
                await bus.publish(button, Button(device_id=cfg.device_id, action="press"))
            await asyncio.sleep(len(source.spans_s) and source.spans_s[-1][1] + 0.3)
            if press:
                await bus.publish(button, Button(device_id=cfg.device_id, action=end))  # type: ignore[arg-type]

        tasks = [asyncio.create_task(collect()), asyncio.create_task(hold())]
        await pendant.run()
        # Until the viewer has every event the link passed on.
        own = f"{pendant.link.base_topic}/"
        while sum(t.startswith(own) and "type" in m for t, m in seen) < sum(
            pendant.link.published.values()
        ):
            await asyncio.sleep(0.02)
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
    return seen


async def press_to_talk(
    brokers: tuple[LocalBroker, LocalBroker],
    wav: Path,
    press: bool,
    end: str = "release",
    **asr: float,
) -> list[tuple[str, dict[str, Any]]]:
    """The intents and not-recognized events of a press-to-talk run."""
    seen = await press_to_talk_messages(brokers, wav, press, end, **asr)
    return [(t, m) for t, m in seen if m.get("type") in ("intent", "not_recognized")]


def file_named(stem: str) -> Path:
    return next(f for f in speech_files("main") if f.stem == stem)


def test_press_to_talk_hears_only_while_the_button_is_held(
    brokers: tuple[LocalBroker, LocalBroker],
) -> None:
    wav = file_named("set a timer for 5 minutes")
    held = asyncio.run(asyncio.wait_for(press_to_talk(brokers, wav, press=True), TIMEOUT_S))
    assert [m["name"] for _, m in held] == ["HassStartTimer"]
    not_held = asyncio.run(asyncio.wait_for(press_to_talk(brokers, wav, press=False), TIMEOUT_S))
    assert not_held == []
    # The body turned the hold into the mute gesture: what was held is dropped, unanswered.
    run = press_to_talk(brokers, wav, press=True, end="cancel")
    cancelled = asyncio.run(asyncio.wait_for(run, TIMEOUT_S))
    assert cancelled == []


def test_what_is_said_holding_the_button_has_its_own_confidence_floor(
    brokers: tuple[LocalBroker, LocalBroker],
) -> None:
    wav = file_named("set a timer for 5 minutes")
    # The conversation floor does not apply to the wearer's held talk ...
    run = press_to_talk(brokers, wav, press=True, min_confidence=1.0)
    held = asyncio.run(asyncio.wait_for(run, TIMEOUT_S))
    assert [m["type"] for _, m in held] == ["intent"]
    # ... its own does: above what the recogniser gave, the wearer hears "not recognized".
    run = press_to_talk(brokers, wav, press=True, min_confidence=0.0, min_confidence_pressed=1.0)
    refused = asyncio.run(asyncio.wait_for(run, TIMEOUT_S))
    assert [m["type"] for _, m in refused] == ["not_recognized"]


def test_press_to_talk_says_when_it_did_not_understand(
    brokers: tuple[LocalBroker, LocalBroker],
) -> None:
    got = asyncio.run(
        asyncio.wait_for(press_to_talk(brokers, file_named("oov_4"), press=True), TIMEOUT_S)
    )
    assert [(t.rsplit("/", 1)[-1], m["type"]) for t, m in got] == [
        ("not_recognized", "not_recognized")
    ]


def test_config_change_rebuilds_the_grammar_and_a_broken_edit_is_ignored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ears_service, "CONFIG_POLL_S", 0.05)
    path = tmp_path / "pendant.toml"
    path.write_text(DEMO_CONFIG.read_text())
    config = load_config(path)
    pendant = Pendant(config, path, source=WavSource(config.audio, [speech_files("main")[0]]))
    assert pendant.ears.understanding.parser.parse("brew the coffee") is None

    async def edit_and_wait() -> None:
        watcher = asyncio.create_task(pendant.ears.watch_config())
        try:
            old = pendant.ears.understanding
            path.write_text(path.read_text() + "\n[vad]\nhangover_ms = 1\n")
            await asyncio.sleep(0.5)
            assert pendant.ears.understanding is old  # broken: the running config is kept
            path.write_text(
                DEMO_CONFIG.read_text()
                + '\n[[home.sentences]]\nintent = "BrewCoffee"\n'
                + 'sentences = ["brew [the] coffee"]\n'
            )
            while pendant.ears.understanding is old:
                await asyncio.sleep(0.05)
        finally:
            watcher.cancel()

    asyncio.run(asyncio.wait_for(edit_and_wait(), TIMEOUT_S))
    match = pendant.ears.understanding.parser.parse("brew the coffee")
    assert match is not None and match.name == "BrewCoffee"
    assert pendant.ears.understanding.recognizer.grammar.accepts(["brew", "the", "coffee"])  # type: ignore[attr-defined]


def test_mute_captures_nothing_and_publishes_the_state_it_enforces(
    brokers: tuple[LocalBroker, LocalBroker], tmp_path: Path
) -> None:
    bus_broker, home = brokers
    quiet = tmp_path / "quiet.wav"
    soundfile.write(quiet, np.zeros(RATE_HZ * 3, np.int16), RATE_HZ, subtype="PCM_16")
    cfg = simulated(demo_config(), bus_broker, home, realtime=True, gap_ms=600)
    source = WavSource(cfg.audio, [quiet, file_named("set a timer for 5 minutes")])
    pendant = Pendant(cfg, source=source)
    statuses: list[dict[str, Any]] = []
    intents: list[dict[str, Any]] = []

    async def until(predicate: Callable[[], bool]) -> None:
        while not predicate():
            await asyncio.sleep(0.02)

    async def scenario() -> None:
        async with (
            aiomqtt.Client(
                "127.0.0.1", home.port or 0, username="viewer", password=home.password("viewer")
            ) as viewer,
            bus.bus_client(cfg.bus, "test-phone-via-link") as link_side,
        ):
            await viewer.subscribe("pendant/pendant-demo/#", qos=1)

            async def collect() -> None:
                async for m in viewer.messages:
                    topic = str(m.topic)
                    if topic.endswith("/status"):
                        statuses.append(json.loads(bytes(m.payload)))  # type: ignore[arg-type]
                    elif "/intent/" in topic:
                        intents.append(json.loads(bytes(m.payload)))  # type: ignore[arg-type]

            async def command(mic: bool) -> None:
                event = Command(device_id=cfg.device_id, name="mute", mic=mic)
                await link_side.publish(bus.topic("cmd/mute"), event.to_json(), qos=1)

            spy = asyncio.create_task(collect())
            run = asyncio.create_task(pendant.run())
            await until(lambda: any(s["state"] == "ready" for s in statuses))
            await command(True)
            await until(lambda: any(s["mic_muted"] for s in statuses))
            # Muted: the simulated mic delivers nothing, however long we wait.
            heard = source.played_samples
            await asyncio.sleep(1.5)
            assert source.played_samples == heard
            assert heard < RATE_HZ * 3  # still inside the quiet lead-in
            await command(False)
            await until(lambda: not statuses[-1]["mic_muted"])
            await asyncio.wait_for(run, TIMEOUT_S)
            await until(lambda: len(intents) >= 1)
            spy.cancel()

    asyncio.run(asyncio.wait_for(scenario(), TIMEOUT_S))
    assert [s["state"] for s in statuses] == ["ready", "muted", "ready"]
    assert [i["name"] for i in intents] == ["HassStartTimer"]


def test_link_publishes_to_the_device_local_broker_over_its_socket(
    brokers: tuple[LocalBroker, LocalBroker], tmp_path: Path
) -> None:
    """As on the pendant: one mosquitto is both the bus and the link's outside broker, reached
    over its unix socket, where the link logs in with its bus credentials."""
    bus_broker, _ = brokers
    config = demo_config()
    bus_config = config.bus.model_copy(
        update={
            "socket": str(bus_broker.socket_path),
            "username": "pendant",
            "password_file": str(bus_broker.password_file("pendant")),
        }
    )
    link_config = config.link.model_copy(
        update={"socket": str(bus_broker.socket_path), "outbox_path": str(tmp_path / "outbox")}
    )
    audio = config.audio.model_copy(update={"source": "wav", "realtime": False})
    cfg = config.model_copy(update={"bus": bus_config, "link": link_config, "audio": audio})
    pendant = Pendant(cfg, source=WavSource(cfg.audio, [file_named("what's the date")]))
    seen: list[str] = []

    async def scenario() -> None:
        async with aiomqtt.Client(
            str(bus_broker.socket_path),
            1883,
            transport="unix",
            username="intruder",
            password=bus_broker.password("intruder"),
        ) as phone:
            await phone.subscribe("pendant/pendant-demo/#", qos=1)

            async def collect() -> None:
                async for m in phone.messages:
                    seen.append(str(m.topic))

            spy = asyncio.create_task(collect())
            await pendant.run()
            while "pendant/pendant-demo/intent/HassGetCurrentDate" not in seen:
                await asyncio.sleep(0.02)
            spy.cancel()

    asyncio.run(asyncio.wait_for(scenario(), TIMEOUT_S))
    assert "pendant/pendant-demo/availability" in seen


def test_a_restarted_ears_stays_muted(
    brokers: tuple[LocalBroker, LocalBroker], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A crash or watchdog restart must not unmute: the ears remember it in their state dir."""
    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path))
    bus_broker, home = brokers
    cfg = simulated(demo_config(), bus_broker, home, realtime=True, gap_ms=600)
    wav = file_named("set a timer for 5 minutes")

    async def muted_then_restarted() -> tuple[WavSource, list[dict[str, Any]]]:
        first = ears_service.EarsService(cfg, source=WavSource(cfg.audio, [wav]))
        run = asyncio.create_task(first.run())
        while first.ears is None or first.ears.muted is False:
            if first.ears is not None and first.ears.heartbeat.age_s() < 1:
                await first.ears.set_muted(True)
            await asyncio.sleep(0.02)
        run.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await run
        statuses: list[dict[str, Any]] = []
        second_source = WavSource(cfg.audio, [wav])
        second = ears_service.EarsService(cfg, source=second_source)
        async with bus.bus_client(cfg.bus, "test-spy") as spy:
            await spy.subscribe(bus.topic("mic"), qos=1)
            run = asyncio.create_task(second.run())

            async def collect() -> None:
                async for m in spy.messages:
                    statuses.append(json.loads(bytes(m.payload)))  # type: ignore[arg-type]

            listening = asyncio.create_task(collect())
            while not statuses:
                await asyncio.sleep(0.02)
            await asyncio.sleep(1.0)  # long enough to have heard something, were it listening
            run.cancel()
            listening.cancel()
            for task in (run, listening):
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        return second_source, statuses

    source, statuses = asyncio.run(asyncio.wait_for(muted_then_restarted(), TIMEOUT_S))
    assert source.played_samples == 0
    assert statuses and all(s["muted"] for s in statuses)
