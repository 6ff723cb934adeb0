"""The power-cut harness itself (`tests.support.powercut`): each rule of its model, that it bites.

Each test writes through the mount, cuts the power, and looks at what came back. The last
ones show the model matters to a real program: SQLite keeps a committed row only when it
fsyncs (synchronous=FULL), not when it leaves that to the kernel (synchronous=OFF).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pendant.core.state import write_names_through
from tests.support.powercut import VolatileMount, unavailable


def fsync(path: Path) -> None:
    """fsync a file or a directory (a directory is opened read-only to be fsynced)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write(path: Path, data: bytes, *, sync: bool) -> None:
    with path.open("wb") as f:
        f.write(data)
        f.flush()
        if sync:
            os.fsync(f.fileno())


def test_reads_see_every_write_before_any_fsync(disk: VolatileMount) -> None:
    root = disk.mountpoint
    write(root / "a", b"cached", sync=False)
    (root / "d").mkdir()
    os.rename(root / "a", root / "d" / "b")
    assert (root / "d" / "b").read_bytes() == b"cached"
    assert sorted(os.listdir(root)) == ["d"]
    assert os.listdir(disk.disk) == []  # and none of it is on the disk yet


def test_fsynced_data_and_name_survive_a_cut(disk: VolatileMount) -> None:
    root = disk.mountpoint
    write(root / "kept", b"synced", sync=True)
    fsync(root)
    disk.cut()
    assert (root / "kept").read_bytes() == b"synced"


def test_writes_after_the_last_fsync_do_not_survive(disk: VolatileMount) -> None:
    root = disk.mountpoint
    write(root / "f", b"old", sync=True)
    fsync(root)
    with (root / "f").open("r+b") as f:
        f.write(b"new and longer")  # written, read back, never fsynced
    assert (root / "f").read_bytes() == b"new and longer"
    disk.cut()
    assert (root / "f").read_bytes() == b"old"


def test_an_fsynced_file_whose_directory_was_not_fsynced_is_gone(disk: VolatileMount) -> None:
    root = disk.mountpoint
    write(root / "new", b"synced", sync=True)
    disk.cut()
    assert not (root / "new").exists()


def test_a_name_made_durable_before_its_data_comes_back_empty(disk: VolatileMount) -> None:
    root = disk.mountpoint
    write(root / "f", b"never synced", sync=False)
    fsync(root)
    disk.cut()
    assert (root / "f").read_bytes() == b""


def test_a_rename_without_a_directory_fsync_does_not_survive(disk: VolatileMount) -> None:
    """What mosquitto does: the new file fsynced, renamed over the old, the directory not."""
    root = disk.mountpoint
    write(root / "db", b"old", sync=True)
    fsync(root)
    write(root / "db.new", b"new", sync=True)
    os.rename(root / "db.new", root / "db")
    assert (root / "db").read_bytes() == b"new"
    disk.cut()
    assert sorted(os.listdir(root)) == ["db"]
    assert (root / "db").read_bytes() == b"old"


def test_a_rename_with_the_directory_fsynced_survives(disk: VolatileMount) -> None:
    root = disk.mountpoint
    write(root / "db", b"old", sync=True)
    fsync(root)
    write(root / "db.new", b"new", sync=True)
    os.rename(root / "db.new", root / "db")
    fsync(root)
    disk.cut()
    assert sorted(os.listdir(root)) == ["db"]
    assert (root / "db").read_bytes() == b"new"


def test_an_unlink_without_a_directory_fsync_comes_back(disk: VolatileMount) -> None:
    root = disk.mountpoint
    write(root / "f", b"kept", sync=True)
    fsync(root)
    (root / "f").unlink()
    disk.cut()
    assert (root / "f").read_bytes() == b"kept"


def test_a_truncation_is_data_it_needs_the_file_fsynced(disk: VolatileMount) -> None:
    root = disk.mountpoint
    write(root / "f", b"0123456789", sync=True)
    fsync(root)
    os.truncate(root / "f", 3)
    disk.cut()
    assert (root / "f").read_bytes() == b"0123456789"
    os.truncate(root / "f", 3)
    fsync(root / "f")
    disk.cut()
    assert (root / "f").read_bytes() == b"012"


def test_a_new_subdirectory_needs_its_parent_fsynced(disk: VolatileMount) -> None:
    root = disk.mountpoint
    (root / "sub").mkdir()
    write(root / "sub" / "f", b"x", sync=True)
    fsync(root / "sub")
    disk.cut()
    assert not (root / "sub").exists()
    (root / "sub").mkdir()
    write(root / "sub" / "f", b"x", sync=True)
    fsync(root / "sub")
    fsync(root)
    disk.cut()
    assert (root / "sub" / "f").read_bytes() == b"x"


def test_a_clean_unmount_keeps_everything(disk: VolatileMount) -> None:
    root = disk.mountpoint
    write(root / "f", b"unsynced", sync=False)
    disk.close()
    assert (disk.disk / "f").read_bytes() == b"unsynced"


