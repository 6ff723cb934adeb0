"""The recogniser in a child process of the ears, so that a decode never holds their loop.

A decode takes about 0.2 s here and seconds on a Zero 2 W. In the ears' loop it stalled
everything else the ears do: the VAD stopped cutting, a mute or a button press waited behind
it, and so did the watchdog. In a child the loop runs on, the decode has a core of its own (a
Zero 2 W has four), and the ears can start a guess at the end of speech without paying for it
when speech goes on. The child is the ears' own: same unit, same sandbox (no network); audio
reaches it through a pipe, in RAM, and nothing it hears is written anywhere.

The wire, parent to child: one JSON line (the config, the grammar with its names and
fingerprint), answered by one JSON line (`{"guessed": {...}, "open": bool}` once the
recogniser is loaded, `open` saying whether the open-vocabulary one is too, or
`{"error": "..."}`); then, per utterance, one byte saying what is asked (`child.CLOSED`: the
closed-set sentence; `child.OPEN`: the words, open vocabulary), a 4-byte little-endian length
and that many bytes of 16 kHz int16 audio, answered by one JSON line: the transcription's
fields, or the words, or null. One utterance is in the child at a time, so a write never
waits on a busy child.
"""

from __future__ import annotations

import asyncio
import json
import os
import select
import signal
import subprocess
import sys
import weakref
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from pendant.core.errors import PendantError
from pendant.ears.asr import Transcription, child
from pendant.ears.asr.child import CLOSED, HEADER, OPEN
from pendant.ears.understand.closed_set import Grammar, grammar_json

if TYPE_CHECKING:
    from pendant.core.config import Config


class RecognizerProcess:
    """`await transcribe(audio)` in a child process; the child loads the backend that
    `asr.backend` names, and the ears' own process never imports it."""

    def __init__(self, config: Config, grammar: Grammar) -> None:
        self.grammar = grammar
        self.guessed: Mapping[str, str] = {}
        self.open = False
        """Whether the child holds the open-vocabulary recogniser (`escalate.enabled`), known
        once it has started."""
        self._child = subprocess.Popen(
            [sys.executable, "-m", child.__name__], stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        assert self._child.stdin is not None and self._child.stdout is not None
        self._in = self._child.stdin.fileno()
        self._out = self._child.stdout.fileno()
        os.set_blocking(self._in, False)
        os.set_blocking(self._out, False)
        self._buffer = bytearray()
        self._turn = asyncio.Lock()
        self._exchanges: set[asyncio.Task[bytes | None]] = set()
        self._closed = False
        # A recogniser dropped without close() (a test, a failed start) takes its child along.
        weakref.finalize(self, _end, self._child)
        hello = {
            "config": config.model_dump(mode="json"),
            "grammar": grammar_json(grammar),
            "names": grammar.names,
            "fingerprint": grammar.fingerprint,
        }
        self._hello = json.dumps(hello).encode() + b"\n"

    @property
    def pid(self) -> int:
        """The child process's id."""
        return self._child.pid

    def wait_ready(self) -> None:
        """Block until the child has loaded the recogniser (start-up, before READY)."""
        view = memoryview(self._hello)
        while view:
            select.select([], [self._in], [])
            view = view[self._write_some(view) :]
        while (line := self._take_line()) is None:
            select.select([self._out], [], [])
            if not self._read_some():
                break
        self._started(line)

    async def ready(self) -> None:
        """As `wait_ready`, with the loop free meanwhile (a rebuild while the ears listen)."""
        await self._write(self._hello)
        self._started(await self._read_line())

    def _started(self, line: bytes | None) -> None:
        answer = json.loads(line) if line else {"error": self._exit_reason()}
        if "error" in answer:
            self.close()
            raise PendantError(f"the recogniser did not start: {answer['error']}")
        self.guessed = answer["guessed"]
        self.open = bool(answer.get("open"))

    async def transcribe(self, audio: np.ndarray) -> Transcription | None:
        """The closed-set sentence heard in `audio`. A caller cancelled meanwhile gives up
        the answer, not the exchange: the child is never left with half a request."""
        fields = await self._ask(CLOSED, audio)
        if fields is None:
            return None
        return Transcription(**fields | {"rivals": tuple(fields.get("rivals", ()))})

    async def transcribe_open(self, audio: np.ndarray) -> str | None:
        """The words heard in `audio`, open vocabulary (Whisper, `escalate.enabled`), at most
        300 characters; None for none, or when the child has no open-vocabulary recogniser."""
        if not self.open:
            return None
        words = await self._ask(OPEN, audio)
        return words if isinstance(words, str) else None

    async def _ask(self, kind: bytes, audio: np.ndarray) -> Any:
        """The child's answer about `audio`, decoded from its JSON line."""
        pcm = np.ascontiguousarray(audio, dtype=np.int16).tobytes()
        exchange = asyncio.ensure_future(self._exchange(HEADER.pack(kind, len(pcm)) + pcm))
        self._exchanges.add(exchange)
        exchange.add_done_callback(self._exchanges.discard)
        try:
            line = await asyncio.shield(exchange)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if self._closed and not (task is not None and task.cancelling()):
                raise PendantError("the recogniser was closed") from None
            raise
        if line is None:
            raise PendantError(f"the recogniser stopped: {self._exit_reason()}")
        return json.loads(line)

    async def _exchange(self, request: bytes) -> bytes | None:
        async with self._turn:
            await self._write(request)
            return await self._read_line()

    def close(self) -> None:
        """Kills the child and waits for it; a transcription in progress, or any after, raises
        PendantError."""
        self._closed = True
        for exchange in self._exchanges:
            exchange.cancel()
        _end(self._child)

    # The pipes, without blocking the loop.

    async def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view := view[self._write_some(view) :]:
            await self._when(asyncio.get_running_loop().add_writer, self._in)

    async def _read_line(self) -> bytes | None:
        """The child's next line; None when it is gone."""
        while (line := self._take_line()) is None:
            await self._when(asyncio.get_running_loop().add_reader, self._out)
            if not self._read_some():
                return None
        return line

    async def _when(self, add: Any, fd: int) -> None:
        loop = asyncio.get_running_loop()
        ready = loop.create_future()
        add(fd, lambda: ready.done() or ready.set_result(None))
        try:
            await ready
        finally:
            (loop.remove_writer if fd == self._in else loop.remove_reader)(fd)

    def _write_some(self, data: memoryview) -> int:
        if self._closed:
            raise PendantError("the recogniser was closed")
        try:
            return os.write(self._in, data)
        except BlockingIOError:
            return 0
        except BrokenPipeError:
            raise PendantError(f"the recogniser stopped: {self._exit_reason()}") from None

    def _read_some(self) -> bool:
        """False at the end of the pipe: the child is gone."""
        try:
            data = os.read(self._out, 1 << 16)
        except BlockingIOError:
            return True
        self._buffer += data
        return bool(data)

    def _take_line(self) -> bytes | None:
        end = self._buffer.find(b"\n")
        if end < 0:
            return None
        line = bytes(self._buffer[:end])
        del self._buffer[: end + 1]
        return line

    def _exit_reason(self) -> str:
        try:
            code = self._child.wait(timeout=1)
        except subprocess.TimeoutExpired:
            return "it does not answer"
        if code < 0:
            return f"killed by {signal.Signals(-code).name} (out of memory?)"
        return f"exit {code}"


def _end(child: subprocess.Popen[bytes]) -> None:
    if child.poll() is None:
        child.kill()
    child.wait()
    for pipe in (child.stdin, child.stdout):
        if pipe is not None:
            pipe.close()
