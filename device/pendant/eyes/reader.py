"""The eyes' side of their reader: a child process (`pendant.eyes.worker`) that holds the models.

The eyes service holds no model. A capture starts a reader (while the camera is still taking
the frame, so the models load meanwhile), hands it the frame through a pipe and awaits the
scene on the one asyncio loop; the reader stays `eyes.linger_s` seconds for a next request
("read this" twice in a row) and is then let go, and the memory its models took with it.

A reader that gives no answer within `eyes.read_timeout_s` is killed; one that dies, hangs or
fails makes the capture a `ReaderError` (one line), and the next capture starts a new one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import subprocess
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from pendant.core.errors import ModelError, PendantError
from pendant.core.events import Intent, Scene
from pendant.eyes.worker import request_header

if TYPE_CHECKING:
    from pendant.core.config import Config
    from pendant.eyes.pipeline import Seen, Trigger

log = logging.getLogger(__name__)

COMMAND = (sys.executable, "-m", "pendant.eyes.worker")
# A reply is a scene and an intent, each well under the bus's 8 KiB; this leaves room.
REPLY_LIMIT = 1 << 20
# Let go, a reader finishes the frame it has (none: it is idle) and exits at once; this is
# only for one that does not.
STOP_S = 5.0


class ReaderError(PendantError, RuntimeError):
    """The reader gave no scene for a frame: it failed, hung or stopped. One line."""


class Reader:
    """The models in a child process, on request: `await Reader(config).look(frame, trigger)`
    -> Seen. `close()` when done."""

    def __init__(self, config: Config, command: tuple[str, ...] = COMMAND) -> None:
        self.config = config
        self.linger_s = config.eyes.linger_s
        self.timeout_s = config.eyes.read_timeout_s
        self.command = command
        self.detector: str | None = None
        """The detector backend's class, once a reader has said (`warm_up`, a first look)."""
        self.started = 0
        """How many readers were started: a test's proof that one is kept, or not."""
        self._proc: asyncio.subprocess.Process | None = None
        self._loaded = False
        self._linger: asyncio.TimerHandle | None = None
        self._stopping: set[asyncio.Task[None]] = set()

    @property
    def pid(self) -> int | None:
        """The running reader's process id, if one runs."""
        proc = self._proc
        return proc.pid if proc is not None and proc.returncode is None else None

    def warm_up(self, step: Callable[[str], None] = lambda _: None) -> None:
        """Runs a reader once to load and warm every model, then lets it go: a model that is
        missing or will not load fails here, before READY. Blocking (seconds on a Pi)."""
        request = self.config.model_dump_json().encode() + b'\n{"warm_up": true}\n'
        with subprocess.Popen(self.command, stdin=subprocess.PIPE, stdout=subprocess.PIPE) as proc:
            assert proc.stdin is not None and proc.stdout is not None
            proc.stdin.write(request)
            proc.stdin.close()
            for raw in proc.stdout:
                reply = json.loads(raw)
                if "error" in reply:
                    raise _error(reply)
                if "ready" in reply:
                    self.detector = reply["ready"]
                if "step" in reply:
                    step(reply["step"])
        if proc.returncode:
            raise ReaderError(f"eyes: the reader stopped ({_exit(proc.returncode)}) warming up")

    async def start(self) -> None:
        """A reader running, started now if none is: it loads its models while the caller takes
        the frame."""
        self._hold()
        if self.pid is not None:
            return
        self._proc = await asyncio.create_subprocess_exec(
            *self.command,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            limit=REPLY_LIMIT,
        )
        self.started += 1
        self._loaded = False
        assert self._proc.stdin is not None
        self._proc.stdin.write(self.config.model_dump_json().encode() + b"\n")
        self._let_go_later()

    async def look(self, frame: np.ndarray, trigger: Trigger, session_id: str | None) -> Seen:
        """The scene in an RGB frame, read by the reader; ReaderError (one line) when it fails,
        hangs (killed after `eyes.read_timeout_s`) or stops."""
        await self.start()
        self._hold()
        proc = self._proc
        assert proc is not None
        try:
            async with asyncio.timeout(self.timeout_s):
                reply = await self._exchange(proc, frame, trigger, session_id)
        except TimeoutError:
            await self._stop(proc, kill=True)
            raise ReaderError(
                f"eyes: no scene within {self.timeout_s:g} s (eyes.read_timeout_s): "
                "the reader was stopped"
            ) from None
        except (EOFError, ConnectionError, asyncio.IncompleteReadError):
            await self._stop(proc, kill=True)
            raise ReaderError(
                f"eyes: the reader stopped ({_exit(proc.returncode)}) before the scene was read"
            ) from None
        finally:
            self._let_go_later()
        if "error" in reply:
            raise _error(reply)
        return _seen(reply["events"])

    async def _exchange(
        self,
        proc: asyncio.subprocess.Process,
        frame: np.ndarray,
        trigger: Trigger,
        session_id: str | None,
    ) -> dict[str, Any]:
        assert proc.stdin is not None
        if not self._loaded:
            hello = await _line(proc)
            if "error" in hello:
                return hello
            self.detector, self._loaded = hello["ready"], True
        height, width = frame.shape[:2]
        proc.stdin.write(request_header(trigger, session_id, height, width))
        # The frame itself, straight from its array into the pipe: never a file.
        proc.stdin.write(memoryview(np.ascontiguousarray(frame, dtype=np.uint8)).cast("B"))
        await proc.stdin.drain()
        return await _line(proc)

    def _hold(self) -> None:
        """Keeps the reader: a request is on its way."""
        if self._linger is not None:
            self._linger.cancel()
            self._linger = None

    def _let_go_later(self) -> None:
        self._hold()
        proc = self._proc
        if proc is None or proc.returncode is not None:
            return

        def let_go() -> None:
            self._linger = None
            if self._proc is proc:
                self._proc = None
            task = asyncio.create_task(self._stop(proc))
            self._stopping.add(task)
            task.add_done_callback(self._stopping.discard)

        self._linger = asyncio.get_running_loop().call_later(self.linger_s, let_go)

    async def _stop(self, proc: asyncio.subprocess.Process, kill: bool = False) -> None:
        """Ends a reader: its stdin closed (it exits when idle), or killed; reaped either way."""
        if self._proc is proc:
            self._proc = None
        if proc.returncode is None:
            if kill:
                proc.kill()
            elif proc.stdin is not None:
                proc.stdin.close()
            try:
                async with asyncio.timeout(STOP_S):
                    await proc.wait()
            except TimeoutError:
                log.warning("eyes: the reader did not exit when let go: killed")
                proc.kill()
                await proc.wait()
        # Its pipes to their end, so that asyncio lets go of the process too.
        if proc.stdin is not None:
            proc.stdin.close()
            with contextlib.suppress(ConnectionError):
                await proc.stdin.wait_closed()
        if proc.stdout is not None:
            with contextlib.suppress(TimeoutError, ConnectionError):
                async with asyncio.timeout(STOP_S):
                    await proc.stdout.read()

    async def close(self) -> None:
        """Stops the reader now, if one runs. Idempotent."""
        self._hold()
        if self._proc is not None:
            await self._stop(self._proc, kill=True)
        await asyncio.gather(*self._stopping, return_exceptions=True)


async def _line(proc: asyncio.subprocess.Process) -> dict[str, Any]:
    assert proc.stdout is not None
    raw = await proc.stdout.readline()
    if not raw.endswith(b"\n"):
        raise EOFError("the reader's output ended")
    reply: dict[str, Any] = json.loads(raw)
    return reply


def _seen(events: list[dict[str, Any]]) -> Seen:
    from pendant.eyes.pipeline import Seen

    scene, *intents = events
    return Seen(Scene.model_validate(scene), [Intent.model_validate(i) for i in intents])


def _error(reply: dict[str, Any]) -> PendantError:
    text = f"eyes: {reply['error']}"
    return ModelError(text) if reply.get("kind") == "ModelError" else ReaderError(text)


def _exit(code: int | None) -> str:
    if code is None:
        return "still running"
    if code < 0:
        return f"killed by {signal.Signals(-code).name}"
    return f"exit code {code}"
