"""A private mosquitto for a laptop, `make run`, `pendant listen` and the tests.

It listens on a unix socket (as the device-local bus does) and, if asked, on a free TCP port
of 127.0.0.1 (as a home broker does), in TLS if given a certificate and key. Anonymous access
is refused: each user gets a random password in a 0600 file, so there is no default password
even here.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pwd
import random
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from pendant.core.errors import BusError

log = logging.getLogger(__name__)

START_TIMEOUT_S = 10.0


EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
LOWEST_PORT = 10000


def free_port() -> int:
    """A TCP port of 127.0.0.1 that was free a moment ago: another process may take it first.

    Chosen below the kernel's range for the local ends of outgoing connections: a port from
    that range (what binding port 0 gives) can be taken by any client's connect, on this
    machine, between this check and the server's bind. Two callers choosing at once may still
    pick one port, about once in twenty thousand.
    """
    try:
        low = int(EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    rng = random.SystemRandom()
    if low - LOWEST_PORT >= 1000:  # else no room below the range: any port, as the kernel picks
        for _ in range(100):
            port = rng.randrange(LOWEST_PORT, low)
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_secret(path: Path, value: str) -> None:
    """Replaces what `path` holds with `value` and a newline; a file it creates is made 0600 (one
    that exists keeps its mode)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(value + "\n")


def accepts(path: Path) -> bool:
    """The unix socket takes connections: its file appears at bind(), before listen()."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        try:
            s.connect(str(path))
        except OSError:
            return False
    return True


@dataclass
class LocalBroker:
    """Start with `start()` or as a context manager; `stop()` is idempotent."""

    users: tuple[str, ...] = ("pendant",)
    tcp: bool = False
    directory: Path | None = None
    port: int | None = None
    persistence: bool = False
    """Keep sessions and queued messages across a restart (give it a `directory` of yours)."""
    tls: tuple[Path, Path] | None = None
    """(certificate, key) PEM files: the TCP listener speaks TLS with them, as a home broker
    reached over the network should."""
    keep_passwords: bool = False
    """A restart keeps each user's password (as a real broker does), instead of new ones."""
    _proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)
    _tmp: tempfile.TemporaryDirectory[str] | None = field(default=None, init=False, repr=False)

    @property
    def socket_path(self) -> Path:
        """The unix socket the broker listens on, in its `directory` (known once started)."""
        assert self.directory is not None
        return self.directory / "bus.sock"

    def password_file(self, user: str) -> Path:
        """The 0600 file that holds `user`'s password, in the broker's `directory`."""
        assert self.directory is not None
        return self.directory / f"{user}.password"

    def password(self, user: str) -> str:
        """`user`'s password as `start()` wrote it; OSError before that."""
        return self.password_file(user).read_text().strip()

    def start(self) -> LocalBroker:
        """Writes the users' passwords and the configuration, starts mosquitto and blocks until it
        takes connections; returns self. BusError if mosquitto is not installed, exits, or is not
        ready within START_TIMEOUT_S."""
        exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        passwd_tool = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
        if not Path(exe).exists() or not Path(passwd_tool).exists():
            raise BusError("mosquitto is not installed: apt install mosquitto")
        if self.directory is None:
            # Short path: unix socket paths are limited to 108 bytes.
            self._tmp = tempfile.TemporaryDirectory(prefix="pendant-")
            self.directory = Path(self._tmp.name)
        self.directory.mkdir(parents=True, exist_ok=True)
        passwd = self.directory / "passwd"
        for user in self.users:
            kept = self.keep_passwords and self.password_file(user).exists()
            pw = self.password(user) if kept else secrets.token_urlsafe(18)
            write_secret(self.password_file(user), pw)
            cmd = [passwd_tool, "-b", str(passwd), user, pw]
            if not passwd.exists():
                cmd.insert(1, "-c")
            subprocess.run(cmd, check=True, capture_output=True)
        os.chmod(passwd, 0o600)
        lines = [
            # Started as root, mosquitto would drop to its own user, which cannot read our
            # 0600 files; this broker runs as whoever started it.
            f"user {pwd.getpwuid(os.getuid()).pw_name}",
            "per_listener_settings false",
            "allow_anonymous false",
            f"password_file {passwd}",
            f"persistence {str(self.persistence).lower()}",
            f"persistence_location {self.directory}/",
            "max_packet_size 65536",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            f"listener 0 {self.socket_path}",
        ]
        if self.tcp:
            self.port = self.port or free_port()
            lines.append(f"listener {self.port} 127.0.0.1")
            if self.tls is not None:
                lines += [f"certfile {self.tls[0]}", f"keyfile {self.tls[1]}"]
        conf = self.directory / "mosquitto.conf"
        conf.write_text("\n".join(lines) + "\n")
        # Its own session: Ctrl-C in a terminal is for the pendant, which must still reach
        # its broker to say goodbye; stop() ends the broker after it.
        self._proc = subprocess.Popen(
            [exe, "-c", str(conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            assert self._proc is not None
            if self._proc.poll() is not None:
                err = (self._proc.stderr.read() if self._proc.stderr else b"").decode().strip()
                self.stop()
                raise BusError(f"mosquitto exited at start: {err.splitlines()[-1:] or '?'}")
            ready = accepts(self.socket_path)
            if ready and self.tcp:
                with (
                    contextlib.suppress(OSError),
                    socket.create_connection(("127.0.0.1", self.port or 0), timeout=0.2),
                ):
                    return
                ready = False
            if ready:
                return
            time.sleep(0.02)
        self.stop()
        raise BusError(f"mosquitto did not start within {START_TIMEOUT_S} s")

    def stop(self) -> None:
        """Ends mosquitto, blocking until it has gone (SIGTERM, then SIGKILL after 5 s), and removes
        a temporary directory of its own."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc is not None and proc.stderr:
            proc.stderr.close()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> LocalBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
