"""Pairing a real phone (issue 15, item 6): the names the certificate holds, `pendant pair
--list`, and the reload `pendant pair` does itself.

The certificate must name what the phone types, `<host name>.local` (the image answers mDNS
for it): checked in the certificate `pendant.setup.provision` makes (`openssl x509 -text`) and in a
TLS handshake with a real mosquitto, verified as a phone that trusts the device's CA verifies
it. The reload is checked through the command `pendant pair` would run (`Reloader.run`,
injected: no systemctl runs here), which the test carries out as systemd's reload does (SIGHUP
to a real mosquitto), and the new phone then logs in.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import ssl
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest

from pendant.app.cli import main as cli_main
from pendant.core.wire import WEB_PORT
from pendant.pairing import accounts as pairing
from pendant.setup.provision import Provisioned, ProvisionError
from tests.support.mosquitto_support import (
    DEVICE,
    TIMEOUT_S,
    _accepted_eventually,
    _provision_for_test,
    endpoint,
    running,
)

pytestmark = [
    pytest.mark.skipif(shutil.which("openssl") is None, reason="apt install openssl"),
    pytest.mark.skipif(
        shutil.which("mosquitto_passwd") is None and not Path("/usr/bin/mosquitto_passwd").exists(),
        reason="mosquitto is not installed (apt install mosquitto)",
    ),
]


def san(cert: Path) -> set[str]:
    """The subjectAltName entries `openssl x509 -text` prints."""
    text = subprocess.run(
        ["openssl", "x509", "-in", str(cert), "-noout", "-text"],
        capture_output=True, text=True, timeout=TIMEOUT_S, check=True,
    ).stdout  # fmt: skip
    line = text.split("X509v3 Subject Alternative Name:", 1)[1].strip().splitlines()[0]
    return {item.strip() for item in line.split(",")}


def with_hostname(root: Path, name: str) -> Path:
    (root / "etc").mkdir(parents=True, exist_ok=True)
    (root / "etc/hostname").write_text(f"# set by the test\n{name}\n")
    return root


# --- the certificate's names -----------------------------------------------------------------


def test_the_certificate_names_the_host_name_and_its_mdns_name(tmp_path: Path) -> None:
    root = with_hostname(tmp_path / "root", "kitchen-pendant")
    prov = _provision_for_test(root, san=["192.168.1.20", "pendant.home.arpa"])
    assert san(prov.layout.server_cert) == {
        f"DNS:{DEVICE}", f"DNS:{DEVICE}.local",
        "DNS:kitchen-pendant", "DNS:kitchen-pendant.local",
        "DNS:localhost", "IP Address:127.0.0.1",
        "IP Address:192.168.1.20", "DNS:pendant.home.arpa",
    }  # fmt: skip
    assert prov.mdns_name == "kitchen-pendant.local"
    # The pairing link's default host is that name, which the certificate holds.
    link = pairing.pair(root, "anna")
    assert link.host == "kitchen-pendant.local"
    assert link.url.startswith(f"https://kitchen-pendant.local:{WEB_PORT}/#u=phone-anna&")


def test_a_root_without_a_host_name_keeps_the_names_it_had(tmp_path: Path) -> None:
    prov = _provision_for_test(tmp_path / "root")
    assert san(prov.layout.server_cert) == {
        f"DNS:{DEVICE}", f"DNS:{DEVICE}.local", "DNS:localhost", "IP Address:127.0.0.1",
    }  # fmt: skip
    ca = prov.ca_cert.read_bytes()
    again = _provision_for_test(tmp_path / "root")
    assert not again.reissued and again.ca_cert.read_bytes() == ca


def test_a_new_extra_name_reissues_the_certificate(tmp_path: Path) -> None:
    prov = _provision_for_test(tmp_path / "root")
    ca = prov.ca_cert.read_bytes()
    again = _provision_for_test(tmp_path / "root", san=["10.0.0.7"])
    assert again.reissued and again.ca_cert.read_bytes() != ca
    assert "IP Address:10.0.0.7" in san(again.layout.server_cert)
    # Remembered: the next run (a boot) neither drops it nor mints again.
    third = _provision_for_test(tmp_path / "root")
    assert not third.reissued and "IP Address:10.0.0.7" in san(third.layout.server_cert)


@pytest.mark.parametrize("bad", ["a,DNS:evil.example", "pendant local", "evil/x"])
def test_an_extra_name_that_is_not_one_is_refused(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ProvisionError, match="--san"):
        _provision_for_test(tmp_path / "root", san=[bad])
    assert not (tmp_path / "root/etc/mosquitto/pendant/server.crt").exists()


def test_a_phone_that_trusts_the_ca_reaches_the_broker_by_its_mdns_name(
    tmp_path: Path,
) -> None:
    """What a phone's browser checks on `wss://kitchen-pendant.local:8884`: the chain up to the
    device's CA, and the name it typed. Another name fails the same check."""
    prov = _provision_for_test(with_hostname(tmp_path / "root", "kitchen-pendant"))
    context = ssl.create_default_context(cafile=str(prov.ca_cert))
    with running(prov):
        port = prov.settings.ws_port
        with (
            socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT_S) as raw,
            context.wrap_socket(raw, server_hostname="kitchen-pendant.local") as tls,
        ):
            assert tls.version() in ("TLSv1.2", "TLSv1.3")
        with (
            socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT_S) as raw,
            pytest.raises(ssl.SSLCertVerificationError, match="mismatch"),
        ):
            context.wrap_socket(raw, server_hostname="pendant.local")


