"""The FUSE daemon behind `tests.support.powercut`: a disk with a volatile page cache.

Run as a script (`python powercut_fs.py BACKING MOUNTPOINT`) in a process of its own, so that
the process which mounts never serves its own requests. The semantics are
`tests.support.powercut`'s docstring; here is how they are kept:

- A directory whose backing directory carries ext4's dirsync flag (`chattr +D`, as
  provisioning sets on mosquitto's state directory) writes its names through: each create,
  unlink or rename in it is made durable as it returns, as ext4 does for such a directory.
  Its new subdirectories inherit the flag, as on ext4. File data still needs an fsync.
- Every inode lives in this process's memory (`Node`): that is the page cache, and what every
  read sees. Killing this process is the power cut: the cache is gone.
- `durable` holds, per inode, the last `Image` that was made durable: a file's data and
  attributes as of its last fsync, a directory's entries as of its last fsync. The backing
  directory is kept equal to the tree those images describe from the root, and nothing else
  (`_write_back`), so it is "the disk" at every moment, and a new daemon that loads it sees
  exactly what a machine sees after the power came back.

Nothing here is fast: every write is a Python call and every fsync rewrites the files whose
image changed. That is fine for the few small files of mosquitto and the outbox.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pendant.core.state import write_names_through, writes_names_through

ROOT = 1


def _fail(code: int) -> OSError:
    return OSError(code, os.strerror(code))


@dataclass
class Node:
    """An inode as the page cache holds it."""

    mode: int
    uid: int
    gid: int
    data: bytearray = field(default_factory=bytearray)
    entries: dict[str, int] | None = None
    """A directory's names → inodes; None for a file."""
    atime_ns: int = field(default_factory=time.time_ns)
    mtime_ns: int = field(default_factory=time.time_ns)
    ctime_ns: int = field(default_factory=time.time_ns)
    linked: bool = True
    """False once no directory names it; it lives on while open (`opened`)."""
    opened: int = 0
    dirsync: bool = False
    """A directory whose names are written through (`chattr +D`)."""

    @property
    def is_dir(self) -> bool:
        return self.entries is not None

    def image(self) -> Image:
        return Image(
            self.mode,
            self.uid,
            self.gid,
            self.mtime_ns,
            bytes(self.data),
            None if self.entries is None else dict(self.entries),
            self.dirsync,
        )


@dataclass(frozen=True)
class Image:
    """An inode as the disk holds it: what survives a cut."""

    mode: int
    uid: int
    gid: int
    mtime_ns: int
    data: bytes
    entries: dict[str, int] | None
    dirsync: bool = False


