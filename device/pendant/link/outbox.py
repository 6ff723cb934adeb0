"""The link's durable outbox: admitted events wait here until the outside broker has them.

Every event the link takes off the bus is written here *before* the bus is acknowledged, and
leaves only after the outside broker's PUBACK, so neither a broker outage nor a killed link
loses an intent. Events go out in insertion order (`seq`).

- **Storage**: SQLite in WAL mode with `synchronous=FULL`. WAL with NORMAL already survives a
  killed process, but may lose the last commits when power fails; a battery pendant loses
  power as a matter of course (flat battery, pulled cable), and that is exactly when intents
  are waiting for a broker. The fsync per commit costs a few ms on an SD card, and the rate is
  a handful of events per utterance, so neither latency nor card wear notices.
- **Expiry**: speech events (intent, transcript, not_recognized, error) older than
  `link.intent_expiry_s` are dropped and counted, never sent late: a light switched an hour
  late is worse than never. Age is measured against the event's own `timestamp_ms`, the wall
  clock, because it is the only clock that means the same after the link or the device
  restarts (monotonic clocks start again at boot). Caveat: a Pi has no RTC, so a clock
  stepped forward by NTP after boot can make an intent queued before the step look older
  than it is; it is then dropped, which errs on the side of not acting late.
- **Errors and says are not durable** (`VOLATILE`): an `error` event (a malformed command,
  reported to whoever sent it) or a `say` (words from outside for the phones to speak) waits
  in RAM only, at most `MAX_VOLATILE` of them (the oldest dropped and counted as `full`), and
  goes out after every durable event waiting, so a flood of them neither writes (and fsyncs)
  the SD card twice each nor gets ahead of an intent. A restart loses the ones not yet sent;
  the link rate-limits errors too (`pendant.link.service`).
- **Status is superseded**, not expired: only the newest status waits, since it is retained
  and only the current state matters.
- **One bad event never stops the link**: `put` never raises. An event that cannot be
  stored (a number SQLite cannot hold, which the schema gate already refuses) is dropped,
  logged and counted as `unstorable`, and the events beside it are kept.
- **Bounded**: past `max_rows` waiting events the oldest is dropped and counted.
- **A failing disk never stops the link**: a write that fails (full disk, I/O error, unopenable
  file) logs one line, keeps the event in RAM, and is retried later; RAM always holds the
  newest events, so order is kept. A file that opens only later (a data partition mounted
  after the link started) has its older rows sent first, and RAM's events numbered after them.
- **A file that cannot be read** (an I/O error, not damage SQLite recognises) is not taken
  for an empty one: `peek` returns None and `readable` turns False until a read succeeds.
  Sending from RAM past unread rows would reorder; the link's watchdog (`pendant.link.service`)
  counts no progress then, so systemd restarts the link, which opens the file afresh.
- **A damaged file is set aside** (`quick_check` at open, SQLite's corrupt errors while
  reading), kept for a post-mortem and counted as `corrupt`; a fresh file takes over.

"Delivered" is a cursor, not only a delete: rows up to `_cursor` are finished in this process
even when deleting them failed, and a restart that finds them again sends them again (a QoS 1
duplicate, same `id`, which consumers drop).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pendant.core import wire
from pendant.core.events import Event, EventError, parse_event

log = logging.getLogger(__name__)

MAX_ROWS = 10_000
RETRY_S = 5.0
SUPERSEDED = frozenset({"status", "battery", "sentences"})
VOLATILE = frozenset({"error", "say", "answer"})
"""Types kept in RAM only, never written to the file: see the module's docstring."""
MAX_VOLATILE = 64

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    type TEXT NOT NULL,
    timestamp_ms INTEGER NOT NULL,
    payload BLOB NOT NULL
)
"""


def _corrupt(exc: Exception) -> bool:
    """SQLite's word for a damaged file, as opposed to a full, locked or missing one."""
    name = getattr(exc, "sqlite_errorname", "")
    text = str(exc)
    return (
        name in ("SQLITE_CORRUPT", "SQLITE_NOTADB")
        or "malformed" in text
        or ("not a database" in text)
    )