# --- pendant pair --list ---------------------------------------------------------------------


def test_pair_list_names_the_phones_and_when_not_their_passwords(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "root"
    assert cli_main(["pair", "--list", "--root", str(root)]) == 0
    assert capsys.readouterr().out == "no phone is paired\n"
    prov = _provision_for_test(root, add_phones=("anna", "kitchen-tablet"))
    # 2025-03-01 14:03 UTC; and a pendant that paired before its clock was set.
    os.utime(prov.password_file("phone-anna"), (1_740_837_780, 1_740_837_780))
    os.utime(prov.password_file("phone-kitchen-tablet"), (86_400, 86_400))
    assert cli_main(["pair", "--list", "--root", str(root)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines() == [
        "anna            paired 2025-03-01 14:03 UTC",
        "kitchen-tablet  paired (time unknown: the clock was not set)",
    ]
    for user in ("phone-anna", "phone-kitchen-tablet", "link"):
        assert prov.password(user) not in out
    # `python -m pendant.pairing.accounts list` says the same.
    assert pairing.main(["list", "--root", str(root)]) == 0
    assert capsys.readouterr().out == out


def test_a_list_the_user_cannot_read_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not "no phone is paired" when the secrets are root's alone (the tests run as root, who
    may read anything: the check is made to fail as it does for a user)."""
    root = tmp_path / "root"
    _provision_for_test(root, add_phones=("anna",))
    monkeypatch.setattr(pairing.os, "access", lambda *_: False)
    assert pairing.main(["pair", "--list", "--root", str(root)]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "run it as root (sudo)" in captured.err


def test_pair_needs_a_name_unless_it_lists(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exit_:
        pairing.main(["pair", "--root", str(tmp_path)])
    assert exit_.value.code == 2


# --- the reload ------------------------------------------------------------------------------


class Systemd:
    """Stands in for `systemctl`: records each command; `reload mosquitto.service` does what
    Debian's unit does (SIGHUP to the broker), unless told to fail."""

    def __init__(self, broker_pid: int | None = None, fail: str | None = None) -> None:
        self.broker_pid = broker_pid
        self.fail = fail
        self.commands: list[tuple[str, ...]] = []

    def __call__(self, command: Sequence[str]) -> subprocess.CompletedProcess[str]:
        self.commands.append(tuple(command))
        if self.fail is not None:
            return subprocess.CompletedProcess(list(command), 1, "", self.fail + "\n")
        if tuple(command) == ("systemctl", "reload", "mosquitto.service") and self.broker_pid:
            os.kill(self.broker_pid, signal.SIGHUP)
        return subprocess.CompletedProcess(list(command), 0, "", "")


def as_root_on(root: Path, systemd: Systemd) -> pairing.Reloader:
    """How `sudo pendant pair` finds the device: root, systemd as PID 1, `root` its own."""
    return pairing.Reloader(is_root=True, systemd=True, run=systemd, device_root=root)


def test_pair_reloads_mosquitto_itself_and_the_phone_logs_in(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "root"
    prov: Provisioned = _provision_for_test(root)
    with running(prov) as broker:
        systemd = Systemd(broker.pid)
        argv = ["pair", "--root", str(root), "--name", "anna", "--no-qr"]
        assert pairing.main(argv, reloader=as_root_on(root, systemd)) == 0
        out = capsys.readouterr().out
        assert systemd.commands == [("systemctl", "reload", "mosquitto.service")]
        assert "mosquitto reloaded: the phone can log in" in out
        assert "reload mosquitto: systemctl" not in out  # no chore left for the wearer
        password = prov.password("phone-anna")
        assert _accepted_eventually(endpoint(prov, "tls"), "phone-anna", password, True)
        assert "/trust.html" in out and "Device CA SHA-256: " in out

        # Unpairing reloads too, and the phone is refused from then on.
        argv = ["revoke", "--root", str(root), "--name", "anna"]
        assert pairing.main(argv, reloader=as_root_on(root, systemd)) == 0
        assert "mosquitto reloaded: the phone is cut off" in capsys.readouterr().out
        assert len(systemd.commands) == 2
        assert _accepted_eventually(endpoint(prov, "tls"), "phone-anna", password, False)


@pytest.mark.parametrize(
    ("is_root", "systemd", "same_root", "says"),
    [
        (False, True, True, "not root): run `sudo systemctl reload mosquitto.service`"),
        (True, False, True, "no systemd here): send it SIGHUP"),
        (True, True, False, "is not this system's root"),
    ],
)
def test_without_root_or_systemd_pair_says_what_to_run(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    is_root: bool,
    systemd: bool,
    same_root: bool,
    says: str,
) -> None:
    root = tmp_path / "root"
    _provision_for_test(root)
    recorder = Systemd()
    reloader = pairing.Reloader(
        is_root, systemd, run=recorder, device_root=root if same_root else Path("/")
    )
    argv = ["pair", "--root", str(root), "--name", "anna", "--no-qr"]
    assert pairing.main(argv, reloader=reloader) == 0
    assert recorder.commands == []
    out = capsys.readouterr().out
    assert "mosquitto not reloaded (" in out and says in out


def test_a_failed_reload_is_one_line_and_says_the_account_waits(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "root"
    _provision_for_test(root)
    systemd = Systemd(fail="Job for mosquitto.service failed.")
    argv = ["pair", "--root", str(root), "--name", "anna", "--no-qr"]
    assert pairing.main(argv, reloader=as_root_on(root, systemd)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "pairing: error: `systemctl reload mosquitto.service` failed: Job for "
        "mosquitto.service failed.; run it once mosquitto is up"
    ]


def test_the_cli_passes_pair_through(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`pendant pair` is `python -m pendant.pairing.accounts pair` (its options after the verb);
    here,
    as a user on a scratch root, it says how to reload rather than reloading."""
    root = tmp_path / "root"
    _provision_for_test(root)
    assert cli_main(["pair", "--root", str(root), "--name", "anna", "--no-qr"]) == 0
    out = capsys.readouterr().out
    assert "Pairing link for phone-anna" in out and "mosquitto not reloaded" in out
