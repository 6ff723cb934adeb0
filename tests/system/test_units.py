"""The systemd units in services/: valid for systemd, sandboxed as DESIGN.md says, and the
users, groups and directories they name made by their sysusers.d and tmpfiles.d files.

Everything runs offline (no systemd as PID 1 is needed): `systemd-analyze verify`,
`systemd-analyze security --offline=true`, and systemd-sysusers / systemd-tmpfiles with
`--root=` on a scratch root.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from pendant.core.config import BusConfig
from tests.conftest import REPO

SERVICES = REPO / "services"
# The components on the bus, each its own user; "pairing" (root, the pairing window) and "web"
# (the companion app's web server, a dynamic user) are units of another kind.
UNITS = ["ears", "eyes", "body", "link"]
ALL_UNITS = [*UNITS, "pairing", "web", "eyes-prepare"]
NO_NETWORK = ["ears", "eyes", "body"]
DEVICE_PATH = "/opt/pendant/venv/bin/pendant"
DEVICE_PYTHON = "/opt/pendant/venv/bin/python"
# systemd-analyze security's exposure: 0 (sandboxed to the hilt) to 10 (nothing).
# Measured with systemd 252: ears 0.6, eyes 0.6, body 0.6, link 1.3, pairing 1.1 (root, but two
# capabilities and no network), web 1.3 (1.1 before it joined the bus). The bounds leave
# a little room, and no more: a unit that loses a setting of weight should fail here.
MAX_EXPOSURE = {
    "ears": 1.0,
    "eyes": 1.0,
    "body": 1.0,
    "link": 1.5,
    "pairing": 1.5,
    "web": 1.5,
    "eyes-prepare": 1.0,
}
ANALYZE_TIMEOUT_S = 60

ANALYZE = shutil.which("systemd-analyze")
pytestmark = pytest.mark.skipif(
    ANALYZE is None, reason="systemd-analyze is absent: apt install systemd"
)


# Port 80 for pendant-web: systemd binds it, the server only redirects it.
HTTP_SOCKET = SERVICES / "pendant-web-http.socket"


def unit_file(name: str) -> Path:
    return SERVICES / f"pendant-{name}.service"


def directives(path: Path) -> dict[str, list[str]]:
    """`Key` -> every value it is given, in order (systemd keys repeat; configparser cannot)."""
    out: dict[str, list[str]] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, value = line.partition("=")
        out.setdefault(key.strip(), []).append(value.strip())
    return out


def words(d: dict[str, list[str]], key: str) -> list[str]:
    """All the space-separated items given to a list-valued key."""
    return [w for value in d.get(key, []) for w in value.split()]


def analyze(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    assert ANALYZE is not None
    return subprocess.run(
        [ANALYZE, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=ANALYZE_TIMEOUT_S,
        check=False,
    )


def venv_pendant() -> Path:
    """The `pendant` console script of the environment running the tests."""
    exe = Path(sys.executable).parent / "pendant"
    if not exe.exists():
        pytest.skip(f"{exe} is absent: set up the venv (make setup)")
    return exe


HOST_UNIT_DIRS = [
    Path("/etc/systemd/system"),
    Path("/lib/systemd/system"),
    Path("/usr/lib/systemd/system"),
]


@pytest.fixture(scope="module")
def unit_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The units as the device installs them, but runnable here.

    verify checks that ExecStart='s program exists and is executable; on the device that is
    /opt/pendant/venv/bin/pendant (or .../python), which the image makes. Here the same
    program is this venv's, so only that path is replaced; every other line is verified as
    shipped.
    """
    out = tmp_path_factory.mktemp("units")
    exe = venv_pendant()
    for src in [*(unit_file(n) for n in ALL_UNITS), SERVICES / "pendant.target", HTTP_SOCKET]:
        text = src.read_text()
        assert src.suffix in (".target", ".socket") or DEVICE_PATH in text or DEVICE_PYTHON in text
        text = text.replace(DEVICE_PATH, str(exe)).replace(
            DEVICE_PYTHON, str(exe.parent / "python")
        )
        (out / src.name).write_text(text)
    # The units Require= mosquitto.service, which Debian's mosquitto package installs (and
    # `make test` installs mosquitto). Where the host has no such unit, verify would fail on
    # the host, not on our units: a stand-in next to them lets verify resolve the dependency.
    if not any((d / "mosquitto.service").exists() for d in HOST_UNIT_DIRS):
        (out / "mosquitto.service").write_text(
            "[Unit]\nDescription=stand-in for the test\n[Service]\nExecStart=/bin/true\n"
        )
    return out


