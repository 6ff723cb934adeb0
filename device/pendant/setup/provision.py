"""First boot: the device's identity and the secrets of its local broker.

`python -m pendant.setup.provision --root /` makes, once, and keeps on every later run:

- a device id (`pendant-xxxxxx` unless `--device-id` names one), in `etc/pendant/device_id`;
- a small CA of this device and a server certificate for the phone listeners (TLS and
  WebSocket) and the app's web server, made with `openssl`, naming the device id, the host
  name (`<root>/etc/hostname`) and `<host name>.local` (the name the phone uses: the image
  answers mDNS for it), `localhost`, `127.0.0.1` and any `--san`; the CA may vouch for these
  names only, and its key signs the server certificate and is deleted. Renewal mints both
  anew, and so does a change of those names (the host name set from the SD card's setup.toml
  at first boot, say): the certificate always names what the phone types;
- a random password per service user (ears, eyes, body, link, pairing, web) and per paired phone
  (`--add-phone NAME` makes user `phone-NAME`; naming a paired phone again gives it a new
  password, so the phone it replaces loses access), each in its own 0600 file, never a default;
- the mosquitto password file (hashed by `mosquitto_passwd`), and the config and ACL rendered
  from the templates in `services/mosquitto/`;
- optionally the home broker (`--bridge-host`; the options keep their old names): not a
  mosquitto bridge any more but link settings, `etc/pendant/pendant.d/home-broker.toml`, so
  the link publishes there itself from its durable outbox (`pendant.link.service`, "One queue"), and
  its password in our secrets. It is TLS (`--bridge-cafile`, or `--bridge-capath
  /etc/ssl/certs` for the system store; port 8883 by default): without a CA it is refused,
  unless `--bridge-insecure` asks for plaintext (port 1883 by default), which every run then
  warns about in one line. A plaintext bridge remembered from before TLS became the default
  counts as asked for, so a boot unit does not break it; a `bridge.conf` an older version
  rendered is removed.

Everything lands under `--root` (`/` on the device, a scratch folder in tests); the paths
written into the configs include it. Running it again changes nothing that exists, so it is
safe in a boot unit; settings given once (ports, bridge) are remembered in
`etc/pendant/broker.json`. Errors are one line naming what to fix, exit code 2; a value that
would be rendered into a config (a host, a user, a password, a path) is refused if it holds a
control character, which could otherwise add settings of its own.
After `--add-phone` or `--remove-phone`, tell mosquitto to reload (SIGHUP).
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import ipaddress
import json
import os
import pwd
import re
import secrets
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

from pendant.core import state as durable
from pendant.core import wire
from pendant.core.errors import PendantError

# The bus users of the services: the four components, the pairing service (which alone makes
# and revokes phone accounts) and the web server (which hands a pairing link to a phone).
SERVICE_USERS = ("ears", "eyes", "body", "link", "pairing", "web")
PHONE_PREFIX = wire.PHONE_PREFIX
# A device id or a phone's name: within Config.device_id's rule, so every topic the broker
# guards is one the pendant uses, and a host-name label too (no '-' at either end), since the
# device id names the certificate and a phone's account must match events.PhoneUser.
NAME_RE = re.compile(rf"^{wire.LABEL}$")
CA_DAYS = 3650
# Apple platforms refuse TLS server certificates valid for longer than 825 days.
SERVER_DAYS = 825
# A later run renews the server certificate when it has less than this left.
RENEW_BEFORE_S = 30 * 24 * 3600
# A host name a certificate can name (hostname(5): lowercase letters, digits, '-', dots).
HOSTNAME_RE = re.compile(
    r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$"
)
# Unix socket paths are limited to 108 bytes including the final NUL.
SOCKET_MAX = 107
OPENSSL_TIMEOUT_S = 60
PLACEHOLDER = re.compile(r"@[A-Z_]+@")
# mosquitto reads one setting per line: a line break (or any control character) in a value
# rendered into its config would add settings of its own (`topic # both 0`, say).
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# The settings rendered into a config, by the option that sets them.
TEXT_SETTINGS = {
    "bind_address": "--bind-address",
    "socket": "--socket",
    "run_as": "--run-as",
    "bridge_host": "--bridge-host",
    "bridge_user": "--bridge-user",
    "bridge_cafile": "--bridge-cafile",
    "bridge_capath": "--bridge-capath",
    "san": "--san",
}
# The system's CA store, which the link uses when given no CA file.
SYSTEM_CA_PATH = "/etc/ssl/certs"
# The home broker's port when none is given: MQTT over TLS, or plain MQTT with --bridge-insecure.
BRIDGE_TLS_PORT = 8883
BRIDGE_PLAIN_PORT = 1883


class ProvisionError(PendantError, RuntimeError):
    """Provisioning cannot go on; the message names what to fix."""


def default_templates() -> Path:
    """services/mosquitto of a source checkout, else where a package installs them."""
    here = Path(__file__).resolve().parents[3] / "services" / "mosquitto"
    return here if here.is_dir() else Path("/usr/share/pendant/mosquitto")


@dataclass
class Settings:
    """What the rendered configs depend on, apart from secrets. Remembered between runs."""

    tls_port: int = 8883
    ws_port: int = 8884
    # Empty: every interface (the phone reaches the pendant over the LAN).
    bind_address: str = ""
    # None: <root>/run/mosquitto/pendant.sock, the default of `bus.socket`.
    socket: str | None = None
    # The user mosquitto drops to after binding its listeners.
    run_as: str = "mosquitto"
    bridge_host: str | None = None
    # None: BRIDGE_TLS_PORT, or BRIDGE_PLAIN_PORT with bridge_insecure.
    bridge_port: int | None = None
    bridge_user: str | None = None
    # TLS to the home broker is the default: its CA (a file, or a folder of them such as the
    # system store /etc/ssl/certs). Plaintext only with bridge_insecure (--bridge-insecure).
    bridge_cafile: str | None = None
    bridge_capath: str | None = None
    bridge_insecure: bool = False
    # Extra names for the server certificate (e.g. the pendant's mDNS name).
    san: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Layout:
    """Where everything lives under a root."""

    root: Path

    @property
    def etc(self) -> Path:
        """`etc/pendant`: the device's own files (its id, broker.json, pendant.d/, the secrets)."""
        return self.root / "etc" / "pendant"

    @property
    def secrets(self) -> Path:
        """`etc/pendant/secrets`, private to its owner (0700): every password in plain text, one
        0600 file each."""
        return self.etc / "secrets"

    @property
    def conf_dir(self) -> Path:
        """`etc/mosquitto/pendant`: the device-local mosquitto's config, ACL, hashed password file,
        CA certificate and server certificate and key."""
        return self.root / "etc" / "mosquitto" / "pendant"

    @property
    def old_bridge_conf(self) -> Path:
        """The mosquitto bridge of versions before the link reached the home broker itself."""
        return self.conf_dir / "bridge.d" / "bridge.conf"

    @property
    def home_broker_config(self) -> Path:
        """The home broker's link settings, in the device config's drop-in folder
        (`pendant.core.config.drop_in_dir`, not imported: provisioning runs without pydantic)."""
        return self.etc / "pendant.d" / "home-broker.toml"

    @property
    def state_dir(self) -> Path:
        """`var/lib/mosquitto`: where mosquitto persists what it queues for persistent sessions."""
        return self.root / "var" / "lib" / "mosquitto"

    @property
    def device_id_file(self) -> Path:
        """`etc/pendant/device_id`: the device id, written by the first run and never changed."""
        return self.etc / "device_id"

    @property
    def settings_file(self) -> Path:
        """`etc/pendant/broker.json`: the `Settings` of the last run, remembered for the next."""
        return self.etc / "broker.json"

    @property
    def hostname_file(self) -> Path:
        """`etc/hostname`, where the machine's host name is read from (`read_hostname`)."""
        return self.root / "etc" / "hostname"

    @property
    def server_cert(self) -> Path:
        """The server certificate (PEM) of the phone listeners and the app's web server, which
        `ca_cert` signs; its key is server.key beside it."""
        return self.conf_dir / "server.crt"

    @property
    def conf(self) -> Path:
        """mosquitto's config, rendered from pendant.conf.in: what it runs with (`mosquitto -c`)."""
        return self.conf_dir / "pendant.conf"

    @property
    def ca_cert(self) -> Path:
        """The device CA's certificate (PEM), which phones trust; its key is deleted after use."""
        return self.conf_dir / "ca.crt"

    @property
    def ca_key(self) -> Path:
        """Where versions before name-constrained CAs kept the key; removed when found."""
        return self.secrets / "ca.key"

    def password_file(self, user: str) -> Path:
        """The file (0600, in `secrets`) holding `user`'s password in plain text; whether there
        is one is not checked."""
        return self.secrets / f"{user}.password"

    @property
    def bridge_password_file(self) -> Path:
        """The home broker's password (`--bridge-password-file`, copied here), which
        pendant-link.service hands the link; named for the mosquitto bridge that once used it."""
        return self.secrets / "bridge-remote.password"


