"""One shape for a component, and the one way a service process runs it.

A component (the ears, the eyes, the body, the link, the pairing window) is an object with a
`name`, a `heartbeat` its main loop beats (`pendant.core.systemd.Heartbeat`) and
`async run(ready)`: it works until cancelled (or, for the ears on a finite source, until its
audio ends), and calls `ready(status)` once, when it can do its work, with a few words for
`systemctl status`. A component may say how long it may take to get there (`ready_within_s`).

`supervise` runs one component as its systemd unit wants it: STATUS while it starts, READY=1
with its status when it says it is ready, the watchdog fed from its heartbeat, SIGINT/SIGTERM
reported (STOPPING=1) and turned into a cancellation, a clean return after. A component that
ends or fails before it is ready says so at once, and one that is not ready in time is an
error naming it, so systemd restarts it rather than wait for its start timeout.

`start` is the part of that `pendant run` shares: it starts a component and waits until it is
ready, so one process can bring its components up one after another (`pendant.app.one_process`).

`first_to_end` runs loops side by side until one ends, for components made of several.

No pydantic here (nor in anything it imports): the web server may use it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Protocol

from pendant.core import heap
from pendant.core import systemd as notify
from pendant.core.errors import PendantError

log = logging.getLogger(__name__)

Ready = Callable[[str], None]
"""What a component calls, once, when it can do its work: `ready("relaying")`."""


class Component(Protocol):
    """What `supervise` runs: a name, a heartbeat, and `run(ready)`.

    Optional: `ready_within_s` (a float), how long `run` may take to call `ready`; without it
    there is no bound (the component fails by itself when it cannot start).
    """

    name: str
    heartbeat: notify.Heartbeat

    async def run(self, ready: Ready) -> None:
        """Work until cancelled; call `ready(status)` once able to."""
        ...


def unobserved(status: str) -> None:
    """The `ready` of a component run where nobody waits for it (a test, a tool)."""


class Readiness:
    """A `Ready` that remembers: whether the component said it is ready, and its status.

    Only the first call counts. `announce`, if given, is called with the status at that
    moment, from inside the component's own call (so READY=1 goes out before the component
    does anything after it: the ears' first audio, say).
    """

    def __init__(self, announce: Callable[[str], None] | None = None) -> None:
        self.status: str | None = None
        """What the component said when it became ready; None until then."""
        self._announce = announce
        self._event = asyncio.Event()

    def __call__(self, status: str) -> None:
        if self.status is not None:
            return
        self.status = status
        self._event.set()
        if self._announce is not None:
            self._announce(status)

    def is_set(self) -> bool:
        """Whether the component said it is ready."""
        return self.status is not None

    async def wait(self) -> str:
        """Until the component says it is ready; its status."""
        await self._event.wait()
        assert self.status is not None
        return self.status


def ready_within_s(component: Component) -> float | None:
    """How long `component` may take to become ready; None: no bound."""
    value = getattr(component, "ready_within_s", None)
    return float(value) if value is not None else None


async def start(component: Component, readiness: Readiness | None = None) -> asyncio.Task[None]:
    """Run `component` in a task of its own until it says it is ready; the task.

    If `run` ends or raises first, that surfaces here at once: its exception, or a PendantError
    when it ended quietly. If it is not ready within its `ready_within_s`, it is cancelled and
    a PendantError names it. Cancelled while waiting, the component is cancelled too.
    """
    readiness = readiness or Readiness()
    task = asyncio.create_task(component.run(readiness), name=component.name)
    waiting = asyncio.create_task(readiness.wait(), name=f"{component.name} ready")
    limit_s = ready_within_s(component)
    try:
        await asyncio.wait({task, waiting}, timeout=limit_s, return_when="FIRST_COMPLETED")
    except asyncio.CancelledError:
        await _cancel(task)
        raise
    finally:
        waiting.cancel()
    if readiness.is_set():
        return task  # possibly done already: a finite source that ended at once
    if task.done():
        task.result()  # its own error, as it raised it
        raise PendantError(f"{component.name}: stopped before it was ready")
    await _cancel(task)
    raise PendantError(f"{component.name}: not ready after {limit_s:g} s")


async def first_to_end(*loops: Awaitable[None]) -> asyncio.Task[None]:
    """Run `loops` (coroutines or tasks) side by side until the first ends; the others are
    cancelled and waited for, and the one that ended is returned, or its error raised.

    Cancelled from outside, every loop is cancelled too. Whether a loop that returned is an
    error is the caller's to say (most of ours never end by themselves).
    """
    tasks = [_task(loop) for loop in loops]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    first = next(t for t in tasks if t in done)  # the caller's order when two end together
    first.result()
    return first


def _task(loop: Awaitable[None]) -> asyncio.Task[None]:
    if isinstance(loop, asyncio.Task):
        return loop
    assert isinstance(loop, Coroutine), loop
    coro: Coroutine[Any, Any, None] = loop
    return asyncio.create_task(coro, name=coro.__qualname__)


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def supervise(component: Component) -> None:
    """Run `component` as a systemd service: until it ends, fails, or SIGINT/SIGTERM.

    STATUS says it is starting; READY=1 (with the component's status) goes out when it says it
    is ready; the watchdog is pinged while its heartbeat is recent; a signal is reported
    (STOPPING=1) and stops it cleanly, and supervise then returns. Its errors propagate.
    """
    notify.status(f"starting {component.name}")
    loop = asyncio.get_running_loop()
    main = asyncio.create_task(_started_and_run(component), name=f"supervise {component.name}")
    stopped = False

    def stop() -> None:
        nonlocal stopped
        if not stopped:
            stopped = True
            notify.stopping()
            main.cancel()

    # One turn of the loop first: `main` starts the component's task, which then takes its
    # first step before any cancellation from a signal reaches it. A run() cancelled before it
    # began would never reach the `finally` that releases what the component holds from its
    # construction (the body's pins). Until then a SIGTERM has its default effect, as it has
    # during the construction.
    await asyncio.sleep(0)
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop)
    watchdog = asyncio.create_task(notify.watchdog(component.heartbeat), name="watchdog")
    try:
        await main
    except asyncio.CancelledError:
        if not stopped:
            raise  # cancelled from outside: not ours to swallow
        log.info("%s stopped", component.name)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        await _cancel(watchdog)
        if not main.done():  # supervise itself cancelled: the component goes with it
            await _cancel(main)


async def _started_and_run(component: Component) -> None:
    task = await start(component, Readiness(notify.ready))
    heap.settle()
    try:
        await task
    finally:
        await _cancel(task)
