"""Telling systemd how a service is doing: READY, STATUS, STOPPING and the watchdog.

systemd-python's `daemon.notify` is used where it is installed (the device); elsewhere the
same datagram goes straight to $NOTIFY_SOCKET, so a test can play systemd's part with a unix
socket of its own. Without $NOTIFY_SOCKET every call does nothing.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time

log = logging.getLogger(__name__)


def _send(message: str) -> None:
    path = os.environ.get("NOTIFY_SOCKET")
    if not path:
        return
    try:
        from systemd import daemon  # type: ignore[import-not-found]

        daemon.notify(message)
        return
    except ImportError:
        pass
    if path.startswith("@"):  # abstract namespace
        path = "\0" + path[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
        try:
            # Never waits: a receiver that stopped reading (a test's socket holds 10
            # datagrams) would otherwise block the pings, and the event loop sending them.
            s.sendto(message.encode(), socket.MSG_DONTWAIT, path)
        except BlockingIOError:
            # A lost ping is made up by the next; a lost READY or STOPPING is worth a line.
            level = logging.DEBUG if message == "WATCHDOG=1" else logging.WARNING
            log.log(level, "cannot notify systemd at %s: its queue is full", path)
        except OSError as exc:
            log.warning("cannot notify systemd at %s: %s", path, exc.strerror)


def ready(status: str = "") -> None:
    """READY=1: the service has started (with `status` as its status line, if given)."""
    _send("READY=1" + (f"\nSTATUS={status}" if status else ""))


def status(text: str) -> None:
    """The status line `systemctl status` shows for the service."""
    _send(f"STATUS={text}")


def starting(step: str, allow_s: float = 120.0) -> None:
    """A start-up step begins: systemd shows it, and waits up to `allow_s` more for READY.

    TimeoutStartSec= bounds the whole start; a slow board (or an emulated one) that is still
    making progress gets more time step by step, while one stuck in a step is still restarted.
    """
    _send(f"STATUS={step}\nEXTEND_TIMEOUT_USEC={int(allow_s * 1_000_000)}")


def stopping() -> None:
    """STOPPING=1: the service has begun to stop."""
    _send("STOPPING=1")


def watchdog_interval_s() -> float | None:
    """The interval systemd expects pings in (WatchdogSec=), if it is watching this process."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return int(usec) / 1_000_000
    except ValueError:
        return None


class Heartbeat:
    """The main loop beats; the watchdog pings systemd only while the beat is recent.

    A blocked event loop stops the pings by itself (the pinging task never runs); a loop that
    runs but no longer does its work (no audio arriving, say) stops them through a stale beat.
    """

    def __init__(self, what: str = "main loop") -> None:
        self.what = what
        """What beats it, as the log names it when the beat goes stale."""
        self.last = time.monotonic()

    def beat(self) -> None:
        """The work was done just now."""
        self.last = time.monotonic()

    def age_s(self) -> float:
        """Seconds since the last beat (since it was made, before any)."""
        return time.monotonic() - self.last

    def stalest(self) -> Heartbeat:
        """The beat the watchdog names when the pings stop."""
        return self


class Heartbeats(Heartbeat):
    """Several beats watched as one, as old as the oldest: for a process with more than one
    piece of work to keep going (the link's senders), any one stalled stops the pings."""

    def __init__(self, *beats: Heartbeat) -> None:
        super().__init__(" and ".join(b.what for b in beats))
        self.beats = beats

    def beat(self) -> None:
        """Beats every one of them."""
        for b in self.beats:
            b.beat()

    def age_s(self) -> float:
        """The age of the oldest beat, in seconds."""
        return self.stalest().age_s()

    def stalest(self) -> Heartbeat:
        """The oldest beat, looked for inside nested groups too (`pendant run`'s, which
        holds the link's)."""
        return max(self.beats, key=lambda b: b.age_s()).stalest()


async def watchdog(heartbeat: Heartbeat, interval_s: float | None = None) -> None:
    """Ping at half the interval while `heartbeat` is younger than the interval."""
    interval_s = interval_s or watchdog_interval_s()
    if not interval_s:
        return
    while True:
        if heartbeat.age_s() < interval_s:
            _send("WATCHDOG=1")
        else:
            stale = heartbeat.stalest()
            log.error("%s stalled for %.1f s: no watchdog ping", stale.what, stale.age_s())
        await asyncio.sleep(interval_s / 2)


async def beat_while_alive(heartbeat: Heartbeat, period_s: float) -> None:
    """For services whose work is waiting: a beat from the loop itself proves it turns."""
    while True:
        heartbeat.beat()
        await asyncio.sleep(period_s)