@dataclass(frozen=True)
class Provisioned:
    """The result of a run: what a service, a phone or a test needs to connect."""

    layout: Layout
    device_id: str
    settings: Settings
    users: tuple[str, ...]
    # The machine's host name (None: unknown); the phone reaches the pendant as
    # `<first label>.local`, which the certificate names.
    hostname: str | None = None
    # This run replaced the CA and server certificate (renewal, changed names): mosquitto
    # and pendant-web must restart to use them, and phones must trust the new CA.
    reissued: bool = False

    @property
    def conf(self) -> Path:
        """mosquitto's rendered config (`Layout.conf`)."""
        return self.layout.conf

    @property
    def ca_cert(self) -> Path:
        """The device CA's certificate (`Layout.ca_cert`), for a client that checks the phone
        listeners' TLS."""
        return self.layout.ca_cert

    @property
    def socket(self) -> Path:
        """The Unix socket of the services' listener: `--socket` as remembered, else
        `<root>/run/mosquitto/pendant.sock`."""
        return Path(self.settings.socket or self.layout.root / "run/mosquitto/pendant.sock")

    @property
    def mdns_name(self) -> str:
        """The name a phone on the LAN uses: `<host name>.local` (mDNS), else
        `<device id>.local` (what older versions named, for a root with no host name)."""
        return f"{(self.hostname or self.device_id).split('.')[0]}.local"

    def password_file(self, user: str) -> Path:
        """Where `user`'s password is (`Layout.password_file`)."""
        return self.layout.password_file(user)

    def password(self, user: str) -> str:
        """`user`'s password, read from its file; FileNotFoundError for a user with none."""
        return self.password_file(user).read_text().strip()


