"""The wearer's own sentences from the phone, and the privacy switch, through the real pendant.

A running pendant (ears and link on real brokers, a quiet simulated mic) gets `cmd/sentences`
on the outside broker, as the companion app sends it: the ears check the templates, rebuild
the grammar, keep the set in their StateDirectory and answer on `pendant/<id>/sentences`
(retained). A refused set names the template and leaves the old one in force; a malformed
command is refused by the link before it reaches the ears.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from pendant.app.local_broker import LocalBroker
from pendant.app.one_process import Pendant
from pendant.app.replay import simulated
from pendant.core import bus
from pendant.core.events import HardwareMute, Intent, NotRecognized, Sentences, SentenceSet
from pendant.core.supervise import Readiness
from pendant.ears.audio.wav import WavSource
from pendant.ears.service import EarsService
from pendant.link.gate_sentences import GENERIC_ERROR, GENERIC_REASON
from pendant.link.service import UNKNOWN_SETS, Link
from tests.conftest import demo_config
from tests.support.ears_support import silent_wav
from tests.support.phone_sets import PARTY, WARNED, WARNINGS
from tests.support.tasks import running, until

TIMEOUT_S = 60


def test_the_phone_sets_sentences_the_ears_check_keep_and_run(
    brokers: tuple[LocalBroker, LocalBroker], tmp_path: Path, state_dir: Path
) -> None:
    bus_broker, home = brokers
    cfg = simulated(demo_config(), bus_broker, home, realtime=True, gap_ms=0)
    pendant = Pendant(
        cfg, source=WavSource(cfg.audio, [silent_wav(tmp_path, 60)]), parts=("ears", "link")
    )
    answers: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    arrivals: list[str] = []
    base = pendant.link.base_topic

    async def scenario() -> None:
        async with aiomqtt.Client(
            "127.0.0.1", home.port or 0, username="viewer", password=home.password("viewer")
        ) as phone:
            await phone.subscribe(f"{base}/sentences", qos=1)
            await phone.subscribe(f"{base}/error", qos=1)
            await phone.subscribe(f"{base}/status", qos=1)

            async def collect() -> None:
                async for m in phone.messages:
                    body = json.loads(bytes(m.payload))  # type: ignore[arg-type]
                    if str(m.topic).endswith("/status"):
                        arrivals.append("muted" if body["mic_muted"] else "status")
                        continue
                    arrivals.append("answer")
                    (answers if str(m.topic).endswith("/sentences") else errors).append(body)

            async def send(payload: object) -> None:
                raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                await phone.publish(f"{base}/cmd/sentences", raw, qos=1)

            spy = asyncio.create_task(collect())
            run = asyncio.create_task(pendant.run())
            try:
                await until(lambda: len(answers) >= 1, "len(answers) >= 1")
                assert answers[0]["sets"] == [] and answers[0]["accepted"] is True

                # A mute sent right after the sentences does not wait for their compile.
                await send({"sentences": [PARTY]})
                await phone.publish(f"{base}/cmd/mute", b'{"mic": true}', qos=1)
                await until(lambda: len(answers) >= 2, "len(answers) >= 2")
                second_answer = [i for i, a in enumerate(arrivals) if a == "answer"][1]
                assert "muted" in arrivals[:second_answer]
                await phone.publish(f"{base}/cmd/mute", b'{"mic": false}', qos=1)
                assert answers[-1]["accepted"] is True
                assert answers[-1]["sets"] == [PARTY]
                parser = pendant.ears.understanding.parser
                match = parser.parse("it's party time")
                assert match is not None and match.name == "PartyMode"
                # The config file's own sentences stay beside the phone's.
                assert parser.parse("ring my phone").name == "FindMyPhone"  # type: ignore[union-attr]
                assert pendant.ears.understanding.recognizer.grammar.accepts(  # type: ignore[attr-defined]
                    ["let's", "party"]
                )

                bad = {"intent": "Broken", "sentences": ["party (time"]}
                await send({"sentences": [PARTY, bad]})
                await until(lambda: len(answers) >= 3, "len(answers) >= 3")
                refused = answers[-1]
                assert refused["accepted"] is False
                assert "sentences[1] (Broken) 'party (time'" in refused["error"]
                assert refused["sets"] == [PARTY]  # the old set is still in force
                match = pendant.ears.understanding.parser.parse("it's party time")
                assert match is not None and match.name == "PartyMode"

                unknown_list = {"intent": "Broken", "sentences": ["play {nothing}"]}
                await send({"sentences": [unknown_list]})
                await until(lambda: len(answers) >= 4, "len(answers) >= 4")
                assert "unknown list {nothing}" in answers[-1]["error"]

                # Malformed: the link refuses it; the ears never hear of it.
                await send({"sentences": [{"intent": "lowercase", "sentences": ["x"]}]})
                await send(b'{"sentences": "party"}')
                await send(b"x" * 5000)
                await until(lambda: len(errors) >= 3, "len(errors) >= 3")
                assert all(e["command"] == "sentences" for e in errors)
                assert "sentences[0].intent" in errors[0]["reason"]
                assert "over 4096" in errors[2]["reason"]
                assert len(answers) == 4
            finally:
                run.cancel()
                spy.cancel()
                await asyncio.gather(run, spy, return_exceptions=True)

    asyncio.run(asyncio.wait_for(scenario(), TIMEOUT_S))
    kept = json.loads((state_dir / "sentences.json").read_text())
    assert kept == [PARTY]

    # A restarted ears runs the kept set from the start.
    again = EarsService(cfg, source=WavSource(cfg.audio, [silent_wav(tmp_path, 1)]))
    match = again.understanding.parser.parse("let's party")
    assert match is not None and match.name == "PartyMode"
    again.source.close()


def test_the_answer_warns_of_sentences_that_will_not_work_as_meant(
    brokers: tuple[LocalBroker, LocalBroker],
    tmp_path: Path,
    state_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # As on the image, which has no espeak-ng: a word no dictionary has gets no real sound.
    # (On PATH, not patched: the recogniser spells the words in its own process.)
    monkeypatch.setenv("PATH", str(tmp_path / "no-espeak"))
    bus_broker, home = brokers
    cfg = simulated(demo_config(), bus_broker, home, realtime=True, gap_ms=0)
    pendant = Pendant(
        cfg, source=WavSource(cfg.audio, [silent_wav(tmp_path, 60)]), parts=("ears", "link")
    )
    answers: list[dict[str, Any]] = []
    topic = f"{pendant.link.base_topic}/sentences"

    def phone() -> aiomqtt.Client:
        password = home.password("viewer")
        return aiomqtt.Client("127.0.0.1", home.port or 0, username="viewer", password=password)

    async def scenario() -> None:
        async with phone() as client:
            await client.subscribe(topic, qos=1)

            async def collect() -> None:
                async for m in client.messages:
                    answers.append(json.loads(bytes(m.payload)))  # type: ignore[arg-type]

            async def send(sets: list[dict[str, Any]]) -> None:
                body = json.dumps({"sentences": sets}).encode()
                await client.publish(f"{pendant.link.base_topic}/cmd/sentences", body, qos=1)

            spy = asyncio.create_task(collect())
            run = asyncio.create_task(pendant.run())
            try:
                await until(lambda: len(answers) >= 1, "len(answers) >= 1")
                assert answers[0]["warnings"] == []

                await send([WARNED])
                await until(lambda: len(answers) >= 2, "len(answers) >= 2")
                assert answers[-1]["accepted"] is True and answers[-1]["sets"] == [WARNED]
                assert answers[-1]["warnings"] == WARNINGS
                # Warned, not refused: the set runs, and the NLU picks as the warning said.
                parser = pendant.ears.understanding.parser
                assert parser.parse("party time").name == "PartyMode"  # type: ignore[union-attr]
                assert parser.parse("turn on the kitchen lights").name == "HassTurnOn"  # type: ignore[union-attr]

                # A refused set leaves the old one in force, and what was said about it.
                await send([{"intent": "Broken", "sentences": ["party (time"]}])
                await until(lambda: len(answers) >= 3, "len(answers) >= 3")
                assert answers[-1]["accepted"] is False
                assert answers[-1]["warnings"] == WARNINGS
            finally:
                run.cancel()
                spy.cancel()
                await asyncio.gather(run, spy, return_exceptions=True)
        # A phone that comes later is told too (retained).
        async with phone() as late:
            await late.subscribe(topic, qos=1)
            async with asyncio.timeout(20):
                retained = json.loads(bytes((await anext(late.messages)).payload))  # type: ignore[arg-type]
            assert retained["warnings"] == WARNINGS

    asyncio.run(asyncio.wait_for(scenario(), TIMEOUT_S))

    # A restarted ears says the same of the set it kept.
    again = EarsService(cfg, source=WavSource(cfg.audio, [silent_wav(tmp_path, 1)]))
    warnings = asyncio.run(asyncio.wait_for(again.warnings_for(again.phone_sentences), TIMEOUT_S))
    assert [w.model_dump() for w in warnings] == WARNINGS
    again.source.close()


def test_sets_the_link_has_no_record_of_are_reported_not_dropped_in_silence(
    brokers: tuple[LocalBroker, LocalBroker], tmp_path: Path, state_dir: Path
) -> None:
    """The ears kept the phone's set, the link did not (its file lost, or a pendant updated
    from before the link kept one): the gate drops the ears' answer and every intent of that
    set. The link says so on `error` once, and the phone's sending the set again mends it."""
    bus_broker, home = brokers
    cfg = simulated(demo_config(), bus_broker, home, realtime=True, gap_ms=0)
    (state_dir / "sentences.json").write_text(json.dumps([PARTY]))
    pendant = Pendant(
        cfg, source=WavSource(cfg.audio, [silent_wav(tmp_path, 60)]), parts=("ears", "link")
    )
    answers: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    base = pendant.link.base_topic

    async def scenario() -> None:
        async with aiomqtt.Client(
            "127.0.0.1", home.port or 0, username="viewer", password=home.password("viewer")
        ) as phone:
            await phone.subscribe(f"{base}/sentences", qos=1)
            await phone.subscribe(f"{base}/error", qos=1)

            async def collect() -> None:
                async for m in phone.messages:
                    body = json.loads(bytes(m.payload))  # type: ignore[arg-type]
                    (answers if str(m.topic).endswith("/sentences") else errors).append(body)

            async with running(collect(), pendant.run()):
                await until(lambda: len(errors) >= 1, "the link's report", timeout=30)
                assert errors[0]["command"] == "sentences"
                assert errors[0]["reason"] == UNKNOWN_SETS
                assert answers == []  # the ears' answer named sets the phone never sent
                body = json.dumps({"sentences": [PARTY]}).encode()
                await phone.publish(f"{base}/cmd/sentences", body, qos=1)
                await until(lambda: len(answers) >= 1, "the ears' answer", timeout=30)
                assert answers[-1]["accepted"] is True and answers[-1]["sets"] == [PARTY]
                assert len(errors) == 1

    asyncio.run(asyncio.wait_for(scenario(), TIMEOUT_S))


