"""The eyes' side of their reader: a child process (`pendant.eyes.worker`) that holds the models.

The eyes service holds no model. A capture starts a reader (while the camera is still taking
the frame, so the models load meanwhile), hands it the frame through a pipe and awaits the
scene on the one asyncio loop; the reader stays `eyes.linger_s` seconds for a next request
("read this" twice in a row) and is then let go, and the memory its models took with it.

A reader that gives no answer within `eyes.read_timeout_s` is killed; one that dies, hangs or
fails makes the capture a `ReaderError` (one line), and the next capture starts a new one.

The pipes are driven as the ears drive their recogniser's (`pendant.ears.asr.worker`):
non-blocking descriptors watched by the loop itself, no thread and no child watcher.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pendant.core.errors import ModelError, PendantError
from pendant.eyes.seen import Seen, seen
from pendant.eyes.sight import Sight
from pendant.eyes.worker import request_header

if TYPE_CHECKING:
    import numpy as np

    from pendant.core.config import Config
    from pendant.eyes.pipeline import Trigger

log = logging.getLogger(__name__)

COMMAND = (sys.executable, "-m", "pendant.eyes.worker")
# Let go, a reader finishes the frame it has (none: it is idle) and exits at once; this is
# only for one that does not.
STOP_S = 5.0
POLL_S = 0.05
# No answer of one look comes near this (a scene and an intent are a few KB): a longer line
# is a reader gone wrong, which the eyes must not buffer without end.
MAX_REPLY_BYTES = 1 << 20


class ReaderError(PendantError, RuntimeError):
    """The reader gave no scene for a frame: it failed, hung or stopped. One line."""


class Child:
    """One reader process and its two pipes, read and written without blocking the loop."""

    def __init__(self, command: tuple[str, ...]) -> None:
        self.proc = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=reader_environment()
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self._in = self.proc.stdin.fileno()
        self._out = self.proc.stdout.fileno()
        os.set_blocking(self._in, False)
        os.set_blocking(self._out, False)
        self._buffer = bytearray()
        self.loaded = False
        """It said it has its models (`{"ready": ...}`)."""
        # A reader dropped without stop() (a test, a failed start) is not left behind.
        weakref.finalize(self, _end, self.proc)

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def describe_exit(self) -> str:
        """How it ended, for a message: "killed by SIGKILL", "exit code 2"."""
        code = self.proc.poll()
        if code is None:
            return "still running"
        if code < 0:
            try:
                return f"killed by {signal.Signals(-code).name}"
            except ValueError:
                return f"killed by signal {-code}"
        return f"exit code {code}"

    async def write(self, data: bytes | memoryview) -> None:
        """All of `data` into its stdin; ConnectionError when it is gone."""
        view = memoryview(data).cast("B")
        while view:
            try:
                view = view[os.write(self._in, view) :]
            except BlockingIOError:
                await self._when(asyncio.get_running_loop().add_writer, self._in)
            except OSError as exc:  # a broken pipe: it is gone
                raise ConnectionError(f"the reader's stdin: {exc}") from None

    async def read_line(self) -> dict[str, Any]:
        """Its next line of JSON; EOFError when it is gone, ValueError when what it wrote is no
        line of JSON (or is longer than any answer: `MAX_REPLY_BYTES`)."""
        while (end := self._buffer.find(b"\n")) < 0:
            if len(self._buffer) > MAX_REPLY_BYTES:
                raise ValueError(f"an answer longer than {MAX_REPLY_BYTES} bytes")
            try:
                data = os.read(self._out, 1 << 16)
            except BlockingIOError:
                await self._when(asyncio.get_running_loop().add_reader, self._out)
                continue
            except OSError as exc:
                raise EOFError(f"the reader's output: {exc}") from None
            if not data:
                raise EOFError("the reader's output ended")
            self._buffer += data
        line = bytes(self._buffer[:end])
        del self._buffer[: end + 1]
        reply = json.loads(line)
        if not isinstance(reply, dict):
            raise ValueError("an answer that is not a JSON object")
        return reply

    async def _when(self, add: Any, fd: int) -> None:
        loop = asyncio.get_running_loop()
        ready = loop.create_future()
        add(fd, lambda: ready.done() or ready.set_result(None))
        try:
            await ready
        finally:
            # Removed before the descriptor can be closed and its number given to another.
            (loop.remove_writer if fd == self._in else loop.remove_reader)(fd)

    async def stop(self, kill: bool = False) -> None:
        """Its stdin closed (it exits once idle), or killed; reaped and its pipes closed."""
        if kill and self.alive:
            self.proc.kill()
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        for _ in range(int(STOP_S / POLL_S)):
            if not self.alive:
                break
            await asyncio.sleep(POLL_S)
        else:
            log.warning("eyes: the reader did not exit when let go: killed")
        _end(self.proc)

    def kill_now(self) -> None:
        """Killed and reaped at once (a request given up half-way: it cannot be resumed)."""
        _end(self.proc)


def _end(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    for pipe in (proc.stdin, proc.stdout):
        if pipe is not None:
            pipe.close()


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
        self.reading = False
        """A frame is with the reader (or about to be), its scene awaited."""
        self._child: Child | None = None
        self._linger: asyncio.TimerHandle | None = None
        self._stopping: set[asyncio.Task[None]] = set()

    @property
    def pid(self) -> int | None:
        """The running reader's process id, if one runs."""
        child = self._child
        return child.pid if child is not None and child.alive else None

    def warm_up(self, step: Callable[[str], None] = lambda _: None) -> None:
        """Runs a reader once to load and warm every model, then lets it go: a model that is
        missing or will not load fails here, before READY. Blocking (seconds on a Pi)."""
        request = self.config.model_dump_json().encode() + b'\n{"warm_up": true}\n'
        with subprocess.Popen(
            self.command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=reader_environment()
        ) as proc:
            assert proc.stdin is not None and proc.stdout is not None
            proc.stdin.write(request)
            proc.stdin.close()
            for raw in proc.stdout:
                try:
                    reply = json.loads(raw)
                    if "error" in reply:
                        raise _error(reply)
                    for key in ("ready", "detector"):
                        if reply.get(key):
                            self.detector = str(reply[key])
                    if "step" in reply:
                        step(str(reply["step"]))
                except (ValueError, KeyError, TypeError) as exc:
                    proc.kill()
                    raise ReaderError(
                        f"eyes: the reader's warm-up answer is garbled ({exc})"
                    ) from None
        if proc.returncode:
            raise ReaderError(f"eyes: the reader stopped (exit code {proc.returncode}) warming up")

    async def start(self) -> None:
        """A reader running, started now if none is: it loads its models while the caller takes
        the frame."""
        self._hold()
        if self.pid is not None:
            return
        if self._child is not None:
            # One that died between requests: reaped, and its pipes closed, before the next.
            self._child.kill_now()
        try:
            child = self._child = Child(self.command)
        except OSError as exc:  # no memory or no process left to fork
            raise ReaderError(f"eyes: cannot start the reader: {exc}") from None
        self.started += 1
        with contextlib.suppress(ConnectionError):  # gone already: the look will say how
            await child.write(self.config.model_dump_json().encode() + b"\n")
        # Let go if no frame comes (the camera failed, or was muted meanwhile): not before
        # one could have been read.
        self._let_go_later(self.timeout_s + self.linger_s)

    async def look(self, frame: np.ndarray, trigger: Trigger, session_id: str | None) -> Seen:
        """The scene in an RGB frame, read by the reader; ReaderError (one line) when it fails,
        hangs (killed after `eyes.read_timeout_s`) or stops."""
        await self.start()
        self._hold()
        child = self._child
        assert child is not None
        self.reading = True
        try:
            async with asyncio.timeout(self.timeout_s):
                reply = await self._exchange(child, frame, trigger, session_id)
        except TimeoutError:
            await self._stop(child, kill=True)
            raise ReaderError(
                f"eyes: no scene within {self.timeout_s:g} s (eyes.read_timeout_s): "
                "the reader was stopped"
            ) from None
        except (EOFError, ConnectionError):
            # It closed its end: exiting, or gone; waited for, to say how it ended.
            await self._stop(child)
            raise ReaderError(
                f"eyes: the reader stopped ({child.describe_exit()}) before the scene was read"
            ) from None
        except (ValueError, KeyError, TypeError) as exc:
            # Garbled (a bug, a version mix-up, a reader gone wrong): no scene, and no more of
            # this reader; the next capture starts another.
            await self._stop(child, kill=True)
            raise ReaderError(f"eyes: the reader's answer is not a scene ({_line(exc)})") from None
        except asyncio.CancelledError:
            # Half a request cannot be taken back: this reader is done.
            self._forget(child)
            child.kill_now()
            raise
        finally:
            self.reading = False
            self._let_go_later()
        if "error" in reply:
            raise _error(reply)
        try:
            return self._seen(reply["sight"], trigger, session_id)
        except (ValueError, KeyError, TypeError) as exc:
            await self._stop(child, kill=True)
            raise ReaderError(f"eyes: the reader's answer is not a scene ({_line(exc)})") from None

    async def _exchange(
        self, child: Child, frame: np.ndarray, trigger: Trigger, session_id: str | None
    ) -> dict[str, Any]:
        if not child.loaded:
            hello = await child.read_line()
            if "error" in hello:
                return hello
            named, child.loaded = str(hello["ready"]), True
            self.detector = named or self.detector
        height, width = frame.shape[:2]
        await child.write(request_header(trigger, session_id, height, width))
        # The frame itself, straight from its array into the pipe: never a file. numpy is
        # imported here, where a frame exists: the eyes hold no numpy until the first capture.
        import numpy as np

        await child.write(memoryview(np.ascontiguousarray(frame, dtype=np.uint8)))
        return await child.read_line()

    def _seen(self, sight: Any, trigger: Trigger, session_id: str | None) -> Seen:
        """The reader's answer, held to what one look makes (`Sight.from_dict`), made into this
        device's events for this request here: a reader names no device, request or session.
        ValueError otherwise: the eyes publish no more than a look could make."""
        return seen(self.config.device_id, trigger, Sight.from_dict(sight), session_id)

    def release(self) -> None:
        """No frame is coming (the camera failed, or was muted meanwhile) or none more: the
        reader is let go after `eyes.linger_s`."""
        if not self.reading:
            self._let_go_later()

    def _hold(self) -> None:
        """Keeps the reader: a request is on its way."""
        if self._linger is not None:
            self._linger.cancel()
            self._linger = None

    def _let_go_later(self, delay_s: float | None = None) -> None:
        """Lets the reader go after `delay_s` (`eyes.linger_s` by default) unless held."""
        self._hold()
        child = self._child
        if child is None or not child.alive:
            return

        def let_go() -> None:
            self._linger = None
            task = asyncio.create_task(self._stop(child))
            self._stopping.add(task)
            task.add_done_callback(self._stopping.discard)

        delay_s = self.linger_s if delay_s is None else delay_s
        self._linger = asyncio.get_running_loop().call_later(delay_s, let_go)

    def _forget(self, child: Child) -> None:
        if self._child is child:
            self._child = None

    async def _stop(self, child: Child, kill: bool = False) -> None:
        self._forget(child)
        await child.stop(kill)

    def abort(self) -> None:
        """Kills the running reader, if one runs: a look in progress ends at once with a
        ReaderError, and takes its frame with it (the camera muted meanwhile)."""
        child = self._child
        if child is not None and child.alive:
            child.proc.kill()

    async def close(self) -> None:
        """Stops the reader now, if one runs. Idempotent."""
        self._hold()
        if self._child is not None:
            await self._stop(self._child, kill=True)
        await asyncio.gather(*self._stopping, return_exceptions=True)