# --- small file helpers ------------------------------------------------------------------


def _write(path: Path, text: str, mode: int) -> None:
    """Atomically and durably, created with its final mode (a secret is never briefly
    world-readable)."""
    durable.make_dirs(path.parent)
    durable.write_file(path, text, mode)


def _place(src: Path, dst: Path) -> None:
    """Move a file made in a scratch folder onto its target, atomically, even across mounts.

    The secrets and mosquitto's folder are one filesystem on an image, but pendant-pairing's
    ReadWritePaths= makes each its own mount, where a rename between them fails with EXDEV:
    there the file is copied beside its target (mode and owner kept) and renamed there.
    """
    # The data on the disk before the name: a power cut on first boot must not leave an empty
    # server.key beside its certificate (the renewal check looks only at whether it exists).
    with src.open("rb") as f:
        os.fsync(f.fileno())
    try:
        os.replace(src, dst)
        durable.sync_directory(dst.parent)
        return
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
    fd, tmp = tempfile.mkstemp(dir=dst.parent, prefix=f".{dst.name}.")  # born 0600
    try:
        with os.fdopen(fd, "wb") as out, src.open("rb") as inp:
            shutil.copyfileobj(inp, out)
            out.flush()
            os.fsync(out.fileno())
        info = src.stat()
        if os.geteuid() == 0:
            os.chown(tmp, info.st_uid, info.st_gid)
        os.chmod(tmp, stat.S_IMODE(info.st_mode))
        os.replace(tmp, dst)
        durable.sync_directory(dst.parent)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    src.unlink()


def _private_dir(path: Path) -> None:
    durable.make_dirs(path)
    os.chmod(path, 0o700)


def _owner_for(user: str) -> tuple[int, int] | None:
    """uid/gid to give mosquitto's files, when we are root and can hand them over."""
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        raise ProvisionError(
            f"user {user!r} (--run-as) does not exist: install mosquitto or pass --run-as"
        ) from None
    return entry.pw_uid, entry.pw_gid


def _chown(paths: list[Path], owner: tuple[int, int] | None) -> None:
    """Hand files to mosquitto; one it already owns is left alone, so a later run (the pairing
    service, say) needs neither CAP_CHOWN nor write access for those."""
    if owner is not None:
        for p in paths:
            st = p.stat()
            if (st.st_uid, st.st_gid) != owner:
                os.chown(p, *owner)


def _tool(name: str) -> str:
    found = shutil.which(name) or next(
        (str(p) for p in (Path("/usr/bin") / name, Path("/usr/sbin") / name) if p.exists()), None
    )
    if found is None:
        package = "openssl" if name == "openssl" else "mosquitto"
        raise ProvisionError(f"{name} is not installed: apt install {package}")
    return found


def _run(cmd: list[str], what: str) -> None:
    try:
        subprocess.run(cmd, check=True, capture_output=True, timeout=OPENSSL_TIMEOUT_S)
    except subprocess.CalledProcessError as exc:
        last = (exc.stderr or b"").decode(errors="replace").strip().splitlines()[-1:]
        raise ProvisionError(f"{what} failed: {last[0] if last else 'no message'}") from None
    except subprocess.TimeoutExpired:
        raise ProvisionError(f"{what} did not finish within {OPENSSL_TIMEOUT_S} s") from None


def _check_name(value: str, what: str) -> str:
    if not NAME_RE.fullmatch(value):
        raise ProvisionError(
            f"{what} {value!r}: use 1-32 lowercase letters, digits and '-', "
            "not starting or ending with '-'"
        )
    return value


def _check_text(value: object, what: str) -> str:
    """`value` as a config line may hold it; the error names `what`, never the value (it may
    be a password)."""
    if not isinstance(value, str):
        raise ProvisionError(f"{what} must be text, not {type(value).__name__}")
    if CONTROL.search(value):
        raise ProvisionError(
            f"{what} must not contain control characters such as line breaks "
            "(they would add settings to mosquitto's config)"
        )
    return value