def test_a_corrupt_sentence_file_is_left_out_not_fatal(
    brokers: tuple[LocalBroker, LocalBroker], tmp_path: Path, state_dir: Path
) -> None:
    bus_broker, home = brokers
    cfg = simulated(demo_config(), bus_broker, home, realtime=False)
    (state_dir / "sentences.json").write_text("{not json")
    ears = EarsService(cfg, source=WavSource(cfg.audio, [silent_wav(tmp_path, 1)]))
    assert ears.phone_sentences == []
    assert ears.understanding.parser.parse("ring my phone") is not None
    ears.source.close()


def test_the_privacy_switch_wins_over_an_unmute(
    brokers: tuple[LocalBroker, LocalBroker], tmp_path: Path, state_dir: Path
) -> None:
    bus_broker, home = brokers
    cfg = simulated(demo_config(), bus_broker, home, realtime=True, gap_ms=0)
    source = WavSource(cfg.audio, [silent_wav(tmp_path, 60)])
    pendant = Pendant(cfg, source=source, parts=("ears", "link"))
    statuses: list[dict[str, Any]] = []
    activity: list[str] = []

    async def scenario() -> None:
        async with (
            aiomqtt.Client(
                "127.0.0.1", home.port or 0, username="viewer", password=home.password("viewer")
            ) as phone,
            bus.bus_client(cfg.bus, "test-body") as body,
        ):
            await phone.subscribe(f"{pendant.link.base_topic}/status", qos=1)
            await body.subscribe(bus.topic("activity/+"), qos=1)

            async def collect() -> None:
                async for m in phone.messages:
                    statuses.append(json.loads(bytes(m.payload)))  # type: ignore[arg-type]

            async def leds() -> None:
                async for m in body.messages:
                    activity.append(json.loads(bytes(m.payload))["state"])  # type: ignore[arg-type]

            async def switch(on: bool) -> None:
                event = HardwareMute(device_id=cfg.device_id, mic=on, camera=on)
                await body.publish(bus.topic("hardware_mute"), event.to_json(), qos=1, retain=True)

            async def unmute_from_phone() -> None:
                cmd = f"{pendant.link.base_topic}/cmd/mute"
                await phone.publish(cmd, b'{"mic": false}', qos=1)

            tasks = [asyncio.create_task(f()) for f in (collect, leds, pendant.run)]
            try:
                await until(
                    lambda: any(s["state"] == "ready" for s in statuses),
                    "any(s['state'] == 'ready' for s in statuses)",
                )
                await until(lambda: "capturing" in activity, "'capturing' in activity")
                await switch(True)
                await until(lambda: statuses[-1]["mic_muted"], "statuses[-1]['mic_muted']")
                await until(lambda: activity[-1] == "idle", "activity[-1] == 'idle'")
                heard = source.played_samples
                await unmute_from_phone()
                await asyncio.sleep(1.0)
                assert statuses[-1]["mic_muted"] is True
                assert source.played_samples == heard  # nothing captured while switched off
                await switch(False)
                await until(lambda: not statuses[-1]["mic_muted"], "not statuses[-1]['mic_muted']")
                await until(lambda: activity[-1] == "capturing", "activity[-1] == 'capturing'")
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                await body.publish(bus.topic("hardware_mute"), b"", qos=1, retain=True)

    asyncio.run(asyncio.wait_for(scenario(), TIMEOUT_S))


