"""The durable outbox on its own: order, durability, expiry, supersession, bounds, bad disks."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import pytest

from pendant.core.events import Error, Event, Intent, Status
from pendant.link.outbox import MAX_VOLATILE, Outbox

NOW_MS = 1_700_000_000_000


class Clock:
    """A wall clock the test moves by hand."""

    def __init__(self) -> None:
        self.ms = NOW_MS

    def __call__(self) -> int:
        return self.ms


def intent(n: int, at_ms: int = NOW_MS) -> Intent:
    return Intent(
        device_id="pendant-test", name="HassTurnOn", text=f"turn on {n}", confidence=0.9,
        timestamp_ms=at_ms,
    )  # fmt: skip


def status(state: str = "ready") -> Status:
    return Status(device_id="pendant-test", state=state, timestamp_ms=NOW_MS)  # type: ignore[arg-type]


def drain(box: Outbox) -> list[Event]:
    """Everything the sender would publish, acknowledging each as the broker would."""
    out = []
    for _ in range(100_000):
        entry = box.peek()
        if entry is None:
            return out
        out.append(entry.event)
        box.done(entry)
    raise AssertionError("outbox never emptied")


def test_sqlite_in_wal_mode_with_full_sync(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite")
    assert box._db is not None
    assert box._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert box._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_in_order_and_survives_a_restart(tmp_path: Path) -> None:
    clock = Clock()
    box = Outbox(tmp_path / "o.sqlite", clock=clock)
    sent = [intent(i) for i in range(5)]
    for e in sent:
        box.put(e)
    first = box.peek()
    assert first is not None and first.event == sent[0]
    box.done(first)
    # Not closed: as after kill -9, only what SQLite committed counts.
    again = Outbox(tmp_path / "o.sqlite", clock=clock)
    assert drain(again) == sent[1:]
    assert len(again) == 0
    assert drain(Outbox(tmp_path / "o.sqlite", clock=clock)) == []


def test_sent_but_undeleted_goes_out_again_with_the_same_id(tmp_path: Path) -> None:
    """PUBACK came, the process died before the delete: a QoS 1 duplicate, same id."""
    box = Outbox(tmp_path / "o.sqlite", clock=Clock())
    e = intent(1)
    box.put(e)
    assert box.peek() is not None
    again = Outbox(tmp_path / "o.sqlite", clock=Clock())
    assert [x.id for x in drain(again)] == [e.id]


def test_a_redelivered_event_is_queued_once(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite", clock=Clock())
    e = intent(1)
    box.put(e)
    box.put(e)
    assert drain(box) == [e]


def test_expired_intents_are_dropped_and_counted_not_sent(tmp_path: Path) -> None:
    clock = Clock()
    box = Outbox(tmp_path / "o.sqlite", expiry_s=300, clock=clock)
    box.put(intent(0, at_ms=NOW_MS - 301_000))  # already stale when it arrives
    early = [intent(i, at_ms=NOW_MS) for i in range(1, 3)]
    late = intent(3, at_ms=NOW_MS + 200_000)
    for e in [*early, late]:
        box.put(e)
    assert box.dropped["expired"] == 1
    clock.ms = NOW_MS + 300_001  # the broker was away for five minutes
    assert drain(box) == [late]
    assert box.dropped["expired"] == 3


def test_only_the_newest_status_waits_and_it_never_expires(tmp_path: Path) -> None:
    clock = Clock()
    box = Outbox(tmp_path / "o.sqlite", expiry_s=1, clock=clock)
    a = intent(1)
    box.put(status("starting"))
    box.put(a)
    box.put(status("listening"))
    newest = status("muted")
    box.put(newest)
    assert box.dropped["superseded"] == 2
    clock.ms += 3_600_000
    assert drain(box) == [newest]
    assert box.dropped["expired"] == 1


def test_bounded_drops_the_oldest_and_counts(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite", max_rows=5, clock=Clock())
    sent = [intent(i) for i in range(8)]
    for e in sent:
        box.put(e)
    assert len(box) == 5
    assert box.dropped["full"] == 3
    assert drain(box) == sent[3:]


def test_a_full_disk_keeps_events_in_ram_logs_once_and_recovers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("pendant.link.outbox.RETRY_S", 0.0)
    path = tmp_path / "o.sqlite"
    box = Outbox(path, clock=Clock())
    assert box._db is not None
    before = [intent(i) for i in range(3)]
    for e in before:
        box.put(e)
    # SQLite's own page limit gives the real error: "database or disk is full".
    pages = box._db.execute("PRAGMA page_count").fetchone()[0]
    box._db.execute(f"PRAGMA max_page_count = {pages}")
    during = [intent(i, at_ms=NOW_MS) for i in range(3, 60)]
    with caplog.at_level(logging.ERROR, logger="pendant.link.outbox"):
        for e in during:
            box.put(e)  # must not raise
    full = [r for r in caplog.records if "full" in r.getMessage()]
    assert len(full) == 1, [r.getMessage() for r in caplog.records]
    assert box.in_ram > 0
    assert len(box) == len(before) + len(during)
    # The disk has room again: the next look flushes RAM to disk, oldest first.
    box._db.execute("PRAGMA max_page_count = 1073741823")
    head = box.peek()
    assert head is not None and head.event == before[0]
    assert box.in_ram == 0
    assert drain(Outbox(path, clock=Clock())) == before + during


def test_an_unopenable_outbox_works_from_ram(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    box = Outbox(blocker / "o.sqlite", clock=Clock())
    sent = [intent(i) for i in range(3)]
    for e in sent:
        box.put(e)
    assert drain(box) == sent


def test_a_corrupt_file_is_moved_aside(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite"
    path.write_bytes(b"this is not sqlite" * 100)
    box = Outbox(path, clock=Clock())
    e = intent(1)
    box.put(e)
    assert drain(box) == [e]
    assert len(list(tmp_path.glob("o.sqlite.corrupt-*"))) == 1


class LateDisk:
    """Old rows on a data folder that is not there when the link starts (mounted late): a
    file stands where the folder should be, as an unmounted mount point would fail."""

    def __init__(self, tmp_path: Path) -> None:
        self.data, self.away = tmp_path / "data", tmp_path / "data.away"
        self.path = self.data / "o.sqlite"
        self.old = [intent(i) for i in range(3)]
        box = Outbox(self.path, clock=Clock())
        for e in self.old:
            box.put(e)
        box.close()
        self.data.rename(self.away)
        self.data.write_text("")
        self.box = Outbox(self.path, clock=Clock())
        assert self.box._db is None

    def mount(self) -> None:
        self.data.unlink()
        self.away.rename(self.data)


@pytest.fixture
def late(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> LateDisk:
    monkeypatch.setattr("pendant.link.outbox.RETRY_S", 0.0)
    return LateDisk(tmp_path)


def test_opened_late_old_rows_go_first_and_nothing_is_overwritten(late: LateDisk) -> None:
    new = [intent(i) for i in range(3, 6)]
    late.box.put(new[0])
    head = late.box.peek()
    assert head is not None and head.event == new[0]
    late.box.done(head)  # sent from RAM while the file was away
    for e in new[1:]:
        late.box.put(e)
    late.mount()
    assert drain(late.box) == late.old + new[1:]
    assert drain(Outbox(late.path, clock=Clock())) == []  # all of it finished, none left behind


def test_an_event_sent_from_ram_as_the_file_opens_does_not_finish_older_rows(
    late: LateDisk,
) -> None:
    first = intent(3)
    late.box.put(first)
    in_flight = late.box.peek()  # the sender takes it and awaits the broker...
    assert in_flight is not None and in_flight.event == first
    late.mount()
    later = intent(4)
    late.box.put(later)  # ...while a new event opens the file, older rows appear ahead of it
    late.box.done(in_flight)
    assert drain(late.box) == [*late.old, later]


def test_damage_past_the_header_is_found_at_open_and_set_aside(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite"
    box = Outbox(path, clock=Clock())
    for i in range(400):
        box.put(Intent(device_id="pendant-test", name="HassTurnOn", text="x" * 200 + str(i),
                       confidence=0.9, timestamp_ms=NOW_MS))  # fmt: skip
    box.close()
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        page = db.execute("PRAGMA page_size").fetchone()[0]
        pages = db.execute("PRAGMA page_count").fetchone()[0]
    raw = bytearray(path.read_bytes())
    for n in range(2, pages - 1, 3):  # scribble over B-tree pages, keep the header page
        raw[n * page : n * page + 64] = b"\xff" * 64
    path.write_bytes(bytes(raw))
    box = Outbox(path, clock=Clock())
    assert box.dropped["corrupt"] == 1
    assert len(list(tmp_path.glob("o.sqlite.corrupt-*"))) >= 1
    e = intent(1)
    box.put(e)
    assert drain(box) == [e]


@pytest.mark.parametrize("payload", [b"{", 5], ids=["not json", "not text"])
def test_an_unreadable_row_is_skipped_and_counted(tmp_path: Path, payload: object) -> None:
    path = tmp_path / "o.sqlite"
    box = Outbox(path, clock=Clock())
    a, b = intent(1), intent(2)
    box.put(a)
    box.put(b)
    with sqlite3.connect(path) as db:
        db.execute("UPDATE outbox SET payload = ? WHERE id = ?", (payload, a.id))
    assert drain(box) == [b]
    assert box.dropped["unreadable"] == 1


def error(n: int, at_ms: int = NOW_MS) -> Error:
    return Error(device_id="pendant-test", command="mute", reason=f"bad {n}", timestamp_ms=at_ms)


def _on_disk(folder: Path) -> dict[str, bytes]:
    # The database and its WAL: what a commit writes and fsyncs (-shm is a shared-memory map).
    return {p.name: p.read_bytes() for p in folder.iterdir() if not p.name.endswith("-shm")}


def test_errors_never_touch_the_disk(tmp_path: Path) -> None:
    """A flood of malformed commands must not wear the SD card: an error event is neither
    written (and fsynced) when queued nor deleted when sent, and it goes out like any other."""
    box = Outbox(tmp_path / "o.sqlite", clock=Clock())
    first = intent(0)
    box.put(first)
    assert drain(box) == [first]  # the file and its WAL exist, and hold nothing waiting
    before = _on_disk(tmp_path)
    errors = [error(i) for i in range(5)]
    for e in errors:
        box.put(e)
    assert len(box) == 5
    assert _on_disk(tmp_path) == before
    assert [e.id for e in drain(box)] == [e.id for e in errors]
    assert _on_disk(tmp_path) == before
    assert len(box) == 0


def test_errors_wait_behind_intents_are_bounded_and_expire(tmp_path: Path) -> None:
    clock = Clock()
    box = Outbox(tmp_path / "o.sqlite", clock=clock, max_rows=3)
    flood = [error(i) for i in range(MAX_VOLATILE + 10)]
    box.put(flood[0])
    spoken = [intent(i) for i in range(3)]
    for i in spoken:
        box.put(i)
    for e in flood[1:]:
        box.put(e)
    # Errors never push an intent out, and never get ahead of one.
    assert box.dropped == {"full": 10}
    out = drain(box)
    assert out[:3] == spoken
    assert [e.id for e in out[3:]] == [e.id for e in flood[10:]]

    box.put(error(99))
    clock.ms += int(box.expiry_ms) + 1
    assert box.peek() is None
    assert box.dropped["expired"] == 1


def test_a_file_that_stops_reading_is_not_taken_for_an_empty_one(tmp_path: Path) -> None:
    """The link's watchdog counts "nothing waits" as progress and "cannot tell" as none."""
    path = tmp_path / "o.sqlite"
    box = Outbox(path, clock=Clock())
    box.put(intent(1))
    assert box.peek() is not None and box.readable
    drain(box)
    assert box.peek() is None and box.readable  # empty, and known to be
    with sqlite3.connect(path) as other:  # every read fails from now on (not damage)
        other.execute("DROP TABLE outbox")
    box.put(intent(2))
    for _ in range(3):
        assert box.peek() is None
        assert not box.readable