class VolatileDisk:
    """The FUSE operations (mfusepy's path-based API; `fh` is always the inode number)."""

    # Operations on a file that is open but unlinked (SQLite deletes its WAL while it holds
    # it) come without a path; `fh` finds the inode.
    use_ns = True

    def __init__(self, backing: Path) -> None:
        self.backing = backing
        self.incoming = backing.with_name(backing.name + ".incoming")
        self.nodes: dict[int, Node] = {}
        self.durable: dict[int, Image] = {}
        self.generation: dict[int, int] = {}
        self.written: dict[str, tuple[int, int]] = {}
        """Backing-relative path → (inode, generation) of the image last written there."""
        self.next_ino = ROOT
        self._load()

    # -- the disk ----------------------------------------------------------------------

    def _new(self, node: Node) -> int:
        ino = self.next_ino
        self.next_ino += 1
        self.nodes[ino] = node
        return ino

    def _load(self) -> None:
        """Everything on the backing directory is durable, by definition."""
        shutil.rmtree(self.incoming, ignore_errors=True)
        self.incoming.mkdir()

        def load(path: Path, rel: str) -> int:
            st = path.lstat()
            node = Node(st.st_mode, st.st_uid, st.st_gid)
            node.atime_ns, node.mtime_ns, node.ctime_ns = st.st_atime_ns, st.st_mtime_ns, 0
            ino = self._new(node)
            if stat.S_ISDIR(st.st_mode):
                node.entries = {}
                node.dirsync = writes_names_through(path)
                for child in sorted(path.iterdir()):
                    r = f"{rel}/{child.name}" if rel else child.name
                    node.entries[child.name] = load(child, r)
            elif stat.S_ISREG(st.st_mode):
                node.data = bytearray(path.read_bytes())
            else:
                raise ValueError(f"{path}: only files and directories are modelled")
            self._make_durable(ino)
            if rel:
                self.written[rel] = (ino, self.generation[ino])
            return ino

        load(self.backing, "")

    def _make_durable(self, ino: int) -> None:
        self.durable[ino] = self.nodes[ino].image()
        self.generation[ino] = self.generation.get(ino, 0) + 1

    def _write_back(self) -> None:
        """Make the backing directory the tree the durable images describe."""
        want: dict[str, tuple[int, int]] = {}

        def walk(ino: int, rel: str) -> None:
            for name, child in (self.durable[ino].entries or {}).items():
                r = f"{rel}/{name}" if rel else name
                want[r] = (child, self.generation[child])
                if self.durable[child].entries is not None:
                    walk(child, r)

        walk(ROOT, "")
        for rel in sorted(set(self.written) - set(want), key=lambda r: r.count("/"), reverse=True):
            _remove(self.backing / rel)
            del self.written[rel]
        for rel in sorted(want, key=lambda r: r.count("/")):
            if self.written.get(rel) != want[rel]:
                self._put(rel, self.durable[want[rel][0]])
                self.written[rel] = want[rel]
        root = self.durable[ROOT]
        os.chmod(self.backing, stat.S_IMODE(root.mode))

    def _put(self, rel: str, image: Image) -> None:
        target = self.backing / rel
        if image.entries is not None:
            if target.exists() and not target.is_dir():
                target.unlink()
            target.mkdir(exist_ok=True)
            if image.dirsync:
                write_names_through(target)
        else:
            # Through a rename on the host's own disk, so a reader of the backing directory
            # never sees half an image.
            tmp = self.incoming / "file"
            tmp.write_bytes(image.data)
            if target.is_dir():
                shutil.rmtree(target)
            os.replace(tmp, target)
        os.chown(target, image.uid, image.gid)
        os.chmod(target, stat.S_IMODE(image.mode))
        os.utime(target, ns=(image.mtime_ns, image.mtime_ns))

    def _sync_file(self, ino: int) -> None:
        self._make_durable(ino)
        self._write_back()

    def _sync_dir(self, ino: int) -> None:
        node = self.nodes[ino]
        assert node.entries is not None
        # A name made durable before its inode was: the inode is there, as it was when it
        # was created (an empty file, an empty directory).
        for child in node.entries.values():
            if child not in self.durable:
                c = self.nodes[child]
                self.durable[child] = Image(
                    c.mode,
                    c.uid,
                    c.gid,
                    c.ctime_ns,
                    b"",
                    None if c.entries is None else {},
                    c.dirsync,
                )
                self.generation[child] = 1
        self._make_durable(ino)
        self._write_back()

    def sync_all(self) -> None:
        """A clean unmount: everything reachable becomes durable."""
        todo = [ROOT]
        while todo:
            ino = todo.pop()
            self._make_durable(ino)
            todo.extend((self.nodes[ino].entries or {}).values())
        self._write_back()

    # -- the namespace -----------------------------------------------------------------

    def _lookup(self, path: str | None, fh: int | None = None) -> int:
        if fh is not None and fh in self.nodes:
            return fh
        if path is None:
            raise _fail(errno.EBADF)
        ino = ROOT
        for part in path.strip("/").split("/"):
            if not part:
                continue
            entries = self.nodes[ino].entries
            if entries is None:
                raise _fail(errno.ENOTDIR)
            if part not in entries:
                raise _fail(errno.ENOENT)
            ino = entries[part]
        return ino

    def _parent(self, path: str) -> tuple[Node, str]:
        head, _, name = path.rstrip("/").rpartition("/")
        parent = self.nodes[self._lookup(head or "/")]
        if parent.entries is None:
            raise _fail(errno.ENOTDIR)
        return parent, name

    def _drop(self, ino: int) -> None:
        node = self.nodes[ino]
        node.linked = False
        node.ctime_ns = time.time_ns()
        if node.opened == 0:
            del self.nodes[ino]

    def _create(self, path: str, mode: int, entries: dict[str, int] | None) -> int:
        parent, name = self._parent(path)
        assert parent.entries is not None
        if name in parent.entries:
            raise _fail(errno.EEXIST)
        uid, gid, _ = _context()
        node = Node(mode, uid, gid, entries=entries)
        node.dirsync = entries is not None and parent.dirsync  # ext4 passes +D down
        ino = self._new(node)
        parent.entries[name] = ino
        parent.mtime_ns = parent.ctime_ns = time.time_ns()
        return ino

    def _written_through(self, *paths: str) -> None:
        """After a change of names: the parents of `paths` that write their names through
        (`chattr +D`) make them durable now."""
        for path in paths:
            head = path.rstrip("/").rpartition("/")[0] or "/"
            ino = self._lookup(head)
            if self.nodes[ino].dirsync:
                self._sync_dir(ino)

    # -- FUSE operations ---------------------------------------------------------------

    def getattr(self, path: str | None, fh: int | None = None) -> dict[str, Any]:
        ino = self._lookup(path, fh)
        node = self.nodes[ino]
        subdirs = sum(self.nodes[c].is_dir for c in (node.entries or {}).values())
        size = len(node.data)
        return {
            "st_ino": ino,
            "st_mode": node.mode,
            "st_nlink": 2 + subdirs if node.is_dir else int(node.linked),
            "st_uid": node.uid,
            "st_gid": node.gid,
            "st_size": size,
            "st_blocks": (size + 511) // 512,
            "st_blksize": 4096,
            "st_atime": node.atime_ns,
            "st_mtime": node.mtime_ns,
            "st_ctime": node.ctime_ns,
        }

    def access(self, path: str, amode: int) -> int:
        self._lookup(path)
        return 0  # default_permissions: the kernel has checked the modes

    def statfs(self, path: str) -> dict[str, int]:
        return {
            "f_bsize": 4096,
            "f_frsize": 4096,
            "f_blocks": 1 << 20,
            "f_bfree": 1 << 19,
            "f_bavail": 1 << 19,
            "f_files": 1 << 16,
            "f_ffree": 1 << 15,
            "f_favail": 1 << 15,
            "f_namemax": 255,
        }

    def opendir(self, path: str) -> int:
        ino = self._lookup(path)
        self.nodes[ino].opened += 1
        return ino

    def readdir(self, path: str | None, fh: int) -> list[tuple[str, dict[str, int], int]]:
        ino = self._lookup(path, fh)
        # With use_ino the inode number goes into each entry: glibc skips a d_ino of 0.
        here = [(".", ino), ("..", ino), *(self.nodes[ino].entries or {}).items()]
        return [
            (name, {"st_ino": i, "st_mode": self.nodes[i].mode}, 0)
            for name, i in here
            if i in self.nodes
        ]

    def releasedir(self, path: str | None, fh: int) -> int:
        return self.release(path, fh)

    def fsyncdir(self, path: str | None, datasync: int, fh: int) -> int:
        self._sync_dir(self._lookup(path, fh))
        return 0

    def mkdir(self, path: str, mode: int) -> int:
        self._create(path, stat.S_IFDIR | (mode & 0o7777), {})
        self._written_through(path)
        return 0

    def create(self, path: str, mode: int, flags: int = 0) -> int:
        ino = self._create(path, stat.S_IFREG | (mode & 0o7777), None)
        self.nodes[ino].opened += 1
        self._written_through(path)
        return ino

    def open(self, path: str, flags: int) -> int:
        ino = self._lookup(path)
        node = self.nodes[ino]
        if node.is_dir:
            raise _fail(errno.EISDIR)
        if flags & os.O_TRUNC:
            self._truncate(node, 0)
        node.opened += 1
        return ino

    def release(self, path: str | None, fh: int) -> int:
        node = self.nodes.get(fh)
        if node is not None:
            node.opened -= 1
            if node.opened == 0 and not node.linked:
                del self.nodes[fh]
        return 0

    def flush(self, path: str | None, fh: int) -> int:
        return 0  # close() is no durability point: only fsync is

    def read(self, path: str | None, size: int, offset: int, fh: int) -> bytes:
        node = self.nodes[self._lookup(path, fh)]
        node.atime_ns = time.time_ns()
        return bytes(node.data[offset : offset + size])

    def write(self, path: str | None, data: bytes, offset: int, fh: int) -> int:
        node = self.nodes[self._lookup(path, fh)]
        if offset > len(node.data):
            node.data.extend(bytes(offset - len(node.data)))
        node.data[offset : offset + len(data)] = data
        node.mtime_ns = node.ctime_ns = time.time_ns()
        return len(data)

    def _truncate(self, node: Node, length: int) -> None:
        if node.is_dir:
            raise _fail(errno.EISDIR)
        if length < len(node.data):
            del node.data[length:]
        else:
            node.data.extend(bytes(length - len(node.data)))
        node.mtime_ns = node.ctime_ns = time.time_ns()

    def truncate(self, path: str | None, length: int, fh: int | None = None) -> int:
        self._truncate(self.nodes[self._lookup(path, fh)], length)
        return 0

    def fsync(self, path: str | None, datasync: int, fh: int) -> int:
        # fdatasync too: the model keeps no metadata apart from data worth telling apart.
        self._sync_file(self._lookup(path, fh))
        return 0

    def unlink(self, path: str) -> int:
        parent, name = self._parent(path)
        assert parent.entries is not None
        ino = self._lookup(path)
        if self.nodes[ino].is_dir:
            raise _fail(errno.EISDIR)
        del parent.entries[name]
        parent.mtime_ns = parent.ctime_ns = time.time_ns()
        self._drop(ino)
        self._written_through(path)
        return 0

    def rmdir(self, path: str) -> int:
        parent, name = self._parent(path)
        assert parent.entries is not None
        ino = self._lookup(path)
        if not self.nodes[ino].is_dir:
            raise _fail(errno.ENOTDIR)
        if self.nodes[ino].entries:
            raise _fail(errno.ENOTEMPTY)
        del parent.entries[name]
        parent.mtime_ns = parent.ctime_ns = time.time_ns()
        self._drop(ino)
        self._written_through(path)
        return 0

    def rename(self, old: str, new: str) -> int:
        # mfusepy drops rename(2)'s flags (RENAME_NOREPLACE, _EXCHANGE): plain rename only.
        src_parent, src_name = self._parent(old)
        dst_parent, dst_name = self._parent(new)
        assert src_parent.entries is not None and dst_parent.entries is not None
        ino = self._lookup(old)
        node = self.nodes[ino]
        if node.is_dir and (new.rstrip("/") + "/").startswith(old.rstrip("/") + "/"):
            raise _fail(errno.EINVAL)
        over = dst_parent.entries.get(dst_name)
        if over == ino:
            return 0
        if over is not None:
            victim = self.nodes[over]
            if victim.is_dir and not node.is_dir:
                raise _fail(errno.EISDIR)
            if node.is_dir and not victim.is_dir:
                raise _fail(errno.ENOTDIR)
            if victim.entries:
                raise _fail(errno.ENOTEMPTY)
        del src_parent.entries[src_name]
        dst_parent.entries[dst_name] = ino
        now = time.time_ns()
        src_parent.mtime_ns = src_parent.ctime_ns = dst_parent.mtime_ns = now
        dst_parent.ctime_ns = node.ctime_ns = now
        if over is not None:
            self._drop(over)
        self._written_through(old, new)
        return 0

    def chmod(self, path: str | None, mode: int) -> int:
        node = self.nodes[self._lookup(path)]
        node.mode = stat.S_IFMT(node.mode) | (mode & 0o7777)
        node.ctime_ns = time.time_ns()
        return 0

    def chown(self, path: str | None, uid: int, gid: int) -> int:
        node = self.nodes[self._lookup(path)]
        # -1 (as unsigned) leaves that one as it is.
        if uid not in (-1, 0xFFFFFFFF):
            node.uid = uid
        if gid not in (-1, 0xFFFFFFFF):
            node.gid = gid
        node.ctime_ns = time.time_ns()
        return 0

    def utimens(self, path: str | None, times: tuple[int, int] | None = None) -> int:
        node = self.nodes[self._lookup(path)]
        now = time.time_ns()
        node.atime_ns, node.mtime_ns = times or (now, now)
        node.ctime_ns = now
        return 0

    def link(self, target: str, source: str) -> int:
        raise _fail(errno.EPERM)  # hard links are not modelled (nothing here makes them)

    def destroy(self, path: str) -> None:
        self.sync_all()


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def _context() -> tuple[int, int, int]:
    import mfusepy

    return mfusepy.fuse_get_context()


def main(backing: str, mountpoint: str) -> None:
    import mfusepy

    class Fuse(mfusepy.FUSE):
        def truncate_fuse_3(self, path: bytes | None, length: int, fip: Any) -> int:
            # mfusepy drops the file handle of an ftruncate(2); SQLite truncates its -shm so.
            return int(self.ftruncate(path, length, fip))

    Fuse(
        VolatileDisk(Path(backing)),
        mountpoint,
        foreground=True,
        nothreads=True,  # one request at a time: the model needs no locks
        fsname="powercut",
        default_permissions=True,
        # Root's mount serves root's processes without it; it lets a test run mosquitto as
        # another user. (Unprivileged, it needs user_allow_other in /etc/fuse.conf.)
        allow_other=os.geteuid() == 0,
        use_ino=True,
        hard_remove=True,  # an unlinked open file stays nameless, not renamed .fuse_hidden*
        kernel_cache=True,  # every change passes through the kernel: its cache stays true
        attr_timeout=0,
        entry_timeout=0,
        negative_timeout=0,
    )


if __name__ == "__main__":
    main(*sys.argv[1:3])
