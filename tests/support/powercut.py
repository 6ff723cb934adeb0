"""A disk with a volatile page cache, for power-cut tests: `VolatileMount`.

Killing a process (`kill -9`) loses what it held in memory; a power cut also loses what the
*kernel* held: every write not yet fsynced, and every change to a directory not yet fsynced.
A test that only kills processes cannot see a program that forgot an fsync. This harness
mounts a FUSE filesystem (`tests.support.powercut_fs`, in a daemon process of its own, so the test's
process never serves its own requests) over a directory, backed by a scratch directory that
stands for the disk.

The model is the strict one (as LazyFS, the Jepsen/INESC tool, and ALICE's "no reordering
guarantees" file system assume), not what ext4 happens to do:

- **Reads see every write at once**: the page cache, shared by every process.
- **A file's data and attributes** (size, truncation, mode, owner, times) reach the disk only
  when that file is fsynced (fsync or fdatasync, the same here), all of it as of that moment.
  close() is no durability point.
- **Names** (create, mkdir, unlink, rmdir, rename) reach the disk only when their directory
  is fsynced (open the directory, fsync it), all of that directory's names as of that moment.
  A rename between two directories needs both. fsync of a file does not make its name
  durable, even for a new file (ext4 would, as a side effect of its journal; POSIX does not
  promise it), and a rename over an existing file is not durable after the file's data was
  fsynced (ext4's data=ordered "replace via rename" heuristic, not modelled).
- **A name made durable before its file's data was** comes back as an empty file (or an
  empty directory): the inode exists, its data never reached the disk.
- **A clean unmount** (`close`) makes everything durable, as `sync` then `umount` would; a
  power cut never goes through it.
- **`cut()`**: the caller first SIGKILLs every process using the mount; cut() then kills the
  daemon (its memory is the page cache), detaches the dead mount, and mounts the disk again:
  processes started after it see exactly what was made durable.
- **Each mount is a disk of its own**, and each directory is apart: an fsync makes durable
  only what it names. ext4 is kinder: any fsync commits its one journal, renames and creates
  anywhere on the partition included, and so does its commit timer (5 s by default, 30 s on
  the image's data partition). A loss found here may be one ext4 makes only when nothing
  else fsyncs in time; a program correct here is correct there.
- **A directory marked `chattr +D`** (ext4's dirsync flag, which provisioning sets on
  mosquitto's state directory) writes its names through: a create, unlink or rename in it
  is durable when it returns, as on ext4; its new subdirectories inherit the flag. The flag
  is taken from the mountpoint when it is mounted. File data still needs an fsync.
- Not modelled: torn writes within a page, reordering of data inside one fsync, hard links
  (refused), symlinks, sockets and devices, rename(2)'s flags, xattrs, file locks beyond
  the kernel's own (FUSE leaves POSIX locks to the kernel, so SQLite's locking works).

Why strict: it is what POSIX and the programs' own documentation promise, and both programs
here can be right under it. SQLite is (WAL, synchronous=FULL): it fsyncs the WAL on every
commit and the directory when it creates a WAL or journal, which also makes the database's
own name durable. mosquitto 2.0.11 is not: it writes `mosquitto.db.new`, fsyncs it, renames it
over `mosquitto.db` and never fsyncs the directory, so under this model a save after the last
directory fsync is not durable at all (`tests/system/test_powercut.py` shows it, and
`tests/system/test_home_queue.py` records what that costs).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from pendant.core.state import write_names_through, writes_names_through

DAEMON = Path(__file__).with_name("powercut_fs.py")
WAIT_S = 30.0
_MNT_DETACH = 2


def unavailable() -> str | None:
    """Why this machine cannot mount the harness, in one line; None when it can."""
    if not Path("/dev/fuse").exists():
        return "no /dev/fuse (FUSE is not available here)"
    if os.geteuid() != 0 and shutil.which("fusermount3") is None:
        return "not root and no fusermount3 (apt install fuse3) to mount FUSE"
    probe = subprocess.run(
        [sys.executable, "-c", "import mfusepy"], capture_output=True, text=True, check=False
    )
    if probe.returncode != 0:
        lines = probe.stderr.strip().splitlines() or ["?"]
        return f"mfusepy or libfuse3 missing (make setup): {lines[-1]}"
    return None


def _mounted(mountpoint: Path) -> bool:
    """From the kernel's table, not a stat: a dead mount would hang or fail a stat."""
    want = str(mountpoint).encode().replace(b" ", b"\\040")
    with open("/proc/self/mountinfo", "rb") as f:
        return any(line.split()[4] == want for line in f)


def _detach(mountpoint: Path) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.umount2(str(mountpoint).encode(), _MNT_DETACH) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"umount {mountpoint}: {os.strerror(err)}")


class VolatileMount:
    """`mountpoint` served from `disk` with the semantics of this module's docstring.

    Whatever `mountpoint` held when it was mounted is moved to `disk` first: it was durable.
    """

    def __init__(self, mountpoint: Path, disk: Path, log: Path | None = None) -> None:
        self.mountpoint, self.disk = mountpoint, disk
        self.log = log or disk.with_name(disk.name + ".log")
        self.daemon: subprocess.Popen[bytes] | None = None
        self.cuts = 0

    def mount(self) -> VolatileMount:
        if not self.disk.exists():
            self.disk.mkdir(parents=True)
            st = self.mountpoint.stat()
            for child in self.mountpoint.iterdir():
                shutil.move(child, self.disk / child.name)
            os.chown(self.disk, st.st_uid, st.st_gid)
            os.chmod(self.disk, st.st_mode & 0o7777)
            if writes_names_through(self.mountpoint):  # chattr +D: the disk keeps it
                write_names_through(self.disk)
        self._start()
        return self

    def _start(self) -> None:
        with self.log.open("ab") as err:
            self.daemon = subprocess.Popen(
                [sys.executable, str(DAEMON), str(self.disk), str(self.mountpoint)],
                stdin=subprocess.DEVNULL,
                stdout=err,
                stderr=err,
            )
        deadline = time.monotonic() + WAIT_S
        while not _mounted(self.mountpoint):
            if self.daemon.poll() is not None:
                raise RuntimeError(f"the FUSE daemon exited: {self.log.read_text()[-2000:]}")
            assert time.monotonic() < deadline, "the FUSE daemon did not mount"
            time.sleep(0.02)

    def cut(self) -> None:
        """The power goes: the page cache is lost. Kill the mount's users first."""
        assert self.daemon is not None, "not mounted"
        self.daemon.send_signal(signal.SIGKILL)
        self.daemon.wait(timeout=WAIT_S)
        self.daemon = None
        _detach(self.mountpoint)  # the dead connection: its files now fail with ENOTCONN
        self.cuts += 1
        self._start()

    def close(self) -> None:
        """A clean unmount: everything becomes durable (the daemon's FUSE destroy)."""
        if self.daemon is None:
            return
        if _mounted(self.mountpoint):
            try:
                subprocess.run(["umount", str(self.mountpoint)], check=True, capture_output=True)
            except subprocess.CalledProcessError:
                _detach(self.mountpoint)  # still in use (a test failed): let go anyway
        try:
            self.daemon.wait(timeout=WAIT_S)
        except subprocess.TimeoutExpired:
            self.daemon.kill()
            self.daemon.wait(timeout=WAIT_S)
        self.daemon = None

    def __enter__(self) -> VolatileMount:
        return self.mount()

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(OSError):
            self.close()
