"""How often a pause inside a command ends it too soon.

    .venv/bin/python tools/measure_pauses.py [--pauses 200,300,400] [--guess-after 120,90]

With no wake word the ears end an utterance on silence: a confident command that nothing the
closed set lets follow would change ends `GUESS_AFTER_MS` into the quiet (once its guess is
in), anything else after `vad.hangover_ms`. A speaker who pauses inside a command ("turn off
the tv ... in the kitchen", "set a timer for five ... minutes") may be cut off: the first part
goes out on its own, which is a wrong action when it means something else.

This renders every command of `tests/support/speech_cases.py` with espeak-ng, split in two at
each word where the first part is itself a sentence of the closed set (the dangerous cuts)
and once in the middle, with a pause of room noise between the parts, and plays each file
through the ears in conversation mode (faster than real time: each guess is waited for, so the
outcome does not depend on this machine's speed). For each `GUESS_AFTER_MS` and pause it
counts the files whose command came out whole and
right, those that gave a WRONG ACTION (any intent that is not the whole command's, most often
the first part's), and those that gave nothing. The espeak-ng voices are the shared sets' (the
constants were tuned with them); the cuts are not in any set.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import speech_sets  # tools/ is on sys.path when run as a script

from pendant.core.config import Config, load_config
from pendant.core.events import Event, Intent
from pendant.core.model_cache import model_path
from pendant.ears import listener
from pendant.ears.audio import RATE_HZ, Chunk
from pendant.ears.listener import Ears, Understanding
from pendant.ears.service import understand
from pendant.ears.vad import SileroVad

ROOT = Path(__file__).resolve().parents[1]
OUT = Path("pause-results.json")


@dataclass(frozen=True)
class Cut:
    """A command said in two parts with a pause between them."""

    text: str
    intent: str
    slots: dict[str, str | int]
    at: int
    """Words before the pause."""
    head_is_sentence: bool
    voice: speech_sets.Voice
    pause_ms: int


def cuts(config: Config, understanding: Understanding, pauses: list[int]) -> list[Cut]:
    """Every command cut where its first part is a sentence, and in the middle, per voice and
    pause."""
    cases = speech_sets.load_cases().CASES
    grammar = understanding.grammar
    found = []
    for case in cases:
        words = case.text.split()
        heads = {k for k in range(1, len(words)) if grammar.accepts(words[:k])}
        for at in sorted(heads | {len(words) // 2} - {0}):
            for voice in speech_sets.VOICES:
                for pause in pauses:
                    found.append(
                        Cut(case.text, case.intent, case.slots, at, at in heads, voice, pause)
                    )
    return found


def render(cut: Cut) -> np.ndarray:
    """The two parts with the pause between, in room noise (as the shared sets are made)."""
    words = cut.text.split()
    head = speech_sets.speak(" ".join(words[: cut.at]), cut.voice)
    tail = speech_sets.speak(" ".join(words[cut.at :]), cut.voice)
    # One level for both parts: they are one speaker's one sentence.
    gap = np.zeros(cut.pause_ms * RATE_HZ // 1000, np.float32)
    speech = np.concatenate((head, gap, tail))
    rng = speech_sets._rng(cut.text, cut.at, cut.voice.id, cut.pause_ms)
    audio, _, _ = speech_sets.noisy_utterance(speech, rng)
    return (np.clip(audio, -1, 1) * 32767).astype(np.int16)


class Played:
    """Audio from memory, played fast (`realtime` False: the listener waits for each guess)."""

    realtime = False
    started_ms = None

    def __init__(self, audio: np.ndarray, chunk_ms: int) -> None:
        self.audio, self.n = audio, RATE_HZ * chunk_ms // 1000

    async def chunks(self) -> AsyncIterator[Chunk]:
        for k in range(len(self.audio) // self.n):
            yield Chunk(self.audio[k * self.n : (k + 1) * self.n], k)

    def pause(self) -> None: ...

    def resume(self) -> None: ...

    def close(self) -> None: ...


def outcome(cut: Cut, intents: list[Intent]) -> str:
    """'right' (the whole command, alone), 'wrong' (any other intent) or 'none'."""
    if not intents:
        return "none"
    for intent in intents:
        slots = {s.name: s.value for s in intent.slots}
        if intent.name != cut.intent or any(slots.get(k) != v for k, v in cut.slots.items()):
            return "wrong"
    return "right" if len(intents) == 1 else "wrong"


async def hear(ears: Ears, audio: np.ndarray, published: list[Event]) -> list[Intent]:
    published.clear()
    ears.source = Played(audio, ears.config.audio.chunk_ms)  # type: ignore[assignment]
    ears.segmenter.reset()
    await ears.run()
    return [e for e in published if isinstance(e, Intent)]


async def measure(config: Config, guesses_after: list[int], pauses: list[int]) -> dict:
    understanding = understand(config)
    try:
        found = cuts(config, understanding, pauses)
        print(f"{len(found)} files: rendering", file=sys.stderr, flush=True)
        audios = [render(c) for c in found]
        silero = SileroVad(model_path(config, "silero-vad"))
        results: dict[str, dict[str, dict[str, int]]] = {}
        for guess_after in guesses_after:
            listener.GUESS_AFTER_MS = guess_after
            published: list[Event] = []

            async def publish(event: Event, into: list[Event] = published) -> None:
                into.append(event)

            ears = Ears(understanding, Played(audios[0], 30), silero, publish)  # type: ignore[arg-type]
            counts: dict[str, Counter[str]] = {}
            for cut, audio in zip(found, audios, strict=True):
                got = outcome(cut, await hear(ears, audio, published))
                kind = "head is a sentence" if cut.head_is_sentence else "head is not"
                for key in (f"{cut.pause_ms} ms, {kind}", f"{cut.pause_ms} ms"):
                    counts.setdefault(key, Counter())[got] += 1
                if got == "wrong" and cut.head_is_sentence:
                    log_wrong(guess_after, cut, published)
            name = f"guess after {guess_after} ms"
            results[name] = {k: dict(v) for k, v in sorted(counts.items())}
            print(name)
            for key, c in sorted(counts.items()):
                n = sum(c.values())
                print(
                    f"  pause {key:<32} {n:4d} files: right {c['right']:4d}, "
                    f"WRONG {c['wrong']:3d}, none {c['none']:3d}"
                )
        return results
    finally:
        understanding.recognizer.close()


def log_wrong(guess_after: int, cut: Cut, published: list[Event]) -> None:
    said = [e.text for e in published if isinstance(e, Intent)]
    logging.info(
        "guess after %d ms: %r cut after %d words (%s, %d ms) -> %s",
        guess_after, cut.text, cut.at, cut.voice.id, cut.pause_ms, said,
    )  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=ROOT / "examples" / "pendant.toml")
    parser.add_argument("--pauses", default="200,300,400", help="ms of pause, comma-separated")
    parser.add_argument(
        "--guess-after",
        default=str(listener.GUESS_AFTER_MS),
        help="values of listener.GUESS_AFTER_MS to try, comma-separated",
    )
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("pendant").setLevel(logging.WARNING)
    config = load_config(args.config)
    # What the ears hear: no action waits for a tap.
    config = config.model_copy(
        update={"listen": config.listen.model_copy(update={"confirm_kinds": []})}
    )
    guesses_after = [int(x) for x in args.guess_after.split(",")]
    pauses = [int(x) for x in args.pauses.split(",")]
    results = asyncio.run(measure(config, guesses_after, pauses))
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