def unstorable(n: int) -> Intent:
    """An event SQLite cannot hold (made without the schema, which now refuses it): 10**30 is
    past SQLite's 64-bit INTEGER (review H2)."""
    valid = intent(n)
    return Intent.model_construct(**{**dict(valid), "timestamp_ms": 10**30})


def test_an_event_that_cannot_be_stored_is_dropped_and_the_rest_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Review H2: `put` says it never raises, but an OverflowError came out of `_flush` (it
    caught only sqlite3.Error), crashing the link. Now the event is dropped and counted, and
    the others go out, also when it waited in RAM among them for a failing disk."""
    monkeypatch.setattr("pendant.link.outbox.RETRY_S", 0.0)
    path = tmp_path / "o.sqlite"
    box = Outbox(path, clock=Clock())
    assert box._db is not None
    box.put(intent(0))
    box.put(unstorable(1))  # must not raise
    box.put(intent(2))
    assert box.dropped == {"unstorable": 1}
    # A full disk: the next ones wait in RAM, a bad one among them.
    pages = box._db.execute("PRAGMA page_count").fetchone()[0]
    box._db.execute(f"PRAGMA max_page_count = {pages}")
    waiting = [intent(3), unstorable(4), intent(5), unstorable(6), intent(7)]
    for e in waiting:
        box.put(e)
    box._db.execute("PRAGMA max_page_count = 1073741823")
    expected = [0, 2, 3, 5, 7]
    assert [e.text for e in drain(box)] == [f"turn on {n}" for n in expected]
    assert box.dropped["unstorable"] == 3
    box.put(intent(8))
    assert [e.text for e in drain(Outbox(path, clock=Clock()))] == ["turn on 8"]