def test_a_rogue_ears_can_neither_teach_the_gate_words_nor_say_others(
    brokers: tuple[LocalBroker, LocalBroker], tmp_path: Path
) -> None:
    """The ears hold the microphone, so what they publish must not carry free text out. Here
    they are a client on the real bus, publishing what the ears may; the real link, on the real
    brokers, hands on only words of the closed set: an answer with sentences the phone never
    sent teaches the gate nothing (it learns them from the phone's `cmd/sentences`), and the
    text of a `not_recognized` is held to the closed set as an intent's is. A restarted link
    still knows the words the phone sent."""
    bus_broker, home = brokers
    cfg = simulated(demo_config(), bus_broker, home)
    link_cfg = cfg.link.model_copy(update={"outbox_path": str(tmp_path / "outbox.sqlite")})
    cfg = cfg.model_copy(update={"link": link_cfg})
    link = Link(cfg)
    bus_ready = Readiness()  # the link's: subscribed on the bus
    base = link.base_topic
    out: list[tuple[str, dict[str, Any]]] = []

    def party(text: str) -> Intent:
        return Intent(device_id=cfg.device_id, name="PartyMode", text=text, confidence=0.9)

    def heard(text: str) -> NotRecognized:
        return NotRecognized(device_id=cfg.device_id, text=text, confidence=0.2)

    def said(topic: str) -> list[str]:
        return [body["text"] for t, body in out if t == f"{base}/{topic}"]

    async def scenario() -> None:
        async with aiomqtt.Client(
            "127.0.0.1", home.port or 0, username="viewer", password=home.password("viewer")
        ) as phone:
            for topic in ("intent/+", "not_recognized", "sentences"):
                await phone.subscribe(f"{base}/{topic}", qos=1)

            async def collect() -> None:
                async for m in phone.messages:
                    out.append((str(m.topic), json.loads(bytes(m.payload))))  # type: ignore[arg-type]

            async with (
                running(collect(), link.run(bus_ready)),
                bus.bus_client(cfg.bus, "test-ears") as ears,
            ):
                await until(lambda: bus_ready.is_set() and link.connected.is_set(), "link")
                unsent = Sentences(device_id=cfg.device_id, sets=[SentenceSet(**PARTY)])
                await bus.publish(ears, unsent)
                await bus.publish(ears, party("let's party"))
                await bus.publish(ears, heard("meet me by the old mill at nine"))
                await bus.publish(ears, heard("turn on the kitchen lights"))
                await until(lambda: said("not_recognized"), "the closed-set not_recognized")
                assert said("not_recognized") == ["turn on the kitchen lights"]
                assert said("intent/PartyMode") == []
                # Sets the phone never sent: the answer itself is dropped too.
                assert link.gate.dropped == {"vocabulary": 2, "sentences": 1}

                # The phone sends them: their words may leave from now on.
                await phone.publish(f"{base}/cmd/sentences", json.dumps({"sentences": [PARTY]}))
                await until(lambda: link.commands["forwarded"] == 1, "the command forwarded")
                await bus.publish(ears, party("let's party"))
                await bus.publish(ears, heard("it's party time"))
                await until(lambda: said("intent/PartyMode"), "the phone's intent")
                await until(lambda: len(said("not_recognized")) == 2, "the phone's words heard")
                assert said("intent/PartyMode") == ["let's party"]
                assert link.gate.dropped == {"vocabulary": 2, "sentences": 1}
                assert not [t for t, _ in out if t == f"{base}/sentences"]

    asyncio.run(asyncio.wait_for(scenario(), TIMEOUT_S))
    again = Link(cfg)
    assert again.gate.admit(party("let's party").to_json()) is not None
    assert again.gate.admit(heard("it's party time").to_json()) is not None
    assert again.gate.dropped == {}