@dataclass(frozen=True)
class Entry:
    """A waiting event and its place in the queue (`seq`: events go out in its order)."""

    seq: int
    event: Event


class Outbox:
    """Sync API, meant for one asyncio loop: every call is a few ms of SQLite at most."""

    def __init__(
        self,
        path: str | Path | None,
        *,
        expiry_s: float = 300.0,
        max_rows: int = MAX_ROWS,
        clock: Callable[[], int] = wire.now_ms,
    ) -> None:
        self.path = Path(path) if path else None
        self.expiry_ms = int(expiry_s * 1000)
        self.max_rows = max_rows
        self.clock = clock
        self.dropped: Counter[str] = Counter()
        """Reason → events never sent: expired, superseded, full, unreadable, unstorable;
        `corrupt` counts damaged files set aside (their events unknown)."""
        self._db: sqlite3.Connection | None = None
        self._ram: list[Entry] = []  # newest events a failing disk could not take, in order
        self._volatile: list[Entry] = []  # VOLATILE events, in order, never on disk
        self._cursor = 0  # every seq <= this is finished (sent or dropped) in this process
        self._next_seq = 1
        self._failing = False
        self._retry_at = 0.0
        self._closed = False
        self.readable = True
        """False when the last look at the file failed: `peek`'s None then means "cannot
        tell", not "nothing waits" (the link's watchdog counts only the latter as progress)."""
        try:
            self._open()
        except (sqlite3.Error, OSError) as exc:
            self._fail("open", exc)

    # -- storage -------------------------------------------------------------------------

    def _open(self) -> None:
        if self.path is None or self._closed:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            db = self._connect()
        except sqlite3.DatabaseError as exc:
            if not _corrupt(exc) or not self.path.exists():
                raise
            self._move_aside(exc)
            db = self._connect()
        self._db = db
        top = db.execute("SELECT max(seq) FROM outbox").fetchone()[0] or 0
        if self._next_seq > 1:
            # Events arrived while the file could not be opened (a data partition mounted
            # late, a full disk at start). The rows found now are older than any of them and
            # none was finished by this process: RAM's events take numbers after the rows,
            # and the cursor starts before them, so nothing is overwritten or skipped.
            self._ram = [Entry(top + 1 + i, e.event) for i, e in enumerate(self._ram)]
            self._cursor = 0
        self._next_seq = top + 1 + len(self._ram)

    def _connect(self) -> sqlite3.Connection:
        assert self.path is not None
        db = sqlite3.connect(self.path, isolation_level=None)  # autocommit; BEGIN when needed
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.execute(_SCHEMA)
            # Damage past the header (a torn page, a bad block) shows here, not at connect.
            check = db.execute("PRAGMA quick_check").fetchone()[0]
            if check != "ok":
                raise sqlite3.DatabaseError(f"database disk image is malformed: {check}")
        except sqlite3.Error:
            db.close()
            raise
        return db

    def _move_aside(self, exc: Exception) -> None:
        """A damaged file would stop the outbox for good: keep it for a post-mortem, start
        afresh. What it held is lost; nothing arriving after is."""
        assert self.path is not None
        if self._db is not None:
            with contextlib.suppress(sqlite3.Error):
                self._db.close()
            self._db = None
        aside = self.path.with_name(f"{self.path.name}.corrupt-{time.time_ns()}")
        os.replace(self.path, aside)
        for suffix in ("-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.replace(f"{self.path}{suffix}", f"{aside}{suffix}")
        self.dropped["corrupt"] += 1
        log.error("outbox: %s was damaged (%s), moved to %s", self.path, exc, aside)

    def _fail(self, what: str, exc: Exception) -> None:
        """One line when the disk starts failing, not one per event."""
        if not self._failing:
            log.error("outbox: cannot %s %s (%s); keeping events in RAM", what, self.path, exc)
        self._failing = True
        self._retry_at = time.monotonic() + RETRY_S

    def _flush(self) -> bool:
        """Move RAM entries to disk, oldest first. True when RAM is empty afterwards."""
        if not self._ram:
            return True
        if self._db is None:
            if time.monotonic() < self._retry_at:
                return False
            try:
                self._open()
            except (sqlite3.Error, OSError) as exc:
                self._fail("open", exc)
            if self._db is None:
                return False
        bad: list[Entry] = []
        try:
            with self._db:
                self._db.execute("BEGIN IMMEDIATE")
                for e in self._ram:
                    try:
                        row = (e.seq, e.event.id, e.event.type, e.event.timestamp_ms)
                        self._db.execute(
                            "INSERT OR IGNORE INTO outbox VALUES (?, ?, ?, ?, ?)",
                            (*row, e.event.to_json()),
                        )
                    except sqlite3.Error:
                        raise  # the disk's, not the event's: all of them wait in RAM
                    except Exception as exc:
                        # This event's own (OverflowError: a number SQLite cannot hold).
                        bad.append(e)
                        self._unstorable(e.event, exc)
        except sqlite3.Error as exc:
            self._fail("write", exc)
            if bad:
                self._ram = [e for e in self._ram if e not in bad]
            return False
        self._ram.clear()
        if self._failing:
            log.warning("outbox: %s writable again", self.path)
            self._failing = False
        return True

    # -- the queue -----------------------------------------------------------------------

    def expired(self, event: Event) -> bool:
        """Whether `event` is too old to send: older than `expiry_s` by its own `timestamp_ms` (the
        wall clock). A superseded type (status, battery, sentences) never is."""
        if event.type in SUPERSEDED:
            return False
        return self.clock() - event.timestamp_ms > self.expiry_ms

    def remaining_s(self, event: Event) -> float | None:
        """Seconds `event` may still be delivered; None if it never expires (superseded)."""
        if event.type in SUPERSEDED:
            return None
        return (self.expiry_ms - max(self.clock() - event.timestamp_ms, 0)) / 1000

    def _unstorable(self, event: Event, exc: BaseException) -> None:
        self.dropped["unstorable"] += 1
        log.error("outbox: dropped a %s event it cannot store (%s)", event.type, type(exc).__name__)

    def put(self, event: Event) -> None:
        """Durably queue `event` (or keep it in RAM if the disk fails). Never raises: an
        event that cannot be queued is dropped and counted (`unstorable`)."""
        try:
            self._put(event)
        except Exception as exc:
            self._ram = [e for e in self._ram if e.event is not event]
            self._volatile = [e for e in self._volatile if e.event is not event]
            self._unstorable(event, exc)

    def _put(self, event: Event) -> None:
        if self.expired(event):
            self.dropped["expired"] += 1
            return
        if event.type in VOLATILE:
            self._put_volatile(event)
            return
        if self._known(event.id):
            return  # the bus redelivered it (QoS 1): one copy is enough
        if event.type in SUPERSEDED:
            self._supersede(event.type)
        entry = Entry(self._next_seq, event)
        self._next_seq += 1
        self._ram.append(entry)
        self._flush()
        self._bound()

    def _put_volatile(self, event: Event) -> None:
        if any(e.event.id == event.id for e in self._volatile):
            return
        # Numbered in its own sequence: it never moves the file's cursor.
        seq = self._volatile[-1].seq + 1 if self._volatile else 1
        self._volatile.append(Entry(seq, event))
        while len(self._volatile) > MAX_VOLATILE:
            del self._volatile[0]
            self.dropped["full"] += 1

    def _known(self, event_id: str) -> bool:
        if any(e.event.id == event_id for e in self._ram):
            return True
        if self._db is None:
            return False
        try:
            row = self._db.execute("SELECT 1 FROM outbox WHERE id = ?", (event_id,)).fetchone()
        except sqlite3.Error:
            return False
        return row is not None

    def _supersede(self, event_type: str) -> None:
        old = [e for e in self._ram if e.event.type == event_type]
        self._ram = [e for e in self._ram if e.event.type != event_type]
        n = len(old)
        if self._db is not None:
            try:
                n += self._db.execute(
                    "DELETE FROM outbox WHERE type = ? AND seq > ?", (event_type, self._cursor)
                ).rowcount
            except sqlite3.Error as exc:
                self._fail("delete from", exc)  # the old status goes out first: harmless
        self.dropped["superseded"] += n

    def _bound(self) -> None:
        excess = len(self) - len(self._volatile) - self.max_rows  # errors never push one out
        while excess > 0:
            head = self._head()
            if head is None:
                return
            self._finish(head.seq)
            self.dropped["full"] += 1
            excess -= 1

    def _head(self) -> Entry | None:
        """The oldest waiting entry, whatever its state. Disk rows are older than RAM's."""
        self.readable = True
        while self._db is not None:
            try:
                row = self._db.execute(
                    "SELECT seq, payload FROM outbox WHERE seq > ? ORDER BY seq LIMIT 1",
                    (self._cursor,),
                ).fetchone()
            except sqlite3.DatabaseError as exc:
                if _corrupt(exc):
                    self._recover(exc)
                    continue
                self._fail("read", exc)
                self.readable = False
                return None  # older events may be on disk: wait rather than reorder
            if row is None:
                break
            try:
                return Entry(row[0], parse_event(row[1]))
            except (EventError, TypeError):
                # Written by another version or damaged (TypeError: not text at all): it
                # cannot be sent as it is.
                self._finish(row[0])
                self.dropped["unreadable"] += 1
        return self._ram[0] if self._ram else None

    def _recover(self, exc: Exception) -> None:
        """The file broke under us: set it aside and go on with a fresh one."""
        try:
            self._move_aside(exc)
            self._cursor = 0
            self._open()
        except (sqlite3.Error, OSError) as again:
            self._db = None
            self._fail("reopen", again)

    def peek(self) -> Entry | None:
        """The next event to send; expired ones on the way are dropped and counted."""
        if self._ram and time.monotonic() >= self._retry_at:
            self._flush()
        while (head := self._head()) is not None and self.expired(head.event):
            self._finish(head.seq)
            self.dropped["expired"] += 1
        if head is not None:
            return head
        while self._volatile and self.expired(self._volatile[0].event):
            del self._volatile[0]
            self.dropped["expired"] += 1
        return self._volatile[0] if self._volatile else None

    def done(self, entry: Entry) -> None:
        """The outside broker has `entry` (PUBACK): it never goes out again from here."""
        if entry.event.type in VOLATILE:
            self._volatile = [e for e in self._volatile if e.event.id != entry.event.id]
            return
        head = self._head()
        if head is not None and head.event.id == entry.event.id:
            self._finish(head.seq)
            return
        # Sent out of turn: it was taken from RAM before a late-opened file put older rows
        # ahead of it (see _open). Only it is finished; the older rows still go out.
        self._ram = [e for e in self._ram if e.event.id != entry.event.id]
        if self._db is not None:
            try:
                self._db.execute("DELETE FROM outbox WHERE id = ?", (entry.event.id,))
            except sqlite3.Error as exc:
                self._fail("delete from", exc)  # a restart may send it again, same id

    def _finish(self, seq: int) -> None:
        self._cursor = max(self._cursor, seq)
        self._ram = [e for e in self._ram if e.seq > self._cursor]
        if self._db is None:
            return
        try:
            self._db.execute("DELETE FROM outbox WHERE seq <= ?", (self._cursor,))
        except sqlite3.Error as exc:
            # The cursor already skips it; a restart may send it again, same id.
            self._fail("delete from", exc)

    def __len__(self) -> int:
        """Events waiting (expired ones included until `peek` reaches them)."""
        waiting = len(self._ram) + len(self._volatile)
        if self._db is not None:
            with contextlib.suppress(sqlite3.Error):
                waiting += self._db.execute(
                    "SELECT count(*) FROM outbox WHERE seq > ?", (self._cursor,)
                ).fetchone()[0]
        return waiting

    @property
    def in_ram(self) -> int:
        """Events only in RAM because the disk failed."""
        return len(self._ram)

    def close(self) -> None:
        """Closes the file; what waits in RAM only (the events a failing disk could not take, errors
        and says) is lost."""
        self._closed = True
        if self._db is not None:
            self._db.close()
            self._db = None
