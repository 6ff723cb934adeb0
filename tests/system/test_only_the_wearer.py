"""Only the wearer (issue 19), end to end: real mosquitto, the real voice encoder (`ge2e-voice`
from the model cache), real recordings. The wearer is the voice of speech-en/main; a bystander
is speech-en/generated's (another voice saying English commands the demo home knows) and one
of speech-other-languages' speakers.

The wearer enrols with `pendant voice enrol` from five recordings (recordings of two voices
are refused, a lone other one is left out); then the bystander's command publishes nothing at
all while the wearer's goes out; after `pendant voice forget --all` the check is no longer in
force and the same bystander's command goes out (so it was a command the check stopped). And
the phone's way: `cmd/voice` through the link to the ears, which take the next five utterances
as the voice, then forget it; five utterances of two voices are not kept, and the phone hears
why (`not_one_voice`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import stat
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from pendant.app.local_broker import LocalBroker
from pendant.app.one_process import Pendant
from pendant.app.replay import simulated
from pendant.core import mqtt
from pendant.core.bus import topic_of as bus_topic
from pendant.core.config import Config, SpeakerConfig
from pendant.core.errors import ModelError
from pendant.core.events import Button
from pendant.core.model_cache import model_path
from pendant.ears.audio import Chunk
from pendant.ears.audio.wav import WavSource
from tests.conftest import DEMO_CONFIG, SPEECH, demo_config, speech_files

TIMEOUT_S = 240
ENROL = [
    "set a timer for 3 hours and 10 minutes",
    "set Bed Light brightness to 50 percent",
    "what is the Outdoor Humidity",
    "is the Front Door locked",
    "activate Mood Lighting",
]
WEARER_SAYS = "turn off lights in the Office"  # HassTurnOff
BYSTANDER_SAYS = "resume TV"  # HassMediaUnpause, in another voice
OTHERS = SPEECH.parent / "speech-other-languages"


@pytest.fixture(autouse=True)
def encoder() -> None:
    pytest.importorskip("pendant.ears.speaker.encoder", reason="no voice encoder module")
    try:
        model_path(demo_config(), "ge2e-voice")
    except ModelError as exc:
        pytest.skip(str(exc))


def wearer(stem: str) -> Path:
    (path,) = [f for f in speech_files("main") if f.stem == stem]
    return path


def bystander() -> Path:
    (path,) = [f for f in speech_files("generated") if f.stem == BYSTANDER_SAYS]
    return path


def foreigner() -> Path:
    if not OTHERS.is_dir():
        pytest.skip(f"{OTHERS} is absent: the shared recordings are not on this machine")
    return sorted((OTHERS / "de").rglob("*.wav"))[0]


def other_voice() -> list[Path]:
    """Two utterances of another voice: speech-other-languages' synthesized Italian. (Its real
    recorded people, fr and es, sound too much like this real wearer to the encoder: mixed with
    his recordings they are mostly not caught; speaker/README.md, "One voice an enrolment".)"""
    if not OTHERS.is_dir():
        pytest.skip(f"{OTHERS} is absent: the shared recordings are not on this machine")
    return sorted((OTHERS / "it" / "generated").glob("*.wav"))[:2]


def voice_cli(state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2] / "device")}
    return subprocess.run(
        [sys.executable, "-m", "pendant", "--config", str(DEMO_CONFIG), "voice",
         "--state-dir", str(state), *args],
        capture_output=True, text=True, env=env, timeout=TIMEOUT_S, check=False,
    )  # fmt: skip


# Not the encoder's calibrated DEFAULT_THRESHOLD (0.70): that refuses about half of this real
# speaker's commands in room noise (make measure-speaker: 46-65 % of them), and
# these tests are about what a refusal does, not where the threshold lies. The bystander's
# voice scores under 0.62 against this enrolment, the wearer's commands here over 0.74 offline.
THRESHOLD = 0.65


def checking(mode: str = "conversation") -> Config:
    speaker = SpeakerConfig(check=mode, threshold=THRESHOLD)
    return demo_config().model_copy(update={"speaker": speaker})


async def heard_outside(config: Config, files: list[Path]) -> list[tuple[str, dict]]:
    """Plays `files` through the ears and the link on private brokers; everything the home
    broker then carries under the pendant's topics, as (topic, payload)."""
    seen: list[tuple[str, dict]] = []
    with (
        LocalBroker(users=("pendant",)) as bus,
        LocalBroker(users=("link", "viewer"), tcp=True) as home,
    ):
        cfg = simulated(config, bus, home, realtime=False)
        pendant = Pendant(cfg, source=WavSource(cfg.audio, files), parts=("ears", "link"))
        async with mqtt.client(
            host="127.0.0.1",
            port=home.port or 0,
            username="viewer",
            password=home.password("viewer"),
        ) as viewer:
            await viewer.subscribe(f"{pendant.link.base_topic}/#", qos=1)

            async def collect() -> None:
                async for message in viewer.messages:
                    if str(message.topic).endswith("/availability"):
                        continue  # "online", not JSON
                    if message.payload:
                        seen.append((str(message.topic), json.loads(message.payload)))  # type: ignore[arg-type]

            collector = asyncio.create_task(collect())
            await pendant.run()
            await asyncio.sleep(1.0)  # QoS 1 to the viewer, after the link's drain
            collector.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await collector
    return seen


