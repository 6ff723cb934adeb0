"""A phone's forget (or second enrolment) waits for a tap on the pendant while the check is in
force (`EarsService.on_voice`): a phone must not be able to take over a tap the wearer gives
for something else. The service here is the real `on_voice` over the real listener and store;
only the models and the bus are left out."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np

from pendant.core.config import Config
from pendant.core.events import Activity, Button, Command, Event, Intent, Voices
from pendant.ears.service import EarsService
from pendant.ears.understand.grammar import Grammar
from pendant.ears.vad import Utterance
from tests.support.ears_support import Heard, bare_ears
from tests.unit.ears.test_voices import check, direction


def service(config: Config, grammar: Grammar, tmp_path: Path) -> tuple[EarsService, list[Event]]:
    """`on_voice` of a service whose ears hear "unlock the front door" (a lock: it waits for
    a tap), with Sam and Kim enrolled and the check in force."""
    ears, published = bare_ears(config, grammar, Heard("unlock the front door"))
    speaker = check(tmp_path)
    speaker.store.add("Sam", direction(0), 5)
    speaker.store.add("Kim", direction(1), 5)
    assert speaker.in_force()
    svc = EarsService.__new__(EarsService)  # no models, no grammar: on_voice alone
    svc.config, svc.speaker, svc.ears, svc._rebuilds = config, speaker, ears, set()

    async def publish(event: Event) -> None:
        published.append(event)

    svc._publish = publish
    return svc, published


def voice(config: Config, action: str, name: str | None = None) -> Command:
    return Command(device_id=config.device_id, name="voice", action=action, voice=name)  # type: ignore[arg-type]


async def asked(published: list[Event], times: int = 1) -> None:
    """Until the LED has asked for a tap `times` times."""
    for _ in range(200):
        if sum(isinstance(e, Activity) and e.state == "confirm" for e in published) >= times:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the LED never asked for a tap")


async def tap(config: Config, svc: EarsService) -> None:
    assert svc.ears is not None
    for _ in range(20):  # a wait the command started has begun (and asked for its tap)
        await asyncio.sleep(0.01)
    await svc.ears.on_button(Button(device_id=config.device_id, action="tap"))
    for _ in range(50):  # what the tap confirmed runs in the waiting task
        await asyncio.sleep(0.01)


def problems(published: list[Event]) -> list[str | None]:
    return [e.problem for e in published if isinstance(e, Voices)]


def test_a_phones_forget_does_not_take_the_tap_the_wearer_gives_for_a_lock(
    config: Config, grammar: Grammar, tmp_path: Path
) -> None:
    svc, published = service(config, grammar, tmp_path)

    async def scenario() -> None:
        assert svc.ears is not None
        # The wearer says "unlock the front door": the LED asks for a tap...
        await svc.ears.handle(Utterance(np.zeros(16_000, np.int16), 0, 1000), pressed=False)
        await asked(published)
        # ...and, before the wearer taps, a phone asks to forget every voice.
        await svc.on_voice(voice(config, "forget_all"))
        await tap(config, svc)

    asyncio.run(scenario())
    assert svc.speaker.store.names() == ["Kim", "Sam"]  # "only the wearer" still holds
    assert [e.name for e in published if isinstance(e, Intent)] == ["HassTurnOff"]  # the lock
    assert problems(published) == ["not_confirmed"]


def test_a_phones_forget_all_does_not_replace_another_phones_forget_waiting_for_its_tap(
    config: Config, grammar: Grammar, tmp_path: Path
) -> None:
    svc, published = service(config, grammar, tmp_path)

    async def scenario() -> None:
        await svc.on_voice(voice(config, "forget", "Kim"))  # what the wearer asked for
        await asked(published)
        await svc.on_voice(voice(config, "forget_all"))  # someone else's phone
        await tap(config, svc)

    asyncio.run(scenario())
    assert svc.speaker.store.names() == ["Sam"]
    # The last answer is the tapped forget's: not a "not_confirmed" of the wait it replaced.
    assert problems(published) == ["tap_to_confirm", "not_confirmed", None]


def test_once_a_phone_hears_not_confirmed_it_may_ask_again(
    config: Config, grammar: Grammar, tmp_path: Path
) -> None:
    listen = config.listen.model_copy(update={"confirm_s": 0.5})
    config = config.model_copy(update={"listen": listen})
    svc, published = service(config, grammar, tmp_path)
    waiting_when_told: list[bool] = []

    async def publish(event: Event) -> None:
        published.append(event)
        if isinstance(event, Voices) and event.problem == "not_confirmed":
            assert svc.ears is not None
            waiting_when_told.append(svc.ears.waiting)  # what a prompt retry would find

    svc._publish = publish

    async def scenario() -> None:
        await svc.on_voice(voice(config, "forget", "Kim"))
        while not waiting_when_told:
            await asyncio.sleep(0.01)
        await svc.on_voice(voice(config, "forget", "Kim"))  # asked again, and tapped
        await asked(published, 2)
        assert svc.ears is not None
        await svc.ears.on_button(Button(device_id=config.device_id, action="tap"))
        for _ in range(50):  # the tapped forget runs once the wait is over
            await asyncio.sleep(0.01)

    asyncio.run(scenario())
    assert waiting_when_told == [False]
    assert problems(published) == ["tap_to_confirm", "not_confirmed", "tap_to_confirm", None]
    assert svc.speaker.store.names() == ["Sam"]


def test_a_mute_right_after_a_phones_request_says_not_confirmed_and_leaves_nothing_waiting(
    config: Config, grammar: Grammar, tmp_path: Path
) -> None:
    svc, published = service(config, grammar, tmp_path)

    async def scenario() -> None:
        assert svc.ears is not None
        # The mute comes next in the inbox: the wait is dropped before it has begun.
        await svc.on_voice(voice(config, "forget", "Kim"))
        await svc.ears.set_muted(True)
        for _ in range(20):
            await asyncio.sleep(0.01)
        assert not svc.ears.waiting
        await svc.ears.set_muted(False)
        await svc.on_voice(voice(config, "forget", "Kim"))  # asked again: waits for its tap
        await asked(published)

    asyncio.run(scenario())
    # (The last wait is dropped, and says so, as the test's loop ends.)
    assert problems(published)[:3] == ["tap_to_confirm", "not_confirmed", "tap_to_confirm"]
    assert svc.speaker.store.names() == ["Kim", "Sam"]
