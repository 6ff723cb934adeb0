"""WAV files in, intents out at a paho subscriber on the home broker: the whole pendant,
real mosquitto, real models."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from pendant.app.local_broker import LocalBroker
from pendant.core.config import Config
from pendant.ears.understand.nlu import IntentParser
from tests.conftest import SPEECH_CACHE, demo_config, hearing_config, speech_files, speech_sets
from tests.support.pipeline import Received, run_files, slot_values

# The least share of commands heard right, per set, unheld (conversation mode) and held (the
# button: the wearer's, so only a mishearing may drop it), a little under what was measured
# on 2026-12-05 (README, "Recognisers"). Unheld, the recogniser also weighs how likely a
# bystander's speech is to fit the sentence by chance, and one-word commands are scored apart.
# speech-en/main, real recordings: 9 of 13 unheld and 12 of 16 held; missed held: "activate
# Mood Lighting" (just under the floor), "what's the weather" (heard as "what's that", under
# it) and "turn off lights in the Office", whose "off" the sounds fit only 1.4 nats better than
# "on" as the pipeline cuts it (pendant.ears.asr.rivals drops such a sentence).
# speech-en/generated: 36 and 35 of 37. The espeak-ng set: 145 of 165, unheld.
MIN_CORRECT = {
    ("main", False): 0.65,
    ("main", True): 0.75,
    ("generated", False): 0.9,
    ("generated", True): 0.9,
    ("espeak", False): 0.85,
}
MAX_WRONG_UNHELD = 1
MAX_WRONG_HELD = 1


@pytest.fixture(scope="module")
def espeak_set() -> list[dict[str, Any]]:
    manifest = speech_sets().generate(SPEECH_CACHE)
    entries = json.loads(Path(manifest).read_text())["files"]
    for e in entries:
        e["path"] = SPEECH_CACHE / e["file"]
    return entries


@dataclass
class Score:
    right: int = 0
    wrong: list[str] = field(default_factory=list)
    missed: list[str] = field(default_factory=list)

    def add(
        self, label: str, heard: list[dict[str, Any]], name: str, slots: dict[str, Any]
    ) -> None:
        """One command said, `heard` the intents attributed to it; `slots` the ones that
        must match (the NLU may add others)."""
        said = f"{label} -> {[(h['name'], h['text']) for h in heard]}"
        if not heard:
            self.missed.append(said)
        elif (
            len(heard) == 1
            and heard[0]["name"] == name
            and all(slot_values(heard[0]).get(k) == v for k, v in slots.items())
        ):
            self.right += 1
        else:
            self.wrong.append(said)

    def check(self, subset: str, held: bool) -> None:
        """The share right and the wrong actions within the bounds for the set, held or not."""
        min_correct = MIN_CORRECT[(subset, held)]
        total = self.right + len(self.wrong) + len(self.missed)
        share = self.right / total
        max_wrong = MAX_WRONG_HELD if held else MAX_WRONG_UNHELD
        assert len(self.wrong) <= max_wrong, f"wrong actions: {self.wrong}"
        assert share >= min_correct, f"{share:.0%} correct; missed: {self.missed}"


def one_word(text: str) -> bool:
    return len(text.split()) == 1


def score_recordings(config: Config, files: list[Path], got: Received, held: bool) -> Score:
    parser = IntentParser(config)
    score = Score()
    for i, f in enumerate(files):
        if f.stem.startswith("oov_"):
            continue
        expected = parser.parse(f.stem)
        assert expected is not None, f"{f.stem!r} is not in the closed set"
        heard = got.for_file(i)
        if not held and one_word(f.stem):
            assert heard == [] or (len(heard) == 1 and heard[0]["name"] == expected.name)
            continue
        score.add(f.stem, heard, expected.name, expected.slot_values())
    return score


@pytest.mark.parametrize("held", [False, True], ids=["conversation", "held"])
@pytest.mark.parametrize("subset", ["main", "generated"])
def test_shared_recordings_become_the_right_intents(
    subset: str, held: bool, brokers: tuple[LocalBroker, LocalBroker]
) -> None:
    files = speech_files(subset)
    config = hearing_config()
    got = run_files(config, files, brokers, held=held)
    score_recordings(config, files, got, held).check(subset, held)
    for i, f in enumerate(files):
        if f.stem.startswith("oov_") and not held:
            assert got.for_file(i) == [], f"{f.name} is not a command but gave {got.for_file(i)}"
    # No text of a dropped utterance is published anywhere.
    for topic, body in got.messages:
        assert held or not topic.startswith("hermes/nlu/intentNotRecognized"), body


def test_espeak_commands_in_room_noise(
    espeak_set: list[dict[str, Any]], brokers: tuple[LocalBroker, LocalBroker]
) -> None:
    # Conversation mode only: 43 s a run, and held talk is the easier case (measured on this
    # set with `tools/measure_asr.py --pressed`; the shared recordings run held above).
    held = False
    commands = [e for e in espeak_set if e["kind"] == "command"]
    assert len(commands) >= 40
    assert len({e["intent"] for e in commands}) >= 8
    got = run_files(hearing_config(), [e["path"] for e in commands], brokers, held=held)
    score = Score()
    for i, e in enumerate(commands):
        heard = got.for_file(i)
        if not held and one_word(e["text"]):
            assert heard == [] or (len(heard) == 1 and heard[0]["name"] == e["intent"])
            continue
        score.add(f"{e['file']} ({e['text']})", heard, e["intent"], e["slots"])
    score.check("espeak", held)


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