def of_type(seen: list[tuple[str, dict]], kind: str) -> list[dict]:
    return [p for _, p in seen if p.get("type") == kind]


def no_numbers_left(seen: list[tuple[str, dict]], voices_file: Path | None) -> None:
    """No list of numbers anywhere outside, and none of the voiceprint's digits."""
    for topic, payload in seen:
        text = json.dumps(payload)
        assert "embedding" not in text and "score" not in text, topic
    if voices_file is not None and voices_file.exists():
        stored = json.loads(voices_file.read_text())["voices"][0]["embedding"]
        digits = [f"{x:.6f}".rstrip("0") for x in stored[:32] if abs(x) > 1e-3]
        for topic, payload in seen:
            text = json.dumps(payload)
            assert not any(d in text for d in digits if len(d) > 6), topic


def test_only_the_wearers_command_leaves_and_forgetting_clears_the_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = tmp_path / "ears-state"
    monkeypatch.setenv("STATE_DIRECTORY", str(state))
    enrolled = voice_cli(state, "enrol", "Wearer", *(str(wearer(s)) for s in ENROL))
    assert enrolled.returncode == 0, enrolled.stderr
    assert voice_cli(state, "list").stdout.split("\n")[0] == "Wearer"
    voices_file = state / "voices.json"
    assert stat.S_IMODE(voices_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(state.stat().st_mode) == 0o700

    files = [bystander(), wearer(WEARER_SAYS), foreigner()]
    seen = asyncio.run(asyncio.wait_for(heard_outside(checking(), files), TIMEOUT_S))
    assert [i["name"] for i in of_type(seen, "intent")] == ["HassTurnOff"]
    assert [t["text"] for t in of_type(seen, "transcript")] == [WEARER_SAYS.lower()]
    assert of_type(seen, "not_recognized") == []  # the bystanders: nothing at all
    (voices,) = of_type(seen, "voices")
    assert voices["names"] == ["Wearer"] and voices["in_force"] is True
    no_numbers_left(seen, voices_file)

    forgot = voice_cli(state, "forget", "--all")
    assert forgot.returncode == 0, forgot.stderr
    assert voice_cli(state, "list").stdout == "" and not voices_file.exists()
    seen = asyncio.run(asyncio.wait_for(heard_outside(checking(), [bystander()]), TIMEOUT_S))
    assert [i["name"] for i in of_type(seen, "intent")] == ["HassMediaUnpause"]
    (voices,) = of_type(seen, "voices")
    assert voices["names"] == [] and voices["in_force"] is False


def test_a_bad_voice_command_line_is_one_line(tmp_path: Path) -> None:
    state = tmp_path / "ears-state"
    few = voice_cli(state, "enrol", "Wearer", str(wearer(ENROL[0])))
    assert few.returncode != 0
    assert few.stderr.count("\n") == 1 and "3 are needed" in few.stderr
    unknown = voice_cli(state, "forget", "Nobody")
    assert unknown.returncode != 0 and "no voice named 'Nobody'" in unknown.stderr
    state.mkdir(mode=0o700, exist_ok=True)
    (state / "voices.json").write_text("{broken")
    broken = voice_cli(state, "list")
    assert broken.returncode != 0 and broken.stderr.count("\n") == 1
    assert "pendant voice forget --all" in broken.stderr


def test_an_enrolment_of_two_voices_is_refused_in_one_line_and_a_lone_other_left_out(
    tmp_path: Path,
) -> None:
    state = tmp_path / "ears-state"
    mine = [str(wearer(s)) for s in ENROL]
    theirs = [str(p) for p in other_voice()]
    mixed = voice_cli(state, "enrol", "Wearer", *mine[:3], *theirs)
    assert mixed.returncode != 0
    assert mixed.stderr.count("\n") == 1, mixed.stderr
    assert "do not sound like one voice" in mixed.stderr and "alone" in mixed.stderr
    assert not (state / "voices.json").exists()  # nothing of either voice kept

    one_other = voice_cli(state, "enrol", "Wearer", *mine[:2], theirs[0], *mine[2:4])
    assert one_other.returncode == 0, one_other.stderr
    assert f"{theirs[0]}: not like the others" in one_other.stdout
    assert "from 4 utterances" in one_other.stdout

    alone = voice_cli(state, "enrol", "Wearer", *mine)
    assert alone.returncode == 0, alone.stderr
    assert "left out" not in alone.stdout and "from 5 utterances" in alone.stdout


class Gated:
    """A WAV source that plays only once the test opens it, and then stays open (silent)
    until closed: the phone's enrol command must reach the ears before the speech does."""

    def __init__(self, inner: WavSource) -> None:
        self.inner = inner
        self.realtime = inner.realtime
        self.opened = asyncio.Event()
        self.closed = asyncio.Event()

    async def chunks(self) -> AsyncIterator[Chunk]:
        await self.opened.wait()
        async for chunk in self.inner.chunks():
            yield chunk
        await self.closed.wait()

    def pause(self) -> None:
        self.inner.pause()

    def resume(self) -> None:
        self.inner.resume()

    def close(self) -> None:
        self.inner.close()
        self.closed.set()


@contextlib.asynccontextmanager
async def phone_beside_pendant(
    files: list[Path], confirm_s: float | None = None
) -> AsyncIterator[tuple[Any, str, Gated, LocalBroker, Config]]:
    """The ears and the link on a real bus, hearing `files` once the test opens the gate, and a
    paired phone on the device's own broker (link.socket), subscribed to the voices topic:
    (the phone's client, the base topic, the gate, the bus, the config)."""
    with (
        LocalBroker(users=("pendant", "phone")) as bus,
        LocalBroker(users=("link", "viewer"), tcp=True) as home,
    ):
        cfg = simulated(checking(), bus, home, realtime=False)
        link = cfg.link.model_copy(update={"socket": str(bus.socket_path)})
        update: dict[str, Any] = {"link": link}
        if confirm_s is not None:  # the tap's window
            update["listen"] = cfg.listen.model_copy(update={"confirm_s": confirm_s})
        cfg = cfg.model_copy(update=update)
        source = Gated(WavSource(cfg.audio, files))
        pendant = Pendant(cfg, source=source, parts=("ears", "link"))  # type: ignore[arg-type]
        running = asyncio.create_task(pendant.run())
        try:
            async with mqtt.client(
                socket=bus.socket_path, username="phone", password=bus.password("phone")
            ) as phone:
                await phone.subscribe(f"{pendant.link.base_topic}/voices", qos=1)
                yield phone, pendant.link.base_topic, source, bus, cfg
        finally:
            source.close()
            running.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await running


def test_the_phone_enrols_through_the_link_and_forgets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = tmp_path / "ears-state"
    monkeypatch.setenv("STATE_DIRECTORY", str(state))
    files = [wearer(s) for s in ENROL]

    async def scenario() -> list[dict]:
        answers: list[dict] = []
        async with phone_beside_pendant(files, confirm_s=1.0) as (phone, base, source, bus, cfg):

            async def answer() -> dict:
                async for message in phone.messages:
                    if message.payload:
                        data = json.loads(message.payload)  # type: ignore[arg-type]
                        answers.append(data)
                        return data
                raise AssertionError("the bus closed")

            first = await answer()  # retained: what the ears said at start
            assert first["names"] == [] and first["in_force"] is False
            command = {"action": "enrol", "voice": "Wearer"}
            await phone.publish(f"{base}/cmd/voice", json.dumps(command), qos=1)
            while (await answer()).get("enrolling") != "Wearer":
                pass
            source.opened.set()
            while (last := await answer())["names"] != ["Wearer"]:
                assert last["enrolling"] == "Wearer"
            assert stat.S_IMODE((state / "voices.json").stat().st_mode) == 0o600
            # Forgetting lets everyone in: it waits for a tap on the pendant, and without one
            # nothing changes.
            command = {"action": "forget", "voice": "wearer"}
            await phone.publish(f"{base}/cmd/voice", json.dumps(command), qos=1)
            asked = await answer()
            assert asked["problem"] == "tap_to_confirm" and asked["names"] == ["Wearer"]
            untapped = await answer()
            assert untapped["problem"] == "not_confirmed" and untapped["names"] == ["Wearer"]
            await phone.publish(f"{base}/cmd/voice", json.dumps(command), qos=1)
            assert (await answer())["problem"] == "tap_to_confirm"
            tap = Button(device_id=cfg.device_id, action="tap")
            async with mqtt.client(
                socket=bus.socket_path, username="pendant", password=bus.password("pendant")
            ) as body:  # what the body sends on a tap
                await body.publish(bus_topic(tap), tap.to_json(), qos=1)
            while (await answer())["names"] != []:
                pass
        return answers

    answers = asyncio.run(asyncio.wait_for(scenario(), TIMEOUT_S))
    progress = [a["heard"] for a in answers if a.get("enrolling") == "Wearer"]
    assert progress[0] == 0 and max(progress) >= 4  # one answer per utterance taken
    for a in answers:
        # left_out: a count of utterances (0-5), like heard; never a score.
        assert set(a) <= {
            "type", "version", "id", "device_id", "timestamp_ms",
            "names", "check", "in_force", "enrolling", "heard", "needed", "problem", "left_out",
        }  # fmt: skip
        assert a.get("left_out", 0) in range(6)
    assert json.loads((state / "voices.json").read_text())["voices"] == []


def test_the_phone_hears_that_an_enrolment_of_two_voices_was_not_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = tmp_path / "ears-state"
    monkeypatch.setenv("STATE_DIRECTORY", str(state))
    files = [wearer(s) for s in ENROL[:3]] + other_voice()

    async def scenario() -> list[dict]:
        answers: list[dict] = []
        async with phone_beside_pendant(files) as (phone, base, source, _bus, _cfg):
            sent = False
            async for message in phone.messages:
                if not message.payload:
                    continue
                answer = json.loads(message.payload)  # type: ignore[arg-type]
                answers.append(answer)
                if not sent:  # the retained one, from the ears' start
                    command = {"action": "enrol", "voice": "Wearer"}
                    await phone.publish(f"{base}/cmd/voice", json.dumps(command), qos=1)
                    sent = True
                elif answer.get("enrolling") == "Wearer":
                    source.opened.set()
                elif answer.get("problem") or answer["names"]:
                    break  # the enrolment's end
        return answers

    answers = asyncio.run(asyncio.wait_for(scenario(), TIMEOUT_S))
    assert max(a["heard"] for a in answers) == 4  # the fifth utterance ended it
    last = answers[-1]
    assert last["problem"] == "not_one_voice" and last["names"] == [] and not last["in_force"]
    assert not (state / "voices.json").exists()
