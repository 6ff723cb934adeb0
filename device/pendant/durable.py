"""Small files that survive a power cut: the mute, the phone's sentences, keys, configs.

A file is written beside its target under a temporary name, fsynced, renamed over the target,
and then its directory is fsynced. Each step matters on the pendant's ext4 data partition: a
rename alone replaces the name at once for every reader, but without the directory's fsync the
rename reaches the card only at ext4's next journal commit (the image mounts `commit=30`), so
a power cut meanwhile brings back the old file, a mute the wearer set among them.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def sync_directory(path: Path) -> None:
    """Make the entries of directory `path` (a rename, a new file) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
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