@pytest.mark.parametrize(
    "unit", [*(f"pendant-{n}.service" for n in ALL_UNITS), "pendant.target", HTTP_SOCKET.name]
)
def test_systemd_analyze_verify_finds_nothing_wrong(unit_dir: Path, unit: str) -> None:
    # Non-existent users (pendant-ears, ...) are not an error for verify: User= is resolved
    # when the unit starts, and sysusers.d makes them (tested below). So nothing is filtered.
    result = analyze("verify", "--man=no", f"./{unit}", cwd=unit_dir)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", result.stderr


def test_the_image_power_unit_verifies(tmp_path: Path) -> None:
    # image/rootfs's unit: verify wants its ExecStart program to exist, so it points at the
    # script in the checkout (on the device: /usr/lib/pendant-image/power).
    image = REPO / "image" / "rootfs" / "usr" / "lib"
    script = image / "pendant-image" / "power"
    text = (image / "systemd" / "system" / "pendant-power.service").read_text()
    assert "ExecStart=/usr/lib/pendant-image/power\n" in text
    text = text.replace("/usr/lib/pendant-image/power", str(script))
    (tmp_path / "pendant-power.service").write_text(text)
    result = analyze("verify", "--man=no", "./pendant-power.service", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", result.stderr


def test_mosquitto_drop_in_verifies_and_fixes_the_socket_dir_last(tmp_path: Path) -> None:
    # Debian's mosquitto.service with the pendant's drop-in: verify reads them together.
    host = next((d / "mosquitto.service" for d in HOST_UNIT_DIRS
                 if (d / "mosquitto.service").exists()), None)  # fmt: skip
    if host is None:
        pytest.skip("no mosquitto.service on this host: `make test` installs mosquitto")
    shutil.copyfile(host, tmp_path / "mosquitto.service")
    (tmp_path / "mosquitto.service.d").mkdir()
    drop_in = SERVICES / "mosquitto.service.d" / "pendant.conf"
    shutil.copyfile(drop_in, tmp_path / "mosquitto.service.d" / "pendant.conf")
    result = analyze("verify", "--man=no", "./mosquitto.service", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    # Drop-in ExecStartPre= lines run after the unit's own, so after trixie's
    # `chown mosquitto:mosquitto /run/mosquitto`: the group is handed back last.
    pre = [ln.split("=", 1)[1] for ln in drop_in.read_text().splitlines()
           if ln.startswith("ExecStartPre=")]  # fmt: skip
    assert pre == ["+/bin/chgrp pendant-bus /run/mosquitto", "+/bin/chmod 2750 /run/mosquitto"]
    # Issue 14 item 13: the whole broker is bounded, and it restarts forever when it hits it.
    d = directives(drop_in)
    assert d["MemoryMax"] == ["64M"] and d["StartLimitIntervalSec"] == ["0"]
    assert d["Restart"] == ["on-failure"] and d["RestartSec"] == ["2s"]
    tmpfiles = (SERVICES / "tmpfiles.d" / "pendant.conf").read_text()
    assert re.search(r"^d\s+/run/mosquitto\s+2750\s+mosquitto\s+pendant-bus", tmpfiles, re.M)


@pytest.fixture(scope="module")
def exposure(unit_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, float]:
    """Each unit's overall exposure, printed and written to security.json in a tmp dir."""
    scores: dict[str, float] = {}
    for name in ALL_UNITS:
        unit = f"pendant-{name}.service"
        result = analyze("security", "--offline=true", "--no-pager", f"./{unit}", cwd=unit_dir)
        match = re.search(
            rf"Overall exposure level for {re.escape(unit)}: (\d+\.\d+)", result.stdout
        )
        assert match, result.stdout + result.stderr
        scores[name] = float(match.group(1))
    report = tmp_path_factory.mktemp("security") / "security.json"
    report.write_text(json.dumps(scores, indent=2) + "\n")
    print(f"\nsystemd-analyze security exposure (0 best, 10 worst): {scores}; see {report}")
    return scores


@pytest.mark.parametrize("name", ALL_UNITS)
def test_exposure_is_low(exposure: dict[str, float], name: str) -> None:
    assert exposure[name] <= MAX_EXPOSURE[name], exposure


@pytest.mark.parametrize("name", ["ears", "eyes"])
def test_audio_and_frames_are_never_swapped_to_the_card(name: str) -> None:
    # DESIGN's first invariant: audio and frames only in RAM (swap would put them on the SD).
    assert directives(unit_file(name)).get("MemorySwapMax") == ["0"]


@pytest.mark.parametrize("name", NO_NETWORK)
def test_processes_that_sense_have_no_network(name: str) -> None:
    d = directives(unit_file(name))
    assert d.get("PrivateNetwork") == ["yes"]
    assert d.get("IPAddressDeny") == ["any"]
    # One RestrictAddressFamilies= line, AF_UNIX alone: the bus socket is their only way out.
    assert d.get("RestrictAddressFamilies") == ["AF_UNIX"]
    assert "IPAddressAllow" not in d


# What a sensing unit may see of /run (issue 14 item 12): the bus socket's directory,
# systemd's notify socket, journald's socket; the eyes udev's database (libcamera), the body
# its own runtime directory. Everything else there (D-Bus, resolved's varlink socket, avahi)
# is a way to the network from the host's namespace.
RUN_BINDS = {"/run/mosquitto", "/run/systemd/notify", "/run/systemd/journal/socket"}
RUN_BINDS_OF = {
    "ears": set(),
    "eyes": {"/run/udev"},
    "body": {"/run/pendant-body"},
    # Root, and no network either: D-Bus in /run would let it ask systemd for anything.
    "pairing": set(),
}


def run_binds(d: dict[str, list[str]]) -> dict[str, str]:
    """Each path bound in under /run -> the key that binds it (`-`, `+` and `:dest` read)."""
    out = {}
    for key in ("BindPaths", "BindReadOnlyPaths"):
        for item in words(d, key):
            source, _, rest = item.lstrip("-+").partition(":")
            dest = rest.split(":")[0] or source
            if dest == "/run" or dest.startswith("/run/"):
                out[dest] = key
    return out


@pytest.mark.parametrize("name", [*NO_NETWORK, "pairing"])
def test_processes_that_sense_see_only_their_sockets_in_run(name: str) -> None:
    d = directives(unit_file(name))
    assert d.get("TemporaryFileSystem") == ["/run:ro"]
    binds = run_binds(d)
    assert set(binds) == RUN_BINDS | RUN_BINDS_OF[name], binds
    # Read-only, but for the body's own runtime directory (lgpio writes its pipes there).
    writable = {p for p, key in binds.items() if key == "BindPaths"}
    assert writable == ({"/run/pendant-body"} if name == "body" else set()), writable
    if name == "body":
        assert d["RuntimeDirectory"] == ["pendant-body"]
    # Nothing else reaches into /run by another key (it would fail on the empty tmpfs anyway,
    # or open a hole).
    for key in ("ReadWritePaths", "ReadOnlyPaths", "ExecPaths"):
        assert not [p for p in words(d, key) if p.lstrip("-+").startswith("/run")], key
    # The bus's directory is the one the services' socket lives in, not the socket itself.
    assert str(Path(BusConfig.model_fields["socket"].default).parent) in binds


def test_link_sees_no_audio_or_video_device() -> None:
    d = directives(unit_file("link"))
    assert d.get("PrivateDevices") == ["yes"]
    assert d.get("DevicePolicy") == ["closed"]
    assert "DeviceAllow" not in d
    groups = set(words(d, "SupplementaryGroups"))
    assert groups == {"pendant-bus"}


@pytest.mark.parametrize("name", UNITS)
def test_every_unit_is_a_watched_notify_service_of_its_own_user(name: str) -> None:
    d = directives(unit_file(name))
    assert d["Type"] == ["notify"]
    assert d["NotifyAccess"] == ["main"]
    assert d["Restart"] == ["on-failure"]
    assert len(d["WatchdogSec"]) == 1 and "RestartSec" in d
    assert d["User"] == [f"pendant-{name}"] and d["Group"] == [f"pendant-{name}"]
    assert d["ExecStart"] == [f"{DEVICE_PATH} --config /etc/pendant/pendant.toml service {name}"]
    assert "PYTHONUNBUFFERED=1" in words(d, "Environment")
    assert "mosquitto.service" in words(d, "Requires")
    assert "mosquitto.service" in words(d, "After")
    assert d["PartOf"] == ["pendant.target"]
    # The secret comes as a credential, never as a readable file path in the unit.
    expected = [f"bus-password:/etc/pendant/secrets/{name}.password"]
    if name == "link":
        # The home broker's password; `unset` (SetCredential=) when none was provisioned.
        expected.append("home-password:/etc/pendant/secrets/bridge-remote.password")
        assert d["SetCredential"] == ["home-password:unset"]
    assert d["LoadCredential"] == expected
    for key, value in {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "CapabilityBoundingSet": "",
        "UMask": "0077",
        "MemoryDenyWriteExecute": "yes",
        "ProtectProc": "invisible",
        "ProcSubset": "pid",
        "SystemCallArchitectures": "native",
        "DevicePolicy": "closed",
    }.items():
        assert d.get(key) == [value], key
    assert "MemoryMax" in d
    assert "ReadWritePaths" not in d or name == "link"


def test_only_the_link_may_write_and_only_its_outbox() -> None:
    assert directives(unit_file("link"))["ReadWritePaths"] == ["/var/lib/pendant"]
    # The ears' one writable place: where they remember a mute across restarts.
    assert directives(unit_file("ears"))["StateDirectory"] == ["pendant-ears"]
    for name in ("eyes", "body", "link"):
        assert "StateDirectory" not in directives(unit_file(name)), name
        assert "CacheDirectory" not in directives(unit_file(name)), name


def test_the_eyes_models_are_prepared_by_a_step_that_holds_no_frame() -> None:
    """The eyes hold frames and may write nowhere, so the copies of their models prepared for
    the board are made by a oneshot of the same user with no camera, bus or network, and only
    read by the eyes."""
    d = directives(unit_file("eyes-prepare"))
    assert d["Type"] == ["oneshot"] and d["User"] == ["pendant-eyes"]
    # "-": once a boot even when it fails, not again at every start of the eyes (Wants=).
    assert d["ExecStart"] == [f"-{DEVICE_PATH} --config /etc/pendant/pendant.toml prepare"]
    assert d["CacheDirectory"] == ["pendant-eyes"]
    assert d["PrivateDevices"] == ["yes"] and d["PrivateNetwork"] == ["yes"]
    assert d["RestrictAddressFamilies"] == ["AF_UNIX"] and d["IPAddressDeny"] == ["any"]
    assert not {"DeviceAllow", "LoadCredential", "SupplementaryGroups", "ReadWritePaths"} & set(d)
    assert d.get("TemporaryFileSystem") == ["/run:ro"]
    assert run_binds(d) == {"/run/systemd/journal/socket": "BindReadOnlyPaths"}
    assert "MemoryMax" in d and d["MemorySwapMax"] == ["0"]
    eyes = directives(unit_file("eyes"))
    assert "CACHE_DIRECTORY=/var/cache/pendant-eyes" in words(eyes, "Environment")
    assert "pendant-eyes-prepare.service" in words(eyes, "Wants")
    assert "pendant-eyes-prepare.service" in words(eyes, "After")
    # Wanted, not required: if it fails, the eyes start and load their models the slow way.
    assert "pendant-eyes-prepare.service" not in words(eyes, "Requires")


DEVICE_CLASSES = {
    "ears": {"char-alsa"},
    "eyes": {"char-video4linux", "char-media", "char-dma_heap", "/dev/hailo0", "/dev/apex_0"},
    "body": {"char-gpiochip", "char-i2c"},
}
GROUPS = {
    "ears": {"audio", "pendant-bus"},
    "eyes": {"video", "pendant-bus"},
    "body": {"gpio", "i2c", "pendant-bus"},
    "link": {"pendant-bus"},
}


@pytest.mark.parametrize("name", NO_NETWORK)
def test_each_sensing_unit_reaches_only_its_own_devices(name: str) -> None:
    d = directives(unit_file(name))
    allowed = {value.split()[0] for value in d.get("DeviceAllow", [])}
    assert allowed == DEVICE_CLASSES[name]
    assert set(words(d, "SupplementaryGroups")) == GROUPS[name]


def test_the_target_groups_the_six_services() -> None:
    d = directives(SERVICES / "pendant.target")
    services = [n for n in ALL_UNITS if n != "eyes-prepare"]  # the eyes want that one
    assert set(words(d, "Wants")) == {f"pendant-{n}.service" for n in services}


def test_the_web_server_reaches_the_bus_only_as_web_and_nothing_else() -> None:
    d = directives(unit_file("web"))
    assert d["Type"] == ["notify"]  # READY=1 once it listens, from pendant.core.supervise
    # Issue 14 item 9: watched, and pinged from the accept loop's progress (pendant.web.watchdog).
    assert d["NotifyAccess"] == ["main"] and len(d["WatchdogSec"]) == 1
    assert d["ExecStart"] == [
        f"{DEVICE_PYTHON} -m pendant.web --cert %d/server.crt --key %d/server.key "
        "--ca %d/ca.crt --port 8443 --bus-socket /run/mosquitto/pendant.sock "
        "--bus-password-file %d/bus-password"
    ]
    assert d["PartOf"] == ["pendant.target"]
    # Issue 14 item 6: it restarts forever; a start limit would leave it down until a reboot.
    assert d["Restart"] == ["on-failure"] and d["StartLimitIntervalSec"] == ["0"]
    assert "StartLimitBurst" not in d
    # A throwaway user, in one group: pendant-bus, the way to the bus socket.
    assert d["DynamicUser"] == ["yes"]
    assert not {"User", "Group"} & set(d)
    assert words(d, "SupplementaryGroups") == ["pendant-bus"]
    # The app is served with or without the bus: it must not stop with mosquitto.
    assert "mosquitto.service" not in words(d, "Requires")
    # The broker's certificate and key, and its own bus password, as credentials.
    assert d["LoadCredential"] == [
        "server.crt:/etc/mosquitto/pendant/server.crt",
        "server.key:/etc/mosquitto/pendant/server.key",
        "ca.crt:/etc/mosquitto/pendant/ca.crt",
        "bus-password:/etc/pendant/secrets/web.password",
    ]
    # Port 80 comes from systemd, so the process needs no capability for it (below).
    assert d["Sockets"] == [HTTP_SOCKET.name]
    assert d["RestrictAddressFamilies"] == ["AF_UNIX AF_INET AF_INET6"]
    for key, value in {
        "PrivateDevices": "yes",
        "DevicePolicy": "closed",
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "CapabilityBoundingSet": "",
        "AmbientCapabilities": "",
        "MemoryMax": "48M",
        "UMask": "0077",
        "MemoryDenyWriteExecute": "yes",
        "SystemCallArchitectures": "native",
    }.items():
        assert d.get(key) == [value], key
    assert not {"ReadWritePaths", "StateDirectory", "DeviceAllow"} & set(d)


def test_port_80_is_bound_by_systemd_and_handed_to_the_web_server() -> None:
    """Item 4 of issue 15: http:// on port 80 reaches pendant-web, which only redirects it;
    systemd binds the privileged port, so the server's empty capability set stays empty."""
    d = directives(HTTP_SOCKET)
    assert d["ListenStream"] == ["80"]
    # The name the server looks for among the sockets it is passed (pendant.web.redirect).
    from pendant.web.redirect import FD_NAME

    assert d["FileDescriptorName"] == [FD_NAME]
    assert d["Service"] == ["pendant-web.service"]
    assert d["BindIPv6Only"] == ["both"]
    assert "Accept" not in d  # one server for every connection, not a process each
    assert d["PartOf"] == ["pendant.target"]
    packaged = tomllib.loads((REPO / "packaging/pendant.toml").read_text())["files"]
    assert any("services/pendant-*.socket" in entry["src"] for entry in packaged)


def test_the_pairing_service_is_root_with_two_capabilities_and_no_network() -> None:
    d = directives(unit_file("pairing"))
    assert d["Type"] == ["notify"] and d["NotifyAccess"] == ["main"]
    assert len(d["WatchdogSec"]) == 1 and d["Restart"] == ["on-failure"]
    assert d["ExecStart"] == [f"{DEVICE_PATH} --config /etc/pendant/pendant.toml service pairing"]
    assert "mosquitto.service" in words(d, "Requires") and "mosquitto.service" in words(d, "After")
    assert d["PartOf"] == ["pendant.target"]
    # Root (it writes the broker's files and signals it), in the bus socket's group.
    assert not {"User", "DynamicUser"} & set(d)
    assert words(d, "SupplementaryGroups") == ["pendant-bus"]
    assert d["LoadCredential"] == ["bus-password:/etc/pendant/secrets/pairing.password"]
    # Chown the new password file to mosquitto, SIGHUP mosquitto: nothing else.
    assert sorted(words(d, "CapabilityBoundingSet")) == ["CAP_CHOWN", "CAP_KILL"]
    assert d["AmbientCapabilities"] == [""]
    # No network, like the sensing services.
    assert d["PrivateNetwork"] == ["yes"]
    assert d["IPAddressDeny"] == ["any"]
    assert d["RestrictAddressFamilies"] == ["AF_UNIX"]
    # Writes only where provisioning writes (/var/lib/mosquitto is already mosquitto's, and
    # provisioning leaves a file of the right owner alone).
    assert d["ProtectSystem"] == ["strict"]
    assert words(d, "ReadWritePaths") == ["/etc/pendant", "/etc/mosquitto/pendant"]
    for key, value in {
        "PrivateDevices": "yes",
        "DevicePolicy": "closed",
        "NoNewPrivileges": "yes",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "UMask": "0077",
        "MemoryDenyWriteExecute": "yes",
        "ProtectProc": "invisible",
        "ProcSubset": "pid",
        "SystemCallArchitectures": "native",
    }.items():
        assert d.get(key) == [value], key
    assert "MemoryMax" in d
    assert not {"DeviceAllow", "StateDirectory", "IPAddressAllow"} & set(d)


# --- sysusers.d and tmpfiles.d, applied to a scratch root ----------------------------------


def run_tool(tool: str, *args: str) -> subprocess.CompletedProcess[str]:
    exe = shutil.which(tool)
    if exe is None:
        pytest.skip(f"{tool} is absent: apt install systemd")
    return subprocess.run(
        [exe, *args], capture_output=True, text=True, timeout=ANALYZE_TIMEOUT_S, check=False
    )


@pytest.fixture
def scratch_root(tmp_path: Path) -> Path:
    """A root with root, audio, video and mosquitto, as a Debian with the mosquitto package
    has them (no gpio, i2c)."""
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "passwd").write_text(
        "root:x:0:0:root:/root:/bin/sh\nmosquitto:x:101:101::/var/lib/mosquitto:/usr/sbin/nologin\n"
    )
    (etc / "group").write_text("root:x:0:\naudio:x:29:\nvideo:x:44:\nmosquitto:x:101:\n")
    result = run_tool(
        "systemd-sysusers", f"--root={tmp_path}", str(SERVICES / "sysusers.d" / "pendant.conf")
    )
    assert result.returncode == 0, result.stderr
    return tmp_path


def test_sysusers_makes_one_user_per_service_in_only_the_groups_it_needs(
    scratch_root: Path,
) -> None:
    users = {
        line.split(":")[0]: line.split(":")
        for line in (scratch_root / "etc" / "passwd").read_text().splitlines()
    }
    members: dict[str, set[str]] = {}
    for line in (scratch_root / "etc" / "group").read_text().splitlines():
        group, _, _, listed = line.split(":")
        for user in filter(None, listed.split(",")):
            members.setdefault(user, set()).add(group)
    for name in UNITS:
        user = f"pendant-{name}"
        assert user in users
        assert users[user][6] == "/usr/sbin/nologin"
        # Supplementary groups from /etc/group and from the unit agree, and are the same set.
        assert members.get(user, set()) == GROUPS[name], (user, members.get(user))


def test_tmpfiles_gives_the_outbox_to_the_link_alone(scratch_root: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("systemd-tmpfiles needs root to chown in the scratch root")
    result = run_tool(
        "systemd-tmpfiles",
        "--create",
        f"--root={scratch_root}",
        str(SERVICES / "tmpfiles.d" / "pendant.conf"),
    )
    assert result.returncode == 0, result.stderr
    link_uid = next(
        int(line.split(":")[2])
        for line in (scratch_root / "etc" / "passwd").read_text().splitlines()
        if line.startswith("pendant-link:")
    )
    outbox = (scratch_root / "var" / "lib" / "pendant").stat()
    assert (outbox.st_uid, outbox.st_mode & 0o7777) == (link_uid, 0o700)
    secrets = (scratch_root / "etc" / "pendant" / "secrets").stat()
    assert (secrets.st_uid, secrets.st_mode & 0o7777) == (0, 0o700)
    # The bus socket's directory: only mosquitto and the pendant-bus group get in, and the
    # setgid bit hands that group to the socket mosquitto makes there.
    bus_gid = next(
        int(line.split(":")[2])
        for line in (scratch_root / "etc" / "group").read_text().splitlines()
        if line.startswith("pendant-bus:")
    )
    run = (scratch_root / "run" / "mosquitto").stat()
    assert (run.st_uid, run.st_gid, run.st_mode & 0o7777) == (101, bus_gid, 0o2750)
