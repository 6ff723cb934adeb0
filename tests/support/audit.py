"""A privacy audit of a real process: what files it opens for writing, what sockets it opens and
which unix sockets it talks to (strace), and whether any bytes of the audio it heard turn up
somewhere they should not."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# Opened for writing and still fine: they cannot hold audio.
ALLOWED_WRITES = (
    re.compile(r"^/dev/(null|tty|pts/\d+)$"),  # pocketsphinx's log goes to /dev/null
    re.compile(r"\.pyc\.\d+$|\.pyc$"),  # Python's bytecode cache
    re.compile(r"/pendant-[^/]*\.dict$"),  # pocketsphinx's pronunciations, words only, removed
    re.compile(r"^/tmp/[a-z0-9_]{8}$"),  # tempfile.gettempdir() probing that /tmp is writable
    # The closed set compiled from the config (words and a graph, never audio), when the cache
    # holds another home's: the cache keeps one, so which test ran before decides.
    re.compile(r"/grammar/grammar-[0-9a-f]+\.(json|tmp)$"),
)
OPEN_FOR_WRITE = re.compile(r'openat\([^,]+, "([^"]*)", ([A-Z_|]+)')
SOCKET = re.compile(r"socket\((AF_[A-Z0-9]+),")
# A unix socket reached by path or abstract name: connect() for a stream, sendto()/sendmsg()
# with an address for a datagram (sd_notify and journald's socket are reached that way).
UNIX_PEER = re.compile(r'^(?:\d+ +)?(connect|sendto|sendmsg)\(.*?sun_path=(@?)"([^"]*)"')
WINDOW_BYTES = 48


@dataclass
class Audit:
    writes: list[str] = field(default_factory=list)
    """Files opened for writing that are not on the allowed list."""
    ip_sockets: list[str] = field(default_factory=list)
    """Sockets of any family but AF_UNIX."""
    other_unix: list[str] = field(default_factory=list)
    """Unix sockets connected or sent to that are not on the allowed list ("@name": abstract).
    In /run a unix socket can be a way to the network (D-Bus, systemd-resolved's varlink, avahi
    make DNS queries from the host's namespace), so a process without network talks only to
    the sockets it is given."""


def strace_prefix(log: Path) -> list[str]:
    exe = shutil.which("strace")
    if exe is None:
        raise FileNotFoundError("strace is not installed: apt install strace")
    # --seccomp-bpf: only the traced calls stop the process; onnxruntime's threads make
    # millions of others (futex), each of which would otherwise stop it.
    trace = "trace=openat,socket,connect,sendto,sendmsg"
    return [exe, "-f", "--seccomp-bpf", "-qq", "-e", trace, "-o", str(log)]


def read_strace(log: Path, allowed_unix: Iterable[str | Path] = ()) -> Audit:
    """What the traced process did; `allowed_unix`: the socket paths it may talk to."""
    audit = Audit()
    allowed = {str(p) for p in allowed_unix}
    for line in log.read_text(errors="replace").splitlines():
        m = OPEN_FOR_WRITE.search(line)
        writing = m is not None and re.search(r"O_WRONLY|O_RDWR|O_CREAT", m[2]) is not None
        if m and writing and "= -1" not in line and not any(p.search(m[1]) for p in ALLOWED_WRITES):
            audit.writes.append(m[1])
        if (m := SOCKET.search(line)) and m[1] != "AF_UNIX" and "= -1" not in line:
            audit.ip_sockets.append(line.strip())
        # A failed attempt (ENOENT: the socket is hidden or absent) reaches nothing.
        failed = re.search(r"= -1 (?!EINPROGRESS)", line) is not None
        if (m := UNIX_PEER.search(line)) and not failed:
            peer = m[2] + m[3]
            if peer not in allowed and peer not in audit.other_unix:
                audit.other_unix.append(peer)
    return audit


def audio_windows(samples: np.ndarray, count: int = 24) -> list[bytes]:
    """Short runs of the loudest parts of some audio, as the bytes a leak would carry."""
    raw = samples.astype("<i2").tobytes()
    loud = np.argsort(np.abs(samples.astype(np.int32)))[::-1]
    starts = sorted({int(i) * 2 for i in loud[: count * 50 : 50]})
    return [raw[s : s + WINDOW_BYTES] for s in starts if s + WINDOW_BYTES <= len(raw)]


def leaks(blob: bytes, windows: list[bytes]) -> bool:
    return any(w in blob for w in windows)