def _check_settings(settings: Settings) -> None:
    for name, option in TEXT_SETTINGS.items():
        value = getattr(settings, name)
        for item in value if isinstance(value, list) else [value]:
            if item is not None:
                _check_text(item, option)
    for san in settings.san:
        # Written into openssl's config as one item of a comma-separated list: anything but
        # a name or an address (a comma, say) would add names of its own.
        if not (_is_ip(san) or HOSTNAME_RE.fullmatch(san.lower())):
            raise ProvisionError(f"--san {san!r}: give a host name or an IP address")


# --- templates ---------------------------------------------------------------------------


def render(template: str, values: dict[str, str], flags: dict[str, bool] | None = None) -> str:
    """Fill @NAME@ placeholders; keep `@IF_FLAG@line` only when the flag is set.

    Every placeholder must be known: a typo in a template stops provisioning rather than
    reaching mosquitto as a literal path.
    """
    flags = flags or {}
    out: list[str] = []
    for line in template.splitlines():
        m = re.match(r"@IF_([A-Z_]+)@", line)
        if m:
            if not flags.get(m.group(1), False):
                continue
            line = line[m.end() :]
        for key, value in values.items():
            if f"@{key}@" in line:
                line = line.replace(f"@{key}@", _check_text(value, f"@{key}@"))
        # An empty optional value (bind address) must not leave a trailing blank.
        out.append(line.rstrip())
    text = "\n".join(out) + "\n"
    left = sorted(set(PLACEHOLDER.findall(text)))
    if left:
        raise ProvisionError(f"template has unknown placeholders: {', '.join(left)}")
    return text


def render_acl(template: str, device_id: str, phones: list[str]) -> str:
    """The ACL, with the phone block repeated for every paired phone (none: no block)."""
    m = re.search(r"^@BEGIN_PHONE@\n(.*?)^@END_PHONE@\n?", template, re.S | re.M)
    if m is None:
        raise ProvisionError("acl.in has no @BEGIN_PHONE@ ... @END_PHONE@ block")
    blocks = "\n".join(m.group(1).replace("@PHONE_USER@", user) for user in phones)
    return render(template[: m.start()] + blocks + template[m.end() :], {"DEVICE_ID": device_id})


# --- certificates ------------------------------------------------------------------------


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def _names(device_id: str, sans: list[str], hostname: str | None = None) -> list[str]:
    """The server certificate's names, in openssl's GeneralName form (DNS:x, IP:a.b.c.d),
    each once: the device id and the host name, each also as `.local` (mDNS answers for the
    host name's first label), localhost, 127.0.0.1, and the extra `sans`."""
    names = [f"DNS:{device_id}", f"DNS:{device_id}.local"]
    if hostname:
        names += [f"DNS:{hostname}", f"DNS:{hostname.split('.')[0]}.local"]
    names += ["DNS:localhost", "IP:127.0.0.1"]
    names += [(f"IP:{s}" if _is_ip(s) else f"DNS:{s.lower()}") for s in sans]
    return list(dict.fromkeys(names))


def _normal(name: str) -> str:
    """A GeneralName as `_names` writes it, from openssl's text (`IP Address:0:0:...:1`)."""
    kind, _, value = name.strip().partition(":")
    if kind in ("IP", "IP Address"):
        try:
            return f"IP:{ipaddress.ip_address(value)}"
        except ValueError:
            return name.strip()
    return f"{kind}:{value.lower()}" if kind == "DNS" else name.strip()


def certificate_names(cert: Path) -> set[str] | None:
    """The subjectAltName entries of a certificate, as `_names` writes them (None: no
    certificate, or openssl cannot read it)."""
    if not cert.exists():
        return None
    result = subprocess.run(
        [_tool("openssl"), "x509", "-noout", "-ext", "subjectAltName", "-in", str(cert)],
        capture_output=True,
        text=True,
        timeout=OPENSSL_TIMEOUT_S,
    )
    if result.returncode != 0:
        return None
    lines = result.stdout.splitlines()[1:]  # after "X509v3 Subject Alternative Name:"
    return {_normal(n) for line in lines for n in line.split(",") if n.strip()}


def read_hostname(layout: Layout) -> str | None:
    """The host name `<root>/etc/hostname` holds (its first line that is not a comment), if it
    is one a certificate can name; None otherwise.

    On the image /etc/hostname is a link to /etc/pendant/hostname (the data partition, where
    first boot writes the card's `hostname =`): an absolute link is followed under `root`,
    never to the machine running this.
    """
    path = layout.hostname_file
    for _ in range(8):
        if not path.is_symlink():
            break
        target = Path(os.readlink(path))
        path = (
            layout.root / target.relative_to("/") if target.is_absolute() else path.parent / target
        )
    if path.is_symlink():
        return None  # a loop of links, or a longer chain than any image makes
    try:
        lines = path.read_text(encoding="ascii").splitlines()
    except (OSError, UnicodeDecodeError):
        return None
    name = next((ln.strip().lower() for ln in lines if ln.strip() and not ln.startswith("#")), "")
    return name if len(name) <= 253 and HOSTNAME_RE.fullmatch(name) else None