# A writer in a process of its own, as on the device: it commits, says so, and is killed
# with the connection still open (the power goes; nothing is closed).
WRITER = """
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("PRAGMA journal_mode=WAL")
db.execute("PRAGMA synchronous=FULL")
db.execute("CREATE TABLE t (v TEXT)")  # the file, its WAL and their names: durable
db.execute("INSERT INTO t VALUES ('before')")
db.execute(f"PRAGMA synchronous={sys.argv[2]}")
db.execute("INSERT INTO t VALUES ('committed')")
print(*[r[0] for r in db.execute("SELECT v FROM t")], flush=True)
sys.stdin.read()
"""


@pytest.mark.parametrize(("synchronous", "kept"), [("FULL", True), ("OFF", False)])
def test_sqlite_keeps_a_committed_row_only_when_it_fsyncs(
    disk: VolatileMount, synchronous: str, kept: bool
) -> None:
    """WAL with synchronous=FULL fsyncs the WAL at each commit, and the directory when it
    made the WAL: the row survives. synchronous=OFF never fsyncs: a commit the writer saw
    succeed is gone after the cut, which shows the model bites where it should."""
    path = disk.mountpoint / "t.sqlite"
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path), synchronous],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert writer.stdout is not None
        assert writer.stdout.readline().split() == ["before", "committed"]
    finally:
        writer.kill()
        writer.wait()
    disk.cut()
    with contextlib.closing(sqlite3.connect(path)) as db:
        rows = [r[0] for r in db.execute("SELECT v FROM t")]
    assert rows == (["before", "committed"] if kept else ["before"])


MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
MOSQUITTO_PUB = shutil.which("mosquitto_pub") or "/usr/bin/mosquitto_pub"


@pytest.mark.skipif(
    not (Path(MOSQUITTO).exists() and Path(MOSQUITTO_PUB).exists()),
    reason="mosquitto is not installed (apt install mosquitto mosquitto-clients)",
)
@pytest.mark.parametrize("marked", [False, True], ids=["plain", "chattr+D"])
def test_a_mosquitto_save_is_durable_only_in_a_directory_marked_dirsync(
    tmp_path: Path, marked: bool
) -> None:
    """Why provisioning marks mosquitto's state directory `chattr +D`: mosquitto saves by
    renaming a fsynced `mosquitto.db.new` over `mosquitto.db` and never fsyncs the directory,
    so in a plain one its saves are in the page cache only and a cut takes them all; in a
    marked one the rename is written through and the save survives."""
    reason = unavailable()
    if reason:
        pytest.skip(reason)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    if marked and not write_names_through(mnt):
        pytest.skip(f"{tmp_path}'s filesystem has no dirsync flag (chattr +D): ext4 has")
    sock = tmp_path / "mosquitto.sock"
    conf = tmp_path / "mosquitto.conf"
    with VolatileMount(mnt, tmp_path / "disk") as disk:
        conf.write_text(
            f"user {pwd.getpwuid(os.getuid()).pw_name}\n"
            f"listener 0 {sock}\nallow_anonymous true\n"
            f"persistence true\npersistence_location {disk.mountpoint}/\n"
            "autosave_on_changes true\nautosave_interval 1\n"
        )
        broker = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stderr=subprocess.DEVNULL)
        try:
            saved = disk.mountpoint / "mosquitto.db"
            for i in range(300):  # bounded: until a retained message was saved
                subprocess.run(
                    [MOSQUITTO_PUB, "--unix", str(sock), "-t", "t", "-r", "-q", "1", "-m", str(i)],
                    capture_output=True,
                    check=False,
                )
                if saved.exists():
                    break
                time.sleep(0.1)
            assert saved.exists(), "mosquitto never saved"
        finally:
            broker.kill()
            broker.wait()
        disk.cut()
        assert saved.exists() == marked


def test_a_directory_marked_dirsync_writes_its_names_through(tmp_path: Path) -> None:
    """ext4's `chattr +D`: a rename in the directory is durable when it returns, without a
    directory fsync; the file's data still needs its own fsync."""
    reason = unavailable()
    if reason:
        pytest.skip(reason)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    if not write_names_through(mnt):
        pytest.skip(f"{tmp_path}'s filesystem has no dirsync flag (chattr +D): ext4 has")
    with VolatileMount(mnt, tmp_path / "disk") as disk:
        root = disk.mountpoint
        write(root / "db.new", b"new", sync=True)
        os.rename(root / "db.new", root / "db")
        write(root / "unsynced", b"data", sync=False)
        (root / "sub").mkdir()
        write(root / "sub" / "f", b"x", sync=True)  # +D passes down to a new directory
        disk.cut()
        assert (root / "db").read_bytes() == b"new"
        assert (root / "unsynced").read_bytes() == b""  # its name, not its data
        assert (root / "sub" / "f").read_bytes() == b"x"
