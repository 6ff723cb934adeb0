"""Pair a phone with the pendant, or revoke it: one MQTT account per phone.

    python -m pendant.pairing pair --root / --name anna [--host 192.168.1.20] [--web-port 8443]
                                   [--broker-pid PID]
    python -m pendant.pairing revoke --root / --name anna [--broker-pid PID]
    python -m pendant.pairing list --root /

`pair` makes the account `phone-<name>` with its own random password (`pendant.provision`
`--add-phone`), then prints the pairing link and its QR code. The link opens the companion app,
which `pendant.webserver` serves over https (pendant-web.service, port 8443 unless
`--web-port` says otherwise); `w` is the port of mosquitto's TLS WebSocket, where the page then
talks MQTT:

    https://<host>:<web port>/#u=phone-anna&p=<password>&d=<device id>&w=<ws port>

Everything after `#` is the URL *fragment*: browsers never send it to a server, so the
password reaches no log; the app keeps it on the phone and removes it from the address bar.
Show the QR code only to the phone being paired: whoever scans it can read the pendant's
public topics and send it commands, until `revoke`.

mosquitto reads new and removed accounts only when told: pass `--broker-pid` (the pid of the
pendant's mosquitto) to send it SIGHUP, or run `systemctl reload mosquitto` afterwards. On
that reload mosquitto checks every open connection against the new password file and cuts the
ones it no longer accepts: a revoked phone is disconnected at once and cannot log in again
(tests/test_mosquitto_config.py proves it). `pair` under a name already paired makes a new
password, so the phone that had that name is cut off the same way.

The browser must trust the pendant's certificate, made by its own CA: install `ca.crt`
(its SHA-256 fingerprint is printed) on the phone, or accept the warning once.

Without a console, the button does the same: `pendant.pairing_window` (the pairing window,
opened by an 8 s hold) calls `pair` and `revoke` for one-time accounts, and the web server hands
the link out at `/pair`.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import signal
import ssl
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from pendant.errors import PendantError
from pendant.provision import PHONE_PREFIX, Layout, provision
from pendant.webserver import DEFAULT_PORT as DEFAULT_WEB_PORT


class PairingError(PendantError, RuntimeError):
    """Pairing cannot go on; the message names what to fix."""


@dataclass(frozen=True)
class Pairing:
    """What the phone needs, as a link."""

    device_id: str
    user: str
    password: str
    host: str
    # The companion app's web server (pendant.webserver).
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
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"https://{host}:{self.port}/#{self.fragment}"


def ca_fingerprint(root: Path) -> str:
    """SHA-256 of the device CA (DER), as a phone's certificate screen shows it."""
    der = ssl.PEM_cert_to_DER_cert(Layout(Path(root).resolve()).ca_cert.read_text())
    digest = hashlib.sha256(der).hexdigest().upper()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


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
        host=host or f"{prov.device_id}.local",
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
    secrets = Layout(Path(root).resolve()).secrets
    return sorted(
        p.name.removesuffix(".password").removeprefix(PHONE_PREFIX)
        for p in secrets.glob(f"{PHONE_PREFIX}*.password")
    )


def qr_text(data: str) -> str:
    """The QR code as text for a terminal (two modules per character, quiet zone included)."""
    import io

    import segno

    out = io.StringIO()
    segno.make(data, error="m").terminal(out=out, compact=True)
    return out.getvalue()


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m pendant.pairing", description=__doc__.splitlines()[0]
    )
    sub = p.add_subparsers(dest="command", required=True)
    for name, helptext in (
        ("pair", "make a phone's account; print its pairing link and QR code"),
        ("revoke", "remove a phone's account"),
        ("list", "the paired phones"),
    ):
        s = sub.add_parser(name, help=helptext)
        s.add_argument("--root", type=Path, default=Path("/"), help="filesystem root ('/')")
        if name == "list":
            continue
        s.add_argument("--name", required=True, help="the phone: 1-32 of a-z, 0-9, '-'")
        s.add_argument("--broker-pid", type=int, help="mosquitto's pid: send it SIGHUP")
        if name == "pair":
            s.add_argument("--host", help="how the phone reaches the pendant (default <id>.local)")
            s.add_argument(
                "--web-port",
                type=int,
                default=DEFAULT_WEB_PORT,
                help=f"the app's web server port (pendant-web; default {DEFAULT_WEB_PORT})",
            )
            s.add_argument("--no-qr", action="store_true", help="print the link only")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "list":
            for name in paired(args.root):
                print(name)
            return 0
        if args.command == "revoke":
            existed = revoke(args.root, args.name, args.broker_pid)
            print(f"revoked {PHONE_PREFIX}{args.name}" if existed else f"{args.name}: not paired")
            if args.broker_pid is None:
                print("now reload mosquitto: systemctl reload mosquitto (SIGHUP)")
            return 0
        result = pair(args.root, args.name, args.host, args.broker_pid, args.web_port)
        print(f"Pairing link for {result.user} on {result.device_id} (show it to that phone only):")
        print(result.url)
        if not args.no_qr:
            print(qr_text(result.url), end="")
        print(f"Device CA SHA-256: {ca_fingerprint(args.root)}")
        if args.broker_pid is None:
            print("now reload mosquitto: systemctl reload mosquitto (SIGHUP)")
        return 0
    except (PendantError, OSError) as exc:
        print(f"pairing: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
