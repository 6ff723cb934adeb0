"""Small files that survive a power cut: the mute, the phone's sentences, keys, configs.

A file is written beside its target under a temporary name, fsynced, renamed over the target,
and then its directory is fsynced. Each step matters on the pendant's ext4 data partition: a
rename alone replaces the name at once for every reader, but without the directory's fsync the
rename reaches the card only at ext4's next journal commit (the image mounts `commit=30`), so
a power cut meanwhile brings back the old file, a mute the wearer set among them.
"""

from __future__ import annotations

import array
import contextlib
import errno
import fcntl
import json
import logging
import os
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)

# The inode flag `chattr +D` sets (linux/fs.h): changes to the directory's entries are
# written through, as if the filesystem were mounted `dirsync`, for this directory alone.
FS_IOC_GETFLAGS = 0x80086601
FS_IOC_SETFLAGS = 0x40086602
FS_DIRSYNC_FL = 0x00010000
# What a filesystem without the flag (tmpfs, overlayfs, FUSE) or a read-only mount answers.
_NO_FLAG = (errno.ENOTTY, errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS, errno.EPERM, errno.EROFS)


def sync_directory(path: Path) -> None:
    """Make the entries of directory `path` (a rename, a new file) durable."""
    _sync(path, os.O_RDONLY | os.O_DIRECTORY)


def sync_file(path: Path) -> None:
    """Make the data of file `path` durable (before a rename gives it its name)."""
    _sync(path, os.O_RDONLY)


def _sync(path: Path, flags: int) -> None:
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_file(path: Path, data: bytes | str, mode: int = 0o600) -> None:
    """Replace `path` with `data`, atomically and durably, created with `mode` (a secret is
    never briefly readable by others). Raises OSError; the old file is then untouched."""
    raw = data.encode() if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # born 0600
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    sync_directory(path.parent)


def make_dirs(path: Path) -> None:
    """`mkdir -p path`, each new directory's name made durable in its parent."""
    missing: list[Path] = []
    at = path
    while not at.exists():
        missing.append(at)
        at = at.parent
    for d in reversed(missing):
        try:
            d.mkdir()
        except FileExistsError:
            continue  # made meanwhile by someone else, who answers for it
        sync_directory(d.parent)


def _flags(fd: int, add: int = 0) -> int:
    """The directory's inode flags, after adding `add` to them."""
    flags = array.array("i", [0])  # the kernel reads and writes an int, whatever the name
    fcntl.ioctl(fd, FS_IOC_GETFLAGS, flags, True)
    if add and flags[0] & add != add:
        flags[0] |= add
        fcntl.ioctl(fd, FS_IOC_SETFLAGS, flags, True)
    return flags[0]


def writes_names_through(path: Path) -> bool:
    """Whether directory `path` carries `chattr +D`."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        return bool(_flags(fd) & FS_DIRSYNC_FL)
    except OSError as exc:
        if exc.errno in _NO_FLAG:
            return False
        raise
    finally:
        os.close(fd)


def write_names_through(path: Path) -> bool:
    """Make every rename and create in directory `path` durable when it returns (`chattr
    +D`), for programs that never fsync their directory: mosquitto saves its database by
    fsyncing `mosquitto.db.new` and renaming it over `mosquitto.db`, so without this a power
    cut up to ext4's next journal commit (`commit=30` on the image) brings back the database
    before the last save. False where the filesystem has no such flag."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        _flags(fd, FS_DIRSYNC_FL)
        return True
    except OSError as exc:
        if exc.errno in _NO_FLAG:
            return False
        raise
    finally:
        os.close(fd)


class MuteMemory:
    """Whether the wearer muted a sensor (`key`: "mic", "camera"), kept across restarts.

    A crash or a watchdog restart must not quietly unmute: the state lives in the service's
    own StateDirectory (systemd sets $STATE_DIRECTORY) and is read before anything is heard.
    Without one (a laptop) it lives as long as the process.
    """

    def __init__(self, directory: str | None = None, key: str = "mic") -> None:
        directory = directory or os.environ.get("STATE_DIRECTORY")
        # The mic's file keeps its old name, so an upgrade does not forget a mute.
        name = "mute.json" if key == "mic" else f"mute-{key}.json"
        self.key = key
        self.path = Path(directory) / name if directory else None

    def load(self) -> bool:
        """Whether the wearer left it muted: False without a directory or a saved state; True, with
        an error logged, if the state cannot be read."""
        if self.path is None:
            return False
        try:
            return bool(json.loads(self.path.read_text()).get(self.key))
        except FileNotFoundError:
            return False
        except (OSError, ValueError) as exc:
            # Unknown is treated as muted: better deaf than listening against the wish.
            log.error("cannot read %s (%s): starting muted", self.path, exc)
            return True

    def save(self, muted: bool) -> None:
        """Remembers `muted`, durably before it returns; a failure is logged, not raised (the mute
        itself has taken effect)."""
        if self.path is None:
            return
        try:
            # Durable before the mute is reported: a power cut must not bring the mic back.
            write_file(self.path, json.dumps({self.key: muted}))
        except OSError as exc:
            # The mute itself has taken effect; only its memory across a restart is lost.
            log.error("cannot remember the mute in %s: %s", self.path, exc.strerror)