def _permitted(name: str) -> str:
    """A name constraint that allows exactly this name (an address as a single-host range)."""
    kind, _, value = name.partition(":")
    if kind == "IP":
        ip = ipaddress.ip_address(value)
        mask = ipaddress.ip_network(f"{value}/{ip.max_prefixlen}").netmask
        return f"permitted;IP:{value}/{mask}"
    return f"permitted;{name}"


def openssl_config(device_id: str, sans: list[str], hostname: str | None = None) -> str:
    """The openssl config the device's CA and server certificate are made with."""
    # Our own config, not the system openssl.cnf, so the extensions are exactly these.
    # The CA may only vouch for this device's own names: a phone that trusts it trusts it for
    # nothing else, even if the CA's key were ever taken (and that key is never kept).
    names = _names(device_id, sans, hostname)
    constraints = ",".join(_permitted(n) for n in names)
    return f"""[req]
distinguished_name = dn
prompt = no
[dn]
CN = {device_id}
[ca_ext]
basicConstraints = critical,CA:TRUE,pathlen:0
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
nameConstraints = critical,{constraints}
[server_ext]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = {",".join(names)}
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"""


def _cert_valid_for(cert: Path, seconds: int) -> bool:
    if not cert.exists():
        return False
    result = subprocess.run(
        [_tool("openssl"), "x509", "-checkend", str(seconds), "-noout", "-in", str(cert)],
        capture_output=True,
        timeout=OPENSSL_TIMEOUT_S,
    )
    return result.returncode == 0


@contextlib.contextmanager
def _scratch(parent: Path) -> Iterator[Path]:
    """A 0700 folder next to the targets: keys are born private and moved, not copied."""
    d = Path(tempfile.mkdtemp(dir=parent, prefix=".provision-"))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)
        # Gone for good: a power cut must not bring back a folder of password hashes.
        with contextlib.suppress(OSError):
            durable.sync_directory(parent)


def _certificates(layout: Layout, device_id: str, settings: Settings, hostname: str | None) -> bool:
    """A CA and the server certificate it signs, made together when either is missing, the
    certificate nears expiry or names other names than these (the host name changed); the
    CA's key signs once and is never kept, so a lost SD card holds no key that can sign
    anything (renewing mints a new CA: phones trust it again). True if it replaced ones that
    existed (not on the first run)."""
    openssl = _tool("openssl")
    server_crt, server_key = layout.server_cert, layout.conf_dir / "server.key"
    legacy_key = layout.ca_key.exists()  # kept by versions before the CA key was dropped
    current = layout.ca_cert.exists() and server_key.exists()
    wanted = {_normal(n) for n in _names(device_id, settings.san, hostname)}
    if (
        current
        and not legacy_key
        and _cert_valid_for(server_crt, RENEW_BEFORE_S)
        and certificate_names(server_crt) == wanted
    ):
        return False
    with _scratch(layout.secrets) as tmp:
        cnf = tmp / "openssl.cnf"
        cnf.write_text(openssl_config(device_id, settings.san, hostname))
        ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
        # EC P-256: quick to make and to handshake on a Pi Zero, accepted by every phone.
        _run(
            [openssl, "req", "-x509", "-new", "-config", str(cnf), "-extensions", "ca_ext",
             *ec, "-subj", f"/CN=pendant {device_id} local CA", "-days", str(CA_DAYS),
             "-keyout", str(tmp / "ca.key"), "-out", str(tmp / "ca.crt")],
            "openssl (CA)",
        )  # fmt: skip
        _run(
            [openssl, "req", "-new", "-config", str(cnf), *ec,
             "-keyout", str(tmp / "server.key"), "-out", str(tmp / "server.csr")],
            "openssl (server key)",
        )  # fmt: skip
        _run(
            [openssl, "x509", "-req", "-in", str(tmp / "server.csr"), "-CA", str(tmp / "ca.crt"),
             "-CAkey", str(tmp / "ca.key"), "-set_serial", f"0x{secrets.token_hex(16)}",
             "-days", str(SERVER_DAYS), "-extfile", str(cnf), "-extensions", "server_ext",
             "-out", str(tmp / "server.crt")],
            "openssl (server certificate)",
        )  # fmt: skip
        _forget(tmp / "ca.key")
        os.chmod(tmp / "server.key", 0o600)
        for name in ("ca.crt", "server.crt"):
            os.chmod(tmp / name, 0o644)
        _place(tmp / "ca.crt", layout.ca_cert)
        _place(tmp / "server.key", server_key)
        _place(tmp / "server.crt", server_crt)
    if legacy_key:
        _forget(layout.ca_key)
    return current


def _forget(path: Path) -> None:
    """Overwrite a key, then remove it (flash may still keep old blocks: the key never needs
    to outlive the one signature it makes)."""
    with contextlib.suppress(OSError), path.open("r+b") as f:
        f.write(b"\0" * max(path.stat().st_size, 1))
        f.flush()
        os.fsync(f.fileno())
    path.unlink(missing_ok=True)


# --- passwords ---------------------------------------------------------------------------


