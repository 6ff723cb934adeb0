"""The work `make bench-arm` counts, run by an aarch64 CPython under qemu-user.

Not run directly: tools/bench_arm.py starts it as `python3.11 guest.py PLAN.json` under
`qemu-aarch64` with the insn_count plugin. It marks the start and end of each piece of work
with a syscall the plugin watches (tools/arm/insn_count.c), so the instructions counted
between two marks are that work alone: no interpreter start-up, imports, model loading or
file reading inside them. It prints one JSON line: the marks, in order, with what each covers.

The plan (JSON): {"config": path, "backend": name, "grammar_cache": dir, "commands": [wav, ...],
"listen": {"silence": wav, "noise": wav, "speech": wav, "talk": wav}, "at_least_s": seconds}.
"""

from __future__ import annotations

import asyncio
import ctypes
import json
import math
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

MARK_SYSCALL = 0x7E57  # as in insn_count.c
_libc = ctypes.CDLL(None, use_errno=True)
_marks: list[dict[str, Any]] = []


def mark(label: str, **info: Any) -> None:
    """Tell the plugin to print its count here, under the mark's index."""
    _libc.syscall(MARK_SYSCALL, len(_marks))
    _marks.append({"id": len(_marks), "label": label, **info})
    if label in ("ready", "parse_end", "listen_end"):
        # Progress for the host to show: emulation is slow.
        done = "loaded (imports, grammar, models)" if label == "ready" else info
        print(f"    {label.removesuffix('_end')}: {done}", file=sys.stderr, flush=True)


mark("start")

import numpy as np  # noqa: E402

from pendant.core.config import load_config  # noqa: E402
from pendant.core.events import Event, Intent  # noqa: E402
from pendant.core.model_cache import model_path  # noqa: E402
from pendant.ears.asr import Recognizer, Transcription, create_recognizer  # noqa: E402
from pendant.ears.audio import RATE_HZ, Chunk  # noqa: E402
from pendant.ears.audio.wav import read_audio  # noqa: E402
from pendant.ears.listener import Ears, Understanding  # noqa: E402
from pendant.ears.understand.grammar import cached_grammar  # noqa: E402
from pendant.ears.understand.nlu import IntentParser  # noqa: E402
from pendant.ears.vad import SileroVad  # noqa: E402


class InProcess:
    """The recogniser in this process, as the ears' listener calls it: the device runs it in a
    child process (pendant.ears.asr.worker), whose instructions the plugin would not count."""

    def __init__(self, inner: Recognizer) -> None:
        self.inner = inner
        self.grammar = inner.grammar  # type: ignore[attr-defined]
        self.guessed = inner.guessed

    async def transcribe(self, audio: np.ndarray) -> Transcription | None:
        return self.inner.transcribe(audio)

    def close(self) -> None:
        self.inner.close()


class MemorySource:
    """The microphone, simulated: audio already in memory, in chunks, as fast as taken, on a
    clock that advances with the audio (so the VAD's timing is as on a device)."""

    realtime = False

    def __init__(self, audio: np.ndarray, chunk_ms: int) -> None:
        self.audio = audio
        self.n = RATE_HZ * chunk_ms // 1000
        self.chunk_ms = chunk_ms

    async def chunks(self) -> AsyncIterator[Chunk]:
        start_ms = time.time_ns() // 1_000_000
        for k in range(len(self.audio) // self.n):
            yield Chunk(
                self.audio[k * self.n : (k + 1) * self.n], start_ms + (k + 1) * self.chunk_ms
            )
            await asyncio.sleep(0)

    def pause(self) -> None: ...

    def resume(self) -> None: ...

    def close(self) -> None: ...


async def listen(ears: Ears, kind: str, name: str, audio_s: float, intents: list[str]) -> None:
    """The marks inside the event loop: its start-up is not listening."""
    mark("listen", kind=kind, file=name, audio_s=audio_s)
    await ears.run()
    mark("listen_end", kind=kind, intents=intents, utterances=ears.utterances)


def main() -> int:
    plan = json.loads(Path(sys.argv[1]).read_text())
    config = load_config(plan["config"])
    backend = plan.get("backend", config.asr.backend)
    config = config.model_copy(update={"asr": config.asr.model_copy(update={"backend": backend})})
    grammar = cached_grammar(config, Path(plan["grammar_cache"]))
    if grammar is None:
        print(json.dumps({"error": "the grammar is not in the cache the host wrote"}))
        return 1
    understanding = Understanding(
        config, InProcess(create_recognizer(config, grammar)), IntentParser(config), grammar
    )
    silero = SileroVad(model_path(config, "silero-vad"))
    mark("ready")

    # One utterance each: what the ears do with it once the VAD has cut it out.
    for wav in plan["commands"]:
        audio = read_audio(wav)
        mark("decode", file=Path(wav).name, audio_s=len(audio) / RATE_HZ)
        heard = understanding.recognizer.inner.transcribe(audio)
        mark("decode_end", text=heard.text if heard else None)
        mark("parse")
        match = understanding.parser.parse(heard.text) if heard is not None else None
        mark("parse_end", intent=match.name if match else None)

    # Listening: chunks through the VAD and the listener loop, recognition included.
    for kind, wav in plan["listen"].items():
        audio = read_audio(wav)
        # Short files (silence, noise) again and again, for long enough to average over.
        audio = np.tile(audio, math.ceil(plan["at_least_s"] * RATE_HZ / len(audio)))
        intents: list[str] = []

        async def publish(event: Event, into: list[str] = intents) -> None:
            if isinstance(event, Intent):
                into.append(event.name)

        silero.reset()
        ears = Ears(understanding, MemorySource(audio, config.audio.chunk_ms), silero, publish)
        asyncio.run(listen(ears, kind, Path(wav).name, len(audio) / RATE_HZ, intents))

    print("BENCH-ARM-MARKS " + json.dumps(_marks), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
