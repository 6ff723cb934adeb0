"""`pendant.core.supervise`: one shape for a component, and how a service process runs it.

In process, with the test playing systemd's notify socket: READY once with the component's
status, a run that fails (or ends) before it is ready surfaces at once, a start that takes too
long is one line naming the component, SIGTERM stops it cleanly, the watchdog follows its
heartbeat. The real services under it: tests/test_service_processes.py.
"""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import socket
import tempfile
import weakref
from collections.abc import Iterator
from pathlib import Path

import pytest

from pendant.core import systemd as notify
from pendant.core.errors import PendantError
from pendant.core.supervise import Component, Readiness, Ready, first_to_end, start, supervise

TIMEOUT_S = 10.0


class Notes:
    """systemd's side of $NOTIFY_SOCKET: every datagram, as key=value fields."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.setblocking(False)

    def read(self) -> list[dict[str, str]]:
        """What has arrived so far, in order."""
        notes = []
        while True:
            try:
                data = self.sock.recv(4096)
            except BlockingIOError:
                return notes
            lines = data.decode().splitlines()
            notes.append(dict(line.split("=", 1) for line in lines if "=" in line))


@pytest.fixture
def notes(monkeypatch: pytest.MonkeyPatch) -> Iterator[Notes]:
    # A short directory of its own: unix socket paths are limited to 108 bytes.
    with tempfile.TemporaryDirectory(prefix="ps-") as d:
        path = Path(d) / "notify"
        received = Notes(path)
        monkeypatch.setenv("NOTIFY_SOCKET", str(path))
        monkeypatch.delenv("WATCHDOG_USEC", raising=False)
        try:
            yield received
        finally:
            received.sock.close()


class Toy:
    """A component whose run does what the test says, and records how it ended."""

    def __init__(self, name: str = "toy", ready_within_s: float | None = None) -> None:
        self.name = name
        self.heartbeat = notify.Heartbeat()
        if ready_within_s is not None:
            self.ready_within_s = ready_within_s
        self.running = asyncio.Event()
        self.cleaned_up = False
        self.fail_before_ready: BaseException | None = None
        self.end_before_ready = False
        self.never_ready = False
        self.end_after_ready = False

    async def run(self, ready: Ready) -> None:
        try:
            await asyncio.sleep(0.01)  # starting: connecting, subscribing
            if self.fail_before_ready is not None:
                raise self.fail_before_ready
            if self.end_before_ready:
                return
            if self.never_ready:
                await asyncio.sleep(3600)
            ready("toying (with a status)")
            ready("again, which no one is told")
            self.running.set()
            while not self.end_after_ready:
                self.heartbeat.beat()
                await asyncio.sleep(0.02)
        finally:
            self.cleaned_up = True


def test_a_toy_has_the_shape() -> None:
    toy: Component = Toy()  # the Protocol, as a type checker reads it
    assert toy.name == "toy"


def test_ready_is_reported_once_with_the_status_and_the_end_is_clean(notes: Notes) -> None:
    toy = Toy()

    async def scenario() -> None:
        task = asyncio.create_task(supervise(toy))
        await asyncio.wait_for(toy.running.wait(), TIMEOUT_S)
        toy.end_after_ready = True
        await asyncio.wait_for(task, TIMEOUT_S)

    asyncio.run(scenario())
    seen = notes.read()
    assert seen[0] == {"STATUS": "starting toy"}
    assert [n for n in seen if "READY" in n] == [{"READY": "1", "STATUS": "toying (with a status)"}]
    assert toy.cleaned_up


class _Cycle:
    """Garbage only the cycle collector frees: it refers to itself."""

    def __init__(self) -> None:
        self.me = self


def test_start_ups_garbage_is_collected_once_ready(notes: Notes) -> None:
    """What building a component left behind (a parsed config, a grammar's temporaries) is
    freed when it is ready, not at the collector's leisure: a service's idle memory is then
    what it holds, not its start-up's high-water mark."""
    toy = Toy()
    garbage = _Cycle()
    freed = weakref.ref(garbage)
    del garbage
    freed_at_ready: list[bool] = []

    async def scenario() -> None:
        task = asyncio.create_task(supervise(toy))
        await asyncio.wait_for(toy.running.wait(), TIMEOUT_S)
        await asyncio.sleep(0.05)  # supervise's turn after READY
        freed_at_ready.append(freed() is None)
        toy.end_after_ready = True
        await asyncio.wait_for(task, TIMEOUT_S)

    gc.disable()  # only supervise may collect it
    try:
        assert freed() is not None
        asyncio.run(scenario())
    finally:
        gc.enable()
    assert freed_at_ready == [True]
    assert [n for n in notes.read() if "READY" in n]


def test_a_run_that_raises_before_ready_propagates_at_once(notes: Notes) -> None:
    toy = Toy(ready_within_s=60.0)
    toy.fail_before_ready = ValueError("bad password file")

    async def scenario() -> None:
        await asyncio.wait_for(supervise(toy), TIMEOUT_S)  # not the 60 s

    with pytest.raises(ValueError, match="bad password file"):
        asyncio.run(scenario())
    assert not [n for n in notes.read() if "READY" in n]


def test_a_run_that_ends_before_ready_is_an_error_naming_it(notes: Notes) -> None:
    toy = Toy("ears")
    toy.end_before_ready = True
    with pytest.raises(PendantError, match=r"^ears: stopped before it was ready$"):
        asyncio.run(asyncio.wait_for(supervise(toy), TIMEOUT_S))


def test_not_ready_in_time_is_one_line_naming_the_component(notes: Notes) -> None:
    toy = Toy("link", ready_within_s=0.2)
    toy.never_ready = True
    with pytest.raises(PendantError) as caught:
        asyncio.run(asyncio.wait_for(supervise(toy), TIMEOUT_S))
    assert str(caught.value) == "link: not ready after 0.2 s"
    assert toy.cleaned_up  # cancelled, not left running
    assert not [n for n in notes.read() if "READY" in n]


def test_sigterm_is_reported_and_stops_the_component_cleanly(notes: Notes) -> None:
    toy = Toy()

    async def scenario() -> None:
        task = asyncio.create_task(supervise(toy))
        await asyncio.wait_for(toy.running.wait(), TIMEOUT_S)
        os.kill(os.getpid(), signal.SIGTERM)  # as systemd stops the unit
        await asyncio.wait_for(task, TIMEOUT_S)  # returns: a clean stop, not an error

    asyncio.run(scenario())
    assert toy.cleaned_up
    seen = notes.read()
    assert {"STOPPING": "1"} in seen
    assert seen.index({"STOPPING": "1"}) > next(i for i, n in enumerate(seen) if "READY" in n)


def test_the_watchdog_is_fed_from_the_heartbeat(
    notes: Notes, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "200000")  # pings every 0.1 s while the beat is fresh
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    toy = Toy()

    async def scenario() -> None:
        task = asyncio.create_task(supervise(toy))
        await asyncio.wait_for(toy.running.wait(), TIMEOUT_S)
        await asyncio.sleep(0.5)
        toy.end_after_ready = True
        await asyncio.wait_for(task, TIMEOUT_S)

    asyncio.run(scenario())
    assert sum(1 for n in notes.read() if n == {"WATCHDOG": "1"}) >= 3


def test_start_waits_for_ready_and_hands_over_the_running_task() -> None:
    toy = Toy()

    async def scenario() -> str | None:
        readiness = Readiness()
        task = await asyncio.wait_for(start(toy, readiness), TIMEOUT_S)
        assert not task.done() and toy.running.is_set()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return readiness.status

    assert asyncio.run(scenario()) == "toying (with a status)"
    assert toy.cleaned_up


async def forever(name: str, cancelled: list[str]) -> None:
    """A loop that never ends by itself, noting its name in `cancelled` when it is."""
    try:
        await asyncio.Event().wait()
    finally:
        cancelled.append(name)


def test_first_to_end_returns_the_loop_that_ended_and_cancels_the_rest() -> None:
    cancelled: list[str] = []

    async def soon() -> None:
        await asyncio.sleep(0.01)

    async def scenario() -> str:
        ended = await first_to_end(forever("a", cancelled), soon(), forever("b", cancelled))
        return ended.get_name()

    assert asyncio.run(scenario()).endswith("soon")
    assert sorted(cancelled) == ["a", "b"]  # waited for, not left running


def test_first_to_end_raises_the_error_of_the_loop_that_failed() -> None:
    async def fails() -> None:
        raise PendantError("bus lost")

    async def scenario() -> None:
        await first_to_end(asyncio.Event().wait(), fails())  # type: ignore[arg-type]

    with pytest.raises(PendantError, match="bus lost"):
        asyncio.run(scenario())


def test_first_to_end_cancelled_from_outside_cancels_every_loop() -> None:
    cancelled: list[str] = []

    async def scenario() -> None:
        outer = asyncio.create_task(first_to_end(forever("a", cancelled), forever("b", cancelled)))
        await asyncio.sleep(0.01)
        outer.cancel()
        with pytest.raises(asyncio.CancelledError):
            await outer

    asyncio.run(scenario())
    assert sorted(cancelled) == ["a", "b"]