def _password(layout: Layout, user: str) -> str:
    """The user's password, made once: an existing file is never overwritten."""
    path = layout.password_file(user)
    if path.exists():
        value = path.read_text().strip()
        if value:
            return value
    return _new_password(layout, user)


def _new_password(layout: Layout, user: str) -> str:
    """A new random password for the user, replacing any it had."""
    value = secrets.token_urlsafe(24)
    _write(layout.password_file(user), value + "\n", 0o600)
    return value


def _phones(layout: Layout) -> list[str]:
    return sorted(
        p.name.removesuffix(".password") for p in layout.secrets.glob(f"{PHONE_PREFIX}*.password")
    )


def _password_file(layout: Layout, users: list[str], owner: tuple[int, int] | None) -> None:
    """Rebuild mosquitto's password file from the secrets, hashed by mosquitto_passwd.

    `-U` hashes a plain `user:password` file in place: the passwords never appear on a
    command line (where any process could read them), and rebuilding from the secrets each
    run keeps the file exactly in step with them (a removed phone is gone).
    """
    tool = _tool("mosquitto_passwd")
    target = layout.conf_dir / "passwd"
    with _scratch(layout.secrets) as tmp:
        plain = tmp / "passwd"
        _write(plain, "".join(f"{u}:{_password(layout, u)}\n" for u in users), 0o600)
        _run([tool, "-U", str(plain)], "mosquitto_passwd")
        _chown([plain], owner)
        _place(plain, target)


# --- the run -----------------------------------------------------------------------------


def _load_settings(layout: Layout) -> Settings:
    if not layout.settings_file.exists():
        return Settings()
    try:
        data = json.loads(layout.settings_file.read_text())
        known = {f.name for f in fields(Settings)}
        if (
            "bridge_insecure" not in data
            and data.get("bridge_host")
            and not data.get("bridge_cafile")
        ):
            # A plaintext bridge made before TLS became the default: it keeps working (a boot
            # unit must not break it), now as the explicit choice it is, warned about on
            # every run until a CA is given.
            data["bridge_insecure"] = True
        return Settings(**{k: v for k, v in data.items() if k in known})
    except (ValueError, TypeError) as exc:
        raise ProvisionError(
            f"{layout.settings_file} is damaged ({exc}): fix or delete it"
        ) from None


def _device_id(layout: Layout, wanted: str | None) -> str:
    existing = layout.device_id_file.read_text().strip() if layout.device_id_file.exists() else None
    if existing and wanted and wanted != existing:
        # The certificate, the ACL and every topic already say the old id.
        raise ProvisionError(
            f"already provisioned as {existing!r} ({layout.device_id_file}): "
            "a new id needs a fresh root, since the certificate and the ACL name the old one"
        )
    device_id = _check_name(existing or wanted or f"pendant-{secrets.token_hex(3)}", "device id")
    if not existing:
        _write(layout.device_id_file, device_id + "\n", 0o644)
    return device_id


def provision(
    root: Path,
    device_id: str | None = None,
    add_phones: tuple[str, ...] = (),
    remove_phones: tuple[str, ...] = (),
    templates: Path | None = None,
    bridge_password_file: Path | None = None,
    **overrides: object,
) -> Provisioned:
    """Provision `root`; `overrides` are Settings fields, remembered for later runs."""
    templates = templates or default_templates()
    layout = Layout(Path(root).resolve())
    settings = _load_settings(layout)
    unknown = set(overrides) - {f.name for f in fields(Settings)}
    if unknown:
        raise ProvisionError(f"unknown setting(s): {', '.join(sorted(unknown))}")
    overrides = _bridge_security_overrides(overrides)
    settings = replace(settings, **{k: v for k, v in overrides.items() if v is not None})  # type: ignore[arg-type]
    for name in (*add_phones, *remove_phones):
        _check_name(name, "phone name")
    if device_id is not None:
        _check_name(device_id, "device id")
    # Checked before anything is written, so a wrong command line leaves no half-made root.
    if settings.bridge_host and not settings.bridge_user:
        raise ProvisionError(
            "--bridge-host needs --bridge-user (the home broker refuses anonymous)"
        )
    has_password = bridge_password_file is not None or layout.bridge_password_file.exists()
    if settings.bridge_host and not has_password:
        raise ProvisionError("--bridge-host needs --bridge-password-file (its password)")
    _check_text(str(layout.root), "--root")
    _check_settings(settings)
    bridge_password = None
    if bridge_password_file is not None:
        bridge_password = _read_bridge_password(bridge_password_file)
    _check_bridge_security(settings)

    owner = _owner_for(settings.run_as)
    sock = Path(settings.socket or layout.root / "run/mosquitto/pendant.sock")
    if len(os.fsencode(sock)) > SOCKET_MAX:
        raise ProvisionError(f"socket path {sock} is longer than {SOCKET_MAX} bytes: use --socket")

    for d in (layout.etc, layout.conf_dir, layout.state_dir, sock.parent):
        durable.make_dirs(d)
    _private_dir(layout.secrets)
    device_id = _device_id(layout, device_id)

    for name in remove_phones:
        layout.password_file(PHONE_PREFIX + name).unlink(missing_ok=True)
    for name in add_phones:
        # Pairing a name again pairs a new phone: the one it replaces must lose access, so
        # the password is always a new one (the reload that follows cuts the old session).
        _new_password(layout, PHONE_PREFIX + name)
    users = [*SERVICE_USERS, *_phones(layout)]
    _password_file(layout, users, owner)
    hostname = read_hostname(layout)
    reissued = _certificates(layout, device_id, settings, hostname)

    values = {
        "RUN_AS": settings.run_as,
        "CONF_DIR": str(layout.conf_dir),
        "STATE_DIR": str(layout.state_dir),
        "SOCKET": str(sock),
        "TLS_PORT": str(settings.tls_port),
        "WS_PORT": str(settings.ws_port),
        "BIND_ADDRESS": settings.bind_address,
        "DEVICE_ID": device_id,
    }
    _write(layout.conf, render((templates / "pendant.conf.in").read_text(), values), 0o644)
    acl = render_acl((templates / "acl.in").read_text(), device_id, _phones(layout))
    _write(layout.conf_dir / "acl", acl, 0o644)
    _home_broker(layout, settings, bridge_password)

    mosquitto_reads = [layout.conf_dir / "server.key", layout.conf_dir / "server.crt"]
    _chown([*mosquitto_reads, layout.state_dir], owner)
    durable.write_names_through(layout.state_dir)
    _write(layout.settings_file, json.dumps(asdict(settings), indent=2) + "\n", 0o644)
    return Provisioned(layout, device_id, settings, tuple(users), hostname, reissued)


