"""The recogniser's child process (`python -m pendant.ears.asr.child`): the other end of
`pendant.ears.asr.worker`'s pipes, whose docstring describes the wire.

It imports what a decode needs and no more: numpy, the backend, the closed set's word graph.
Not asyncio, hassil or the templates (the grammar arrives compiled), nor pydantic (the config
arrives validated, `Settings`): 14 MB less private memory than when it imported the ears'
modules (`tools/bench_services.py`, x86).
"""

from __future__ import annotations

import json
import logging
import signal
import struct
import sys
from collections.abc import Mapping
from dataclasses import asdict
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from pendant.core import backends, heap
from pendant.core.errors import PendantError
from pendant.ears.asr import Recognizer, create_recognizer
from pendant.ears.understand.closed_set import grammar_from_parts

if TYPE_CHECKING:
    from pendant.core.config import Config
    from pendant.ears.asr.open_vocab import OpenTranscriber

OPEN_VOCABULARY = "pendant.ears.asr.open_vocab:OpenTranscriber"
"""Loaded by name, as the backends are: only a child with `escalate.enabled` imports it and
faster-whisper."""
HEADER = struct.Struct("<cI")
"""Before each utterance's audio on the pipe: what is asked of it (`CLOSED` or `OPEN`), and
the length of the audio."""
CLOSED = b"c"
"""The closed-set sentence it was: the transcription's fields, or null."""
OPEN = b"o"
"""Its words, open vocabulary (`escalate.enabled`): a string, or null (also when the
child has no open-vocabulary recogniser)."""


class Settings(dict[str, Any]):
    """The config the parent validated, read back with attribute access (`config.asr.backend`).

    The child never validates it again: pydantic and the config's models cost about 10 MB of
    its memory, for a few fields the parent has already checked. A nested section is a
    `Settings` too; a mapping field (`home.area_aliases`) still works as the dict it is.
    """

    def __init__(self, data: Mapping[str, Any]) -> None:
        super().__init__({k: _settings(v) for k, v in data.items()})

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


def _settings(value: Any) -> Any:
    if isinstance(value, dict):
        return Settings(value)
    if isinstance(value, list):  # a list of sections (home.devices)
        return [_settings(v) for v in value]
    return value


def _load(hello: dict[str, Any]) -> tuple[Recognizer, OpenTranscriber | None]:
    """The closed-set recogniser, and the open-vocabulary one only when `escalate.enabled`
    (Whisper: about 100 MB more, never loaded otherwise)."""
    config = cast("Config", Settings(hello["config"]))
    grammar = grammar_from_parts(hello["grammar"], hello["names"], hello["fingerprint"])
    recognizer = create_recognizer(config, grammar)
    if not config.escalate.enabled:
        return recognizer, None
    try:
        # The closed set's Whisper, when that is the backend (`WhisperRecognizer.whisper`):
        # one model for both.
        shared = getattr(recognizer, "whisper", None)
        return recognizer, backends.load(OPEN_VOCABULARY)(config, shared)
    except PendantError as exc:
        recognizer.close()
        raise PendantError(f"escalate.enabled: {exc}") from None


def _read_exactly(stream: Any, n: int) -> bytes | None:
    data = stream.read(n)
    return data if data is not None and len(data) == n else None


def main() -> int:
    """The child's side of the wire (`pendant.ears.asr.worker`): loads the recogniser, then
    answers one utterance at a time until stdin ends. 2 when the recogniser does not load."""
    # Ctrl-C reaches the whole process group; the parent decides, and the child ends when
    # its stdin does.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    try:
        recognizer, words = _load(json.loads(stdin.readline()))
    except PendantError as exc:
        stdout.write(json.dumps({"error": str(exc)}).encode() + b"\n")
        stdout.flush()
        return 2
    except (ValueError, KeyError, TypeError) as exc:  # the parent sent what it should not
        stdout.write(json.dumps({"error": f"bad start-up message: {exc}"}).encode() + b"\n")
        stdout.flush()
        return 2
    # Building the search network leaves its temporaries' pages in the heap (7 MB here).
    heap.settle()
    hello = {"guessed": dict(recognizer.guessed), "open": words is not None}
    stdout.write(json.dumps(hello).encode() + b"\n")
    stdout.flush()
    while (header := _read_exactly(stdin, HEADER.size)) is not None:
        kind, length = HEADER.unpack(header)
        pcm = _read_exactly(stdin, length)
        if pcm is None:
            break
        audio = np.frombuffer(pcm, dtype=np.int16)
        answer: Any = None
        if kind == CLOSED:
            heard = recognizer.transcribe(audio)
            answer = None if heard is None else asdict(heard)
        elif kind == OPEN and words is not None:
            answer = words.transcribe(audio)
        stdout.write(json.dumps(answer).encode() + b"\n")
        stdout.flush()
        # After the answer, so it costs the ears no time: the search's arrays (5-11 MB for a
        # few seconds of speech here) go back rather than stay with the child until the next.
        heap.trim()
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    sys.exit(main())