def test_a_rogue_ears_answer_says_only_the_forms_of_the_real_ones(
    brokers: tuple[LocalBroker, LocalBroker],
) -> None:
    """The `sentences` answer is the ears' one event with text the closed set does not hold.
    A rogue ears on the real bus answers the phone's real command; the real link, on the real
    brokers, hands on an answer only with sets the phone sent, and of its error and warnings
    only the forms the real ears produce (about the phone's own templates): other text reaches
    the phone as a fixed line, so the phone still hears that its set was refused."""
    bus_broker, home = brokers
    cfg = simulated(demo_config(), bus_broker, home)
    link = Link(cfg)
    bus_ready = Readiness()  # the link's: subscribed on the bus
    base = link.base_topic
    free = "meet me by the old mill at nine"
    warned = SentenceSet(**WARNED)
    bad = SentenceSet(intent="Broken", sentences=["party (time"])
    real_error = (
        "sentences[1] (Broken) 'party (time': "
        "Unable to find end of group ')' from index 0 in: (party (time)"
    )
    answers: list[dict[str, Any]] = []

    def answer(sets: list[SentenceSet], error: str | None, reasons: list[str]) -> Sentences:
        warnings = [{**w, "reason": r} for w, r in zip(WARNINGS, reasons, strict=False)]
        return Sentences.model_validate(
            {
                "device_id": cfg.device_id,
                "sets": sets,
                "accepted": error is None,
                "error": error,
                "warnings": warnings,
            }
        )

    async def scenario() -> None:
        async with aiomqtt.Client(
            "127.0.0.1", home.port or 0, username="viewer", password=home.password("viewer")
        ) as phone:
            await phone.subscribe(f"{base}/sentences", qos=1)

            async def collect() -> None:
                async for m in phone.messages:
                    answers.append(json.loads(bytes(m.payload)))  # type: ignore[arg-type]

            async def send(sets: list[SentenceSet]) -> None:
                body = json.dumps({"sentences": [s.model_dump() for s in sets]})
                await phone.publish(f"{base}/cmd/sentences", body)

            async with (
                running(collect(), link.run(bus_ready)),
                bus.bus_client(cfg.bus, "test-ears") as ears,
            ):
                await until(lambda: bus_ready.is_set() and link.connected.is_set(), "link")
                await send([warned])
                await until(lambda: link.commands["forwarded"] == 1, "the command forwarded")
                reasons = [w["reason"] for w in WARNINGS]
                # What the real ears say: it passes as it is.
                await bus.publish(ears, answer([warned], None, reasons))
                await until(lambda: len(answers) == 1, "the real answer")
                assert answers[0]["sets"] == [WARNED] and answers[0]["warnings"] == WARNINGS

                # The same sets, with free text where the ears have their say.
                rogue = [f"'{free}' is heard as HassTurnOn", f"'zxqv' {free}"]
                await bus.publish(ears, answer([warned], None, rogue))
                await until(lambda: len(answers) == 2, "the rogue warnings")
                assert [w["reason"] for w in answers[1]["warnings"]] == [GENERIC_REASON] * 2
                assert [w["sentence"] for w in answers[1]["warnings"]] == [
                    w["sentence"] for w in WARNINGS
                ]

                # A set the phone sent, refused: the real refusal passes, free text does not.
                await send([warned, bad])
                await until(lambda: link.commands["forwarded"] == 2, "the second command")
                # One at a time: an answer supersedes the one before it still waiting in the
                # link's outbox (the phone needs only the newest), as it would on a busy link.
                for n, error in enumerate((real_error, f"{real_error} {free}", free), start=3):
                    await bus.publish(ears, answer([warned], error, reasons))
                    await until(lambda n=n: len(answers) >= n, f"refusal {n - 2}")  # type: ignore[misc]
                assert [a["error"] for a in answers[2:]] == [
                    real_error,
                    GENERIC_ERROR,
                    GENERIC_ERROR,
                ]
                assert all(a["accepted"] is False for a in answers[2:])

                # Sets the phone never sent: the answer does not leave at all.
                unsent = SentenceSet(intent="PartyMode", sentences=[free])
                await bus.publish(ears, answer([unsent], None, []))
                await until(lambda: link.gate.dropped["sentences"] == 1, "the unsent sets")
                await bus.publish(ears, answer([], None, []))
                await until(lambda: len(answers) == 6, "the answer after")
                assert answers[5]["sets"] == []
                assert link.gate.dropped == {"sentences": 1}

    asyncio.run(asyncio.wait_for(scenario(), TIMEOUT_S))
