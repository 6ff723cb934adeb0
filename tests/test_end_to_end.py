"""WAV files in, intents out at a paho subscriber on the home broker: the whole pendant,
real mosquitto, real models."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pendant.config import Config
from pendant.ears.understand.nlu import IntentParser
from pendant.local_broker import LocalBroker

from .conftest import SPEECH_CACHE, demo_config, hearing_config, speech_files, speech_sets
from .pipeline import Received, run_files, slot_values

MIN_CORRECT = 0.9


@pytest.fixture(scope="module")
def espeak_set() -> list[dict[str, Any]]:
    manifest = speech_sets().generate(SPEECH_CACHE)
    entries = json.loads(Path(manifest).read_text())["files"]
    for e in entries:
        e["path"] = SPEECH_CACHE / e["file"]
    return entries


def score_recordings(config: Config, files: list[Path], got: Received) -> tuple[float, list[str]]:
    parser = IntentParser(config)
    commands = [i for i, f in enumerate(files) if not f.stem.startswith("oov_")]
    misses = []
    for i in commands:
        expected = parser.parse(files[i].stem)
        assert expected is not None, f"{files[i].stem!r} is not in the closed set"
        heard = got.for_file(i)
        if not (
            len(heard) == 1
            and heard[0]["name"] == expected.name
            and slot_values(heard[0]) == expected.slot_values()
        ):
            misses.append(f"{files[i].stem} -> {[(h['name'], h['text']) for h in heard]}")
    return 1 - len(misses) / len(commands), misses


@pytest.mark.parametrize("subset", ["main", "generated"])
def test_shared_recordings_become_the_right_intents(
    subset: str, brokers: tuple[LocalBroker, LocalBroker]
) -> None:
    files = speech_files(subset)
    config = hearing_config()
    got = run_files(config, files, brokers)
    share, misses = score_recordings(config, files, got)
    assert share >= MIN_CORRECT, f"{share:.0%} correct; misses: {misses}"
    for i, f in enumerate(files):
        if f.stem.startswith("oov_"):
            assert got.for_file(i) == [], f"{f.name} is not a command but gave {got.for_file(i)}"
    # No text of a dropped utterance is published anywhere.
    for topic, body in got.messages:
        assert not topic.startswith("hermes/nlu/intentNotRecognized"), body


def test_espeak_commands_in_room_noise(
    espeak_set: list[dict[str, Any]], brokers: tuple[LocalBroker, LocalBroker]
) -> None:
    commands = [e for e in espeak_set if e["kind"] == "command"]
    assert len(commands) >= 40
    assert len({e["intent"] for e in commands}) >= 8
    got = run_files(hearing_config(), [e["path"] for e in commands], brokers)
    misses = []
    for i, e in enumerate(commands):
        heard = got.for_file(i)
        ok = (
            len(heard) == 1
            and heard[0]["name"] == e["intent"]
            and all(slot_values(heard[0]).get(k) == v for k, v in e["slots"].items())
        )
        if not ok:
            misses.append(f"{e['file']} ({e['text']}) -> {[(h['name'], h['text']) for h in heard]}")
    share = 1 - len(misses) / len(commands)
    assert share >= MIN_CORRECT, f"{share:.0%} correct; misses: {misses}"


def test_silence_noise_and_ordinary_talk_give_no_intent(
    espeak_set: list[dict[str, Any]], brokers: tuple[LocalBroker, LocalBroker]
) -> None:
    quiet = [e for e in espeak_set if e["kind"] in ("silence", "noise", "non_command")]
    assert {e["kind"] for e in quiet} == {"silence", "noise", "non_command"}
    got = run_files(hearing_config(), [e["path"] for e in quiet], brokers)
    assert got.intents == {}, [(quiet[i]["file"], v) for i, v in got.intents.items()]


def test_public_topics_and_hermes_mirror(brokers: tuple[LocalBroker, LocalBroker]) -> None:
    files = [f for f in speech_files("main") if f.stem in ("set a timer for 5 minutes", "pause")]
    got = run_files(demo_config(), files, brokers)
    topics = [t for t, _ in got.messages]
    assert "pendant/pendant-demo/availability" in topics
    status = [m for t, m in got.messages if t == "pendant/pendant-demo/status"]
    assert status and status[0]["state"] == "ready"
    timer = next(m for t, m in got.messages if t == "pendant/pendant-demo/intent/HassStartTimer")
    assert slot_values(timer) == {"minutes": 5}
    mirror = next(m for t, m in got.messages if t == "hermes/intent/HassStartTimer")
    assert mirror["input"] == timer["text"]
    assert mirror["intent"]["intentName"] == "HassStartTimer"
    assert mirror["siteId"] == "pendant-demo"
    assert mirror["sessionId"] == timer["session_id"]
    assert {"entity": "minutes", "slotName": "minutes", "rawValue": "five"}.items() <= mirror[
        "slots"
    ][0].items() or mirror["slots"][0]["value"] == {"kind": "Number", "value": 5}
    captured = [m for t, m in got.messages if t == "hermes/asr/textCaptured"]
    assert {c["text"] for c in captured} >= {timer["text"]}
    # Nothing that carries audio, ever.
    assert not any(t.startswith("hermes/audioServer") for t in topics)
    assert not any(t.startswith("pendant-bus") for t in topics)