def _error(reply: dict[str, Any]) -> PendantError:
    text = f"eyes: {reply['error']}"
    return ModelError(text) if reply.get("kind") == "ModelError" else ReaderError(text)


def _line(exc: BaseException) -> str:
    """`exc` said in one short line (pydantic's errors take several)."""
    text = " ".join(str(exc).split())
    return text if len(text) <= 160 else text[:159] + "…"


# glibc's malloc for a process that loads and drops models one after another. By default a
# freed block of a few MB raises the threshold above which blocks are mmap()ed, so the next
# model's tensors land in the heap between live objects and stay there after they are freed
# (the reader kept ~60 MB it no longer used); a fixed threshold maps every large block and
# unmaps it when freed. 256 KiB measured as low a peak as 64 KiB, for less CPU (mapping fresh
# pages costs a look about a quarter more CPU than reusing the heap's: 25 MB less at the peak).
# Two arenas: onnxruntime's threads do not each get one.
MALLOC_ENV = {
    "MALLOC_MMAP_THRESHOLD_": "262144",
    "MALLOC_TRIM_THRESHOLD_": "131072",
    "MALLOC_ARENA_MAX": "2",
}


def reader_environment() -> dict[str, str]:
    """The service's environment less what only the service needs: the way to its bus login
    (systemd's credentials) and to systemd (the notify socket, the watchdog). The reader talks
    to nobody but the service, over its pipes. Its malloc is tuned to give back what a
    released model freed (`MALLOC_ENV`, unless the environment sets its own)."""
    unwanted = {"CREDENTIALS_DIRECTORY", "NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"}
    return MALLOC_ENV | {k: v for k, v in os.environ.items() if k not in unwanted}
