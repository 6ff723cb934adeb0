"""The recogniser in the ears' child process: the same answers, the ears' loop free meanwhile,
and a child that dies or is given up on never leaves the ears hanging or out of step."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import numpy as np
import pytest

from pendant.core.config import Config
from pendant.core.errors import PendantError
from pendant.ears.asr import Transcription, create_recognizer
from pendant.ears.asr.worker import RecognizerProcess
from pendant.ears.audio.wav import read_audio
from pendant.ears.understand.grammar import Grammar
from tests.conftest import speech_files
from tests.support.ears_support import bare_ears
from tests.support.tasks import ticks_during


def _files() -> dict[str, Path]:
    return {f.stem: f for f in speech_files("main")}


def _started(config: Config, grammar: Grammar) -> RecognizerProcess:
    recognizer = RecognizerProcess(config, grammar)
    recognizer.wait_ready()
    return recognizer


def test_the_child_hears_what_the_recogniser_hears_in_process(
    config: Config, grammar: Grammar
) -> None:
    files = _files() | {f.stem: f for f in speech_files("generated")}
    names = ("lock the Front Door", "what's the date", "open the blinds in the Office")
    audio = [read_audio(files[name]) for name in names]
    here = create_recognizer(config, grammar)
    expected = [here.transcribe(a) for a in audio]
    assert all(e is not None for e in expected)
    assert any(e.rivals for e in expected if e is not None)  # they cross the pipe too
    child = _started(config, grammar)
    try:
        got = asyncio.run(_each(child, audio))
        assert child.guessed == here.guessed
    finally:
        child.close()
    assert got == expected


async def _each(recognizer: RecognizerProcess, audio: list[np.ndarray]) -> list[object]:
    return [await recognizer.transcribe(a) for a in audio]


def test_the_loop_runs_while_the_child_recognises(config: Config, grammar: Grammar) -> None:
    # Recognised in the loop's own thread (as before), the ticker would not tick once.
    audio = np.tile(read_audio(_files()["set a timer for 3 hours and 10 minutes"]), 2)
    child = _started(config, grammar)

    try:
        heard, ticks = asyncio.run(ticks_during(child.transcribe(audio)))
    finally:
        child.close()
    assert heard is not None
    assert ticks > 0


def test_an_answer_given_up_on_does_not_put_the_next_out_of_step(
    config: Config, grammar: Grammar
) -> None:
    # A guess dropped because speech went on: its answer must not become the next one's.
    files = _files()
    first, second = read_audio(files["lock the Front Door"]), read_audio(files["what's the date"])
    child = _started(config, grammar)

    async def main() -> Transcription | None:
        dropped = asyncio.create_task(child.transcribe(first))
        await asyncio.sleep(0.01)
        dropped.cancel()
        return await child.transcribe(second)

    try:
        heard = asyncio.run(main())
    finally:
        child.close()
    assert heard is not None and heard.text == "what's the date"


def test_a_child_that_dies_is_a_one_line_error_not_a_hang(config: Config, grammar: Grammar) -> None:
    child = _started(config, grammar)
    os.kill(child._child.pid, signal.SIGKILL)
    audio = read_audio(_files()["what's the date"])

    async def main() -> None:
        async with asyncio.timeout(30):
            await child.transcribe(audio)

    try:
        with pytest.raises(PendantError) as caught:
            asyncio.run(main())
    finally:
        child.close()
    assert str(caught.value) == "the recogniser stopped: killed by SIGKILL (out of memory?)"


def test_a_recogniser_that_cannot_start_says_why_in_one_line(
    config: Config, grammar: Grammar, tmp_path: Path
) -> None:
    whisper = config.asr.model_copy(update={"backend": "whisper"})
    models = config.models.model_copy(update={"cache_dir": str(tmp_path / "empty")})
    broken = config.model_copy(update={"asr": whisper, "models": models})
    with pytest.raises(PendantError) as caught:
        _started(broken, grammar)
    message = str(caught.value)
    assert message.startswith("the recogniser did not start: ") and "\n" not in message


class Held:
    """A recogniser whose answer waits until the test lets it go."""

    def __init__(self, grammar: Grammar) -> None:
        self.grammar = grammar
        self.guessed: dict[str, str] = {}
        self.working = asyncio.Event()
        self.answer = asyncio.Event()

    async def transcribe(self, audio: np.ndarray) -> Transcription:
        self.working.set()
        await self.answer.wait()
        return Transcription("turn on the kitchen lights", 1.0)

    def close(self) -> None:
        pass


def test_a_mute_while_an_utterance_is_recognised_drops_it(config: Config, grammar: Grammar) -> None:
    # The loop is free during a decode now, so a mute can arrive in the middle of one: the
    # wearer said no, and what was said before it must not come out after it.
    from pendant.core.events import Intent
    from pendant.ears.vad import Utterance

    recognizer = Held(grammar)
    ears, published = bare_ears(config, grammar, recognizer)

    async def main() -> Intent | None:
        heard = asyncio.create_task(
            ears.handle(Utterance(np.zeros(16_000, np.int16), 0, 1000), pressed=False)
        )
        await recognizer.working.wait()
        await ears.set_muted(True)
        recognizer.answer.set()
        return await heard

    assert asyncio.run(main()) is None
    assert not [e for e in published if isinstance(e, Intent)]


def test_closing_it_mid_utterance_is_an_error_for_the_caller_not_a_hang(
    config: Config, grammar: Grammar
) -> None:
    # The ears close the old recogniser when the grammar is rebuilt, maybe mid-decode: the
    # caller must hear of it (and ask the new one), not wait for an answer that never comes.
    audio = np.tile(read_audio(_files()["set a timer for 3 hours and 10 minutes"]), 3)
    child = _started(config, grammar)

    async def main() -> None:
        async with asyncio.timeout(30):
            heard = asyncio.create_task(child.transcribe(audio))
            await asyncio.sleep(0.05)
            child.close()
            await heard

    with pytest.raises(PendantError, match="closed"):
        asyncio.run(main())


def test_the_child_reads_the_parents_config_without_pydantic(
    config: Config, grammar: Grammar
) -> None:
    """The child takes the config the ears validated as it is: pydantic's native library is
    never mapped into it (about 10 MB less per pendant), and it hears all the same."""
    child = _started(config, grammar)
    try:
        maps = Path(f"/proc/{child.pid}/maps").read_text()
        heard = asyncio.run(_each(child, [read_audio(_files()["lock the Front Door"])]))
    finally:
        child.close()
    assert "numpy" in maps  # the check reads the right process's libraries
    assert "pydantic_core" not in maps
    assert heard[0] is not None and heard[0].text == "lock the front door"  # type: ignore[attr-defined]
