"""Pair a phone with the pendant, or revoke it: one MQTT account per phone.

    sudo pendant pair --name anna [--host 192.168.1.20] [--web-port 8443] [--broker-pid PID]
    sudo pendant unpair --name anna [--broker-pid PID]
    pendant pair --list
    (the same as python -m pendant.pairing.accounts pair|revoke|list [--root /] ...)

`pair` makes the account `phone-<name>` with its own random password (`pendant.setup.provision`
`--add-phone`), then prints the pairing link and its QR code. The link opens the companion app,
which `pendant.web.server` serves over https (pendant-web.service, port 8443 unless
`--web-port` says otherwise); `w` is the port of mosquitto's TLS WebSocket, where the page then
talks MQTT:

    https://<host>:<web port>/#u=phone-anna&p=<password>&d=<device id>&w=<ws port>

`<host>` is `<host name>.local` unless `--host` says otherwise: the image answers mDNS for its
host name (`pendant` unless the SD card's setup.toml names it), and the certificate names it.
Everything after `#` is the URL *fragment*: browsers never send it to a server, so the
password reaches no log; the app keeps it on the phone and removes it from the address bar.
Show the QR code only to the phone being paired: whoever scans it can read the pendant's
public topics and send it commands, until `revoke`.

mosquitto reads new and removed accounts only when told. Run as root on the device (a systemd
system, `--root /`), `pair` and `revoke` tell it themselves: `systemctl reload mosquitto`
(`Reloader`); elsewhere they say what to run instead, and `--broker-pid` sends a given pid
SIGHUP. On that reload mosquitto checks every open connection against the new password file
and cuts the ones it no longer accepts: a revoked phone is disconnected at once and cannot log
in again (tests/system/test_mosquitto_config.py proves it). `pair` under a name already paired makes
a new password, so the phone that had that name is cut off the same way.

`list` (or `pair --list`) prints the paired phones and when each was paired (its password
file's time, by the pendant's clock), never a password.

The browser must trust the pendant's certificate, made by its own CA: the app's trust page
(`/trust.html`) offers `ca.crt` with the steps for iOS and Android, and its SHA-256
fingerprint, which `pair` prints too, to compare.

Without a console, the button does the same: `pendant.pairing.service` (the pairing window,
opened by an 8 s hold) calls `pair` and `revoke` for one-time accounts, and the web server hands
the link out at `/pair`.
"""

from __future__ import annotations

import argparse
import os
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from pendant.core.errors import PendantError
from pendant.core.wire import WEB_PORT as DEFAULT_WEB_PORT
from pendant.setup.ca import fingerprint
from pendant.setup.provision import PHONE_PREFIX, Layout, provision

# The command that makes the device's mosquitto reread its accounts (Debian's unit reloads
# with SIGHUP), and where systemd shows it is PID 1 (sd_booted(3)).
RELOAD_COMMAND = ("systemctl", "reload", "mosquitto.service")
RELOAD_TIMEOUT_S = 30.0
SYSTEMD_RUNTIME = Path("/run/systemd/system")
# A file time before this is a clock that was never set (a Pi has no RTC), not a pairing time.
CLOCK_SET_AFTER_S = 1_577_836_800  # 2020-01-01


class PairingError(PendantError, RuntimeError):
    """Pairing cannot go on; the message names what to fix."""


@dataclass(frozen=True)
class Pairing:
    """What the phone needs, as a link."""

    device_id: str
    user: str
    password: str
    host: str
    # The companion app's web server (pendant.web.server).
    port: int
    # mosquitto's MQTT-over-WebSocket (TLS) listener, which the page connects to.
    ws_port: int

    @property
    def fragment(self) -> str:
        """What follows `#` in the link: the login, which browsers never send to a server."""
        return "&".join(
            f"{k}={quote(v, safe='')}"
            for k, v in (
                ("u", self.user),
                ("p", self.password),
                ("d", self.device_id),
                ("w", str(self.ws_port)),
            )
        )

    @property
    def url(self) -> str:
        """The pairing link: the app's address, the login in its fragment. It holds the password:
        for the phone being paired only, and never for a log."""
        return f"{self.origin}/#{self.fragment}"

    @property
    def origin(self) -> str:
        """The app's web server as the phone reaches it."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"https://{host}:{self.port}"


def ca_fingerprint(root: Path) -> str:
    """SHA-256 of the device CA (DER), as a phone's certificate screen shows it."""
    der = ssl.PEM_cert_to_DER_cert(Layout(Path(root).resolve()).ca_cert.read_text())
    return fingerprint(der)


