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

from pendant.core import heap
from pendant.core.errors import PendantError
from pendant.ears.asr import Recognizer, create_recognizer
from pendant.ears.understand.closed_set import grammar_from_parts

if TYPE_CHECKING:
    from pendant.core.config import Config

LENGTH = struct.Struct("<I")
"""The length before each utterance's audio on the pipe."""


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


def _load(hello: dict[str, Any]) -> Recognizer:
    config = cast("Config", Settings(hello["config"]))
    grammar = grammar_from_parts(hello["grammar"], hello["names"], hello["fingerprint"])
    return create_recognizer(config, grammar)


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
        recognizer = _load(json.loads(stdin.readline()))
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
    stdout.write(json.dumps({"guessed": dict(recognizer.guessed)}).encode() + b"\n")
    stdout.flush()
    while (header := _read_exactly(stdin, LENGTH.size)) is not None:
        pcm = _read_exactly(stdin, LENGTH.unpack(header)[0])
        if pcm is None:
            break
        heard = recognizer.transcribe(np.frombuffer(pcm, dtype=np.int16))
        stdout.write(json.dumps(None if heard is None else asdict(heard)).encode() + b"\n")
        stdout.flush()
        # After the answer, so it costs the ears no time: the search's arrays (5-11 MB for a
        # few seconds of speech here) go back rather than stay with the child until the next.
        heap.trim()
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    sys.exit(main())