def _bridge_security_overrides(overrides: dict[str, object]) -> dict[str, object]:
    """What this run says about TLS to the home broker replaces what an earlier run said."""
    tls = bool(overrides.get("bridge_cafile") or overrides.get("bridge_capath"))
    if tls and overrides.get("bridge_insecure"):
        raise ProvisionError(
            "--bridge-insecure and --bridge-cafile/--bridge-capath contradict each other: give one"
        )
    if tls:
        return {**overrides, "bridge_insecure": False}
    if overrides.get("bridge_host") == "":
        # --no-bridge: a bridge made later to another broker must ask for plaintext again.
        return {**overrides, "bridge_insecure": False}
    if overrides.get("bridge_insecure"):
        return {**overrides, "bridge_cafile": "", "bridge_capath": ""}
    return overrides


def _check_bridge_security(settings: Settings) -> None:
    """TLS to the home broker unless plaintext was asked for by name."""
    if not settings.bridge_host:
        return
    if not (settings.bridge_cafile or settings.bridge_capath or settings.bridge_insecure):
        raise ProvisionError(
            "--bridge-host needs --bridge-cafile CA (or --bridge-capath DIR, e.g. the system "
            "store /etc/ssl/certs) for TLS, or --bridge-insecure for plaintext"
        )
    for path, option in ((settings.bridge_cafile, "--bridge-cafile"),
                         (settings.bridge_capath, "--bridge-capath")):  # fmt: skip
        if path and not Path(path).exists():
            raise ProvisionError(f"{option} {path}: no such file or folder")
    capath = settings.bridge_capath
    if capath and not settings.bridge_cafile and capath.rstrip("/") != SYSTEM_CA_PATH:
        # The link (Python's ssl) takes one CA file, or the system store.
        raise ProvisionError(
            f"--bridge-capath {capath}: only the system store ({SYSTEM_CA_PATH}) is a folder "
            "the link takes; give the home broker's CA with --bridge-cafile FILE"
        )


def bridge_port(settings: Settings) -> int:
    """The home broker's port: as given, else the usual one for TLS or plaintext."""
    if settings.bridge_port:
        return settings.bridge_port
    return BRIDGE_PLAIN_PORT if settings.bridge_insecure else BRIDGE_TLS_PORT


def bridge_warning(settings: Settings) -> str | None:
    """One line for a plaintext home broker: what crosses the network readable."""
    if not settings.bridge_host or not settings.bridge_insecure:
        return None
    return (
        f"the link to {settings.bridge_host}:{bridge_port(settings)} is plaintext "
        "(--bridge-insecure): its password and every event cross the network readable"
    )


def _read_bridge_password(path: Path) -> str:
    """The home broker's password from the file given, checked before anything is written."""
    try:
        given = path.read_text().strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ProvisionError(f"cannot read {path}: {reason}") from None
    if not given:
        raise ProvisionError(f"{path} is empty")
    return _check_text(given, f"the bridge password (--bridge-password-file {path})")