def _systemctl(command: Sequence[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(command), capture_output=True, text=True, timeout=RELOAD_TIMEOUT_S, check=False
    )


@dataclass(frozen=True)
class Reloader:
    """How the CLI makes the device's mosquitto reread its accounts after a pairing change:
    `systemctl reload mosquitto`, when it runs as root on a systemd system for the device's
    own root (`device_root`); otherwise a line saying what to do. `run` runs the command (a
    test hands in its own, and sees what would run)."""

    is_root: bool
    systemd: bool
    run: Callable[[Sequence[str]], subprocess.CompletedProcess[str]] = _systemctl
    device_root: Path = Path("/")

    @classmethod
    def here(cls) -> Reloader:
        """The reloader for this process: as root or not, on a systemd system or not."""
        return cls(is_root=os.geteuid() == 0, systemd=SYSTEMD_RUNTIME.is_dir())

    def reload(self, root: Path, done: str) -> str:
        """Reload mosquitto if this can, and say so in a line ending in `done` (what the
        reload brings about); or say how to. Raises PairingError when the reload fails."""
        command = " ".join(RELOAD_COMMAND)
        if Path(root).resolve() != self.device_root.resolve():
            return (
                f"mosquitto not reloaded ({root} is not this system's root): "
                "send that broker SIGHUP (--broker-pid PID)"
            )
        if not self.systemd:
            return (
                "mosquitto not reloaded (no systemd here): send it SIGHUP, "
                "e.g. --broker-pid $(pidof mosquitto)"
            )
        if not self.is_root:
            return f"mosquitto not reloaded (not root): run `sudo {command}`"
        try:
            result = self.run(RELOAD_COMMAND)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise PairingError(f"`{command}` could not run ({exc}): run it yourself") from None
        if result.returncode != 0:
            why = (result.stderr or "").strip().splitlines()[-1:] or [f"exit {result.returncode}"]
            raise PairingError(f"`{command}` failed: {why[0]}; run it once mosquitto is up")
        return f"mosquitto reloaded: {done}"


def reload_broker(pid: int | None) -> bool:
    """SIGHUP to mosquitto: it rereads the password file and the ACL. False if no pid."""
    if pid is None:
        return False
    try:
        os.kill(pid, signal.SIGHUP)
    except ProcessLookupError:
        raise PairingError(f"no process {pid} (--broker-pid): is mosquitto running?") from None
    except PermissionError:
        raise PairingError(f"not allowed to signal process {pid}: run as root") from None
    return True


def pair(
    root: Path,
    name: str,
    host: str | None = None,
    broker_pid: int | None = None,
    web_port: int = DEFAULT_WEB_PORT,
) -> Pairing:
    """Make phone-<name>'s account, with a new password even if the name was paired (the phone
    it replaces loses access); its pairing link. Reloads the broker if given."""
    prov = provision(Path(root), add_phones=(name,))
    user = PHONE_PREFIX + name
    reload_broker(broker_pid)
    return Pairing(
        device_id=prov.device_id,
        user=user,
        password=prov.password(user),
        host=host or prov.mdns_name,
        port=web_port,
        ws_port=prov.settings.ws_port,
    )


def revoke(root: Path, name: str, broker_pid: int | None = None) -> bool:
    """Remove phone-<name>'s account. True if it existed. Reloads the broker if given."""
    existed = Layout(Path(root).resolve()).password_file(PHONE_PREFIX + name).exists()
    provision(Path(root), remove_phones=(name,))
    reload_broker(broker_pid)
    return existed


def paired(root: Path) -> list[str]:
    """The names of the paired phones (without `phone-`), sorted."""
    return [name for name, _ in paired_since(root)]


def paired_since(root: Path) -> list[tuple[str, float | None]]:
    """Each paired phone's name and when it was paired (seconds since the epoch; None when the
    pendant's clock was not set then). The time is that of its password file, which `pair`
    writes anew and nothing else touches; the password itself is never read."""
    secrets = Layout(Path(root).resolve()).secrets
    if secrets.exists() and not os.access(secrets, os.R_OK | os.X_OK):
        # glob() would find nothing and the list would say, wrongly, that none is paired.
        raise PermissionError(f"{secrets} is readable by root only")
    out = []
    for p in sorted(secrets.glob(f"{PHONE_PREFIX}*.password")):
        mtime_s = p.stat().st_mtime
        name = p.name.removesuffix(".password").removeprefix(PHONE_PREFIX)
        out.append((name, mtime_s if mtime_s >= CLOCK_SET_AFTER_S else None))
    return out


def phone_list(root: Path) -> str:
    """`pair --list`: one line a phone, its name and when it was paired (UTC)."""
    phones = paired_since(root)
    if not phones:
        return "no phone is paired"
    width = max(len(name) for name, _ in phones)
    lines = []
    for name, since_s in phones:
        when = (
            time.strftime("paired %Y-%m-%d %H:%M UTC", time.gmtime(since_s))
            if since_s is not None
            else "paired (time unknown: the clock was not set)"
        )
        lines.append(f"{name:<{width}}  {when}")
    return "\n".join(lines)


def qr_text(data: str) -> str:
    """The QR code as text for a terminal (two modules per character, quiet zone included)."""
    import io

    import segno

    out = io.StringIO()
    segno.make(data, error="m").terminal(out=out, compact=True)
    return out.getvalue()


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m pendant.pairing.accounts", description=__doc__.splitlines()[0]
    )
    sub = p.add_subparsers(dest="command", required=True)
    for name, helptext in (
        ("pair", "make a phone's account; print its pairing link and QR code"),
        ("revoke", "remove a phone's account"),
        ("list", "the paired phones, and when each was paired"),
    ):
        s = sub.add_parser(name, help=helptext)
        s.add_argument("--root", type=Path, default=Path("/"), help="filesystem root ('/')")
        if name == "list":
            continue
        # Not required= for pair: `pair --list` needs none (checked in main).
        s.add_argument("--name", required=name != "pair", help="the phone: 1-32 of a-z, 0-9, '-'")
        s.add_argument(
            "--broker-pid",
            type=int,
            help="send this pid SIGHUP instead of `systemctl reload mosquitto`",
        )
        if name == "pair":
            s.add_argument("--list", action="store_true", help="list the paired phones instead")
            s.add_argument("--host", help="how the phone reaches the pendant (default <id>.local)")
            s.add_argument(
                "--web-port",
                type=int,
                default=DEFAULT_WEB_PORT,
                help=f"the app's web server port (pendant-web; default {DEFAULT_WEB_PORT})",
            )
            s.add_argument("--no-qr", action="store_true", help="print the link only")
    return p