def _home_broker(layout: Layout, settings: Settings, password: str | None) -> None:
    """The home broker, as link settings in the config's drop-in folder (not a bridge).

    The link publishes there from its durable outbox, with its expiry (`pendant.link.service`, "One
    queue"): a mosquitto bridge acknowledged at once, queued with no expiry and lost its queue
    to a power cut (issue 14). The password stays in our secrets; pendant-link.service hands it
    to the link as the credential `home-password` (`pendant.app.services.as_service`).
    """
    layout.old_bridge_conf.unlink(missing_ok=True)  # rendered by versions with the bridge
    target = layout.home_broker_config
    if not settings.bridge_host:
        target.unlink(missing_ok=True)
        return
    assert settings.bridge_user  # checked by provision()
    if password is not None:
        # Copied into our secrets, so later runs need not be told again.
        _write(layout.bridge_password_file, password + "\n", 0o600)
    else:
        stored = layout.bridge_password_file
        _check_text(
            stored.read_text().strip(),
            f"the stored home broker password ({stored}; give it again with "
            "--bridge-password-file)",
        )
    lines = [
        "# The home broker, for pendant-link. Written by `python -m pendant.setup.provision` (its",
        "# --bridge-* options, remembered in broker.json): change it there, not here. The",
        "# password is the credential home-password of pendant-link.service.",
        "[link]",
        f"host = {json.dumps(settings.bridge_host)}",
        f"port = {bridge_port(settings)}",
        f"username = {json.dumps(settings.bridge_user)}",
    ]
    if settings.bridge_insecure:
        lines.append("tls = false")
    else:
        lines.append("tls = true")
        if settings.bridge_cafile:
            lines.append(f"cafile = {json.dumps(settings.bridge_cafile)}")
        # else the system store (--bridge-capath SYSTEM_CA_PATH): the link's default
    target.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    _write(target, "\n".join(lines) + "\n", 0o644)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m pendant.setup.provision", description=__doc__.splitlines()[0]
    )
    p.add_argument("--root", type=Path, required=True, help="filesystem root ('/' on the device)")
    p.add_argument("--device-id", help="the id to use when none exists yet (default: random)")
    p.add_argument(
        "--add-phone",
        action="append",
        default=[],
        metavar="NAME",
        help="pair a phone: user phone-NAME with its own password (repeatable)",
    )
    p.add_argument("--remove-phone", action="append", default=[], metavar="NAME")
    p.add_argument("--templates", type=Path, help="folder of the *.in templates")
    p.add_argument("--tls-port", type=int)
    p.add_argument("--ws-port", type=int)
    p.add_argument("--bind-address", help="address of the phone listeners (default: all)")
    p.add_argument("--socket", help="unix socket of the services' listener")
    p.add_argument("--run-as", help="user mosquitto runs as (default mosquitto)")
    p.add_argument("--san", action="append", help="extra certificate name or IP (repeatable)")
    p.add_argument(
        "--bridge-host", help="the home broker the link publishes to (link.host, in pendant.d/)"
    )
    p.add_argument("--bridge-port", type=int)
    p.add_argument("--bridge-user")
    p.add_argument("--bridge-password-file", type=Path, help="file holding its password")
    p.add_argument(
        "--bridge-cafile", help="CA file of the home broker (TLS, the default, needs a CA)"
    )
    p.add_argument("--bridge-capath", help="the system store /etc/ssl/certs instead of a CA file")
    p.add_argument(
        "--bridge-insecure",
        action="store_true",
        default=None,
        help="plaintext to the home broker: the password and every event readable on the network",
    )
    p.add_argument("--no-bridge", action="store_true", help="forget the home broker")
    return p


def main(argv: list[str] | None = None) -> int:
    """Provisions as the command line (`argv`, default sys.argv's) says and prints what it made,
    and a warning for a plaintext home broker; returns the exit status, 2 with one line on
    stderr on an error."""
    args = _parser().parse_args(argv)
    try:
        result = provision(
            args.root,
            device_id=args.device_id,
            add_phones=tuple(args.add_phone),
            remove_phones=tuple(args.remove_phone),
            templates=args.templates,
            bridge_password_file=args.bridge_password_file,
            tls_port=args.tls_port,
            ws_port=args.ws_port,
            bind_address=args.bind_address,
            socket=args.socket,
            run_as=args.run_as,
            san=args.san,
            bridge_host="" if args.no_bridge else args.bridge_host,
            bridge_port=args.bridge_port,
            bridge_user=args.bridge_user,
            bridge_cafile=args.bridge_cafile,
            bridge_capath=args.bridge_capath,
            bridge_insecure=args.bridge_insecure,
        )
    except (PendantError, OSError) as exc:
        message = (
            exc
            if isinstance(exc, PendantError)
            else f"{exc.filename or 'file'}: {exc.strerror or exc}"
        )
        print(f"provision: error: {message}", file=sys.stderr)
        return 2
    warning = bridge_warning(result.settings)
    if warning:
        print(f"provision: warning: {warning}", file=sys.stderr)
    print(f"provisioned {result.device_id}: {result.conf} ({len(result.users)} users)")
    if result.reissued:
        print(
            f"new CA and server certificate for {result.mdns_name}: restart mosquitto and "
            "pendant-web to use them, and install the new ca.crt on every phone"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