def main(argv: list[str] | None = None, reloader: Reloader | None = None) -> int:
    """`pair`, `revoke` or `list` as the command line (`argv`, default sys.argv's) says; returns
    the exit status, 2 with one line on stderr on an error. `reloader`: a test's, else `here()`."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "pair" and not args.list and args.name is None:
        parser.error("pair needs --name NAME (or --list)")
    reloader = reloader or Reloader.here()
    try:
        if args.command == "list" or (args.command == "pair" and args.list):
            print(phone_list(args.root))
            return 0
        if args.command == "revoke":
            existed = revoke(args.root, args.name, args.broker_pid)
            print(f"revoked {PHONE_PREFIX}{args.name}" if existed else f"{args.name}: not paired")
            if args.broker_pid is None and existed:
                print(reloader.reload(args.root, "the phone is cut off"))
            return 0
        result = pair(args.root, args.name, args.host, args.broker_pid, args.web_port)
        print(f"Pairing link for {result.user} on {result.device_id} (show it to that phone only):")
        print(result.url)
        if not args.no_qr:
            print(qr_text(result.url), end="")
        print(f"Device CA SHA-256: {ca_fingerprint(args.root)}")
        print(f"To trust the pendant's certificate on the phone: {result.origin}/trust.html")
        if args.broker_pid is None:
            print(reloader.reload(args.root, "the phone can log in"))
        return 0
    except PermissionError as exc:
        print(f"pairing: error: {exc}: run it as root (sudo)", file=sys.stderr)
        return 2
    except (PendantError, OSError) as exc:
        print(f"pairing: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
