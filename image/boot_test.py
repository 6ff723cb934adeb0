"""Boot the pendant image in QEMU with simulated hardware and record what its console says.

    python image/boot_test.py [--board zero2w] [--machine virt|raspi3b] [--timeout 1500]

A copy of the image gets, on its boot partition (mtools, no mounting): a test pendant.toml
(the demo home, audio from a WAV file, mock GPIO, camera from image files: whatever the
package's config knows; everything else from the device's config it is merged over), a
setup.toml and authorized_keys (to prove first boot applies them and removes the
secrets), and pendant-test/{prepare,hook}, which the test image's pendant-test-hook.service
runs only when the kernel command line says pendant.test=1 (a release image has no such unit:
the test boots pendant-BOARD-test.img, made by `image/build.py BOARD --test`). The hook
subscribes to the pendant's broker over TLS as a paired phone, prints what it receives and the
units' states, kills the ears to see systemd restart them, and powers off.

QEMU gets no network device (-nic none). `-M virt` boots the kernel and initrd taken from the
image build (-kernel/-initrd), the disk on virtio; `-M raspi3b` boots the same kernel with the
Pi 3 / Zero 2 W device tree, the disk as its SD card (a power-of-two size).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import selectors
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
import devicetree  # noqa: E402 (image/ is scripts, not a package)
from build import fragments, image_stem, load_board  # noqa: E402

OUT = HERE / "out"
BOOT_OFFSET = 8192 * 512
TEST_SIZE = 4 << 30  # the copy is grown so first boot has a data partition to grow
MARK = "PENDANT-TEST:"
SUB = "PENDANT-SUB:"
COMMAND = "turn on the bed light"
# The simulated camera's pictures (the package's demo images, named outright).
EYES_IMAGES = sorted((REPO / "device/pendant/data/eyes").glob("*.png"))[:1]

PREPARE = """#!/bin/sh
# Before the pendant's services: the test audio where the ears (not root) can read it.
mkdir -p /run/pendant-test
cp /boot/firmware/pendant-test/command.wav /boot/firmware/pendant-test/*.png /run/pendant-test/
chmod 0755 /run/pendant-test
chmod 0644 /run/pendant-test/*
"""


def set_memory_max(limits: dict[str, str]) -> str:
    """Shell lines that set each service's MemoryMax= before it starts: a runtime drop-in
    (`systemctl set-property --runtime`), which sorts after the board's 40-memory.conf."""
    return "".join(
        f"systemctl set-property --runtime pendant-{name}.service MemoryMax={value}\n"
        for name, value in limits.items()
    )


def memory_max_override(board: dict) -> dict[str, str]:
    """IMAGE_MEMORY_MAX=off: every service without a limit, to measure what they take.
    IMAGE_MEMORY_MAX=board: the board file's [memory] as it is now, to try new values on an
    image built before them (the test holds the services to the file's values either way).
    Unset: the image's own drop-ins, nothing overridden."""
    mode = os.environ.get("IMAGE_MEMORY_MAX", "")
    services = ("ears", "eyes", "body", "link", "web", "pairing")
    if mode == "off":
        return dict.fromkeys(services, "infinity")
    if mode == "board":
        return {k: v for k, v in board.get("memory", {}).items() if k != "budget"}
    if mode:
        raise ValueError(f"IMAGE_MEMORY_MAX={mode}: write off, board, or leave it unset")
    return {}


HOOK = r"""#!/bin/sh
say() { echo "PENDANT-TEST: $*"; }
state() { systemctl show -p ActiveState -p SubState -p NRestarts --value "$1" | tr '\n' ' '; }
say hook started $(cut -d' ' -f1 /proc/uptime)
say root $(findmnt -no OPTIONS / | cut -d, -f1) data $(df -m --output=size /data | tail -1)M
logs() {  # the journal of units, on the console
  for unit in "$@"; do
    journalctl -b -u "$unit" -o cat --no-pager | tail -n 25 | sed -u "s/^/PENDANT-LOG: $unit: /"
  done
}
logs pendant-firstboot.service pendant-setup.service
findmnt -rn -o TARGET,OPTIONS | grep -E "^/(etc|var|data)" | sed "s/^/PENDANT-TEST: mount /"
systemctl --failed --plain --no-legend | sed "s/^/PENDANT-TEST: failed at start: /"
# As a wearer pairs over SSH: `pendant pair` as root reloads mosquitto itself (it says so).
/opt/pendant/venv/bin/pendant pair --name boottest --no-qr 2>&1 \
  | grep -q "^mosquitto reloaded" && say phone paired
# The name the phone opens, <host name>.local (setup.toml's "pendant-test", applied on this
# first boot), is in the certificate pendant-setup issued after it.
NAME=$(cat /proc/sys/kernel/hostname)
openssl x509 -noout -ext subjectAltName -in /etc/mosquitto/pendant/server.crt \
  | grep -q "DNS:$NAME.local" && say certificate names "$NAME.local"
ID=$(cat /etc/pendant/device_id)
say device $ID
# The venv is the lock the .deb was built from, and journald/sd_notify come from Debian's
# python3-systemd (the venv sees the system's site packages).
/opt/pendant/venv/bin/pendant --version --verbose \
  | sed -n 's/^lock  *sha256 \([0-9a-f]*\).*/PENDANT-TEST: lock \1/p'
/opt/pendant/venv/bin/python -c "import systemd.daemon, systemd.journal" \
  && say python3-systemd importable
[ "$(command -v pendant)" = /usr/bin/pendant ] && pendant --version >/dev/null \
  && say pendant on PATH
# The battery's I2C character device: i2c-dev, loaded by the package's modules-load.d.
[ -d /sys/module/i2c_dev ] && say module i2c_dev loaded
# mosquitto's saves are renamed in a directory whose entries are written through (chattr +D).
lsattr -d /var/lib/mosquitto | cut -d' ' -f1 | grep -q D && say mosquitto state dirsync
# The I2S mic's ALSA card, when the board's tree describes one (none on -M virt).
sed -n 's/^ *[0-9]* \[\([^ ]*\) *\]: \(.*\)/\1 \2/p' /proc/asound/cards 2>/dev/null \
  | sed "s/^/PENDANT-TEST: sound card /"
# The camera (issue 17). Debian's libcamera, seen from the pendant's venv (system site
# packages): its rpi/vc4 pipeline handler and IPA load, and the cameras it finds; the kernel's
# drivers for the CSI receiver, the sensor and the ISP; the sensor in the device tree (and, on
# -M raspi3b, its I2C client); picamera2; and the eyes' picamera2 backend's report.
# Only on an image that carries libcamera's Pi pipeline (the zero2w-camera board).
camera_report() {
  CAMLOG=/run/pendant-test/libcamera.log
  LIBCAMERA_LOG_LEVELS='*:DEBUG' /opt/pendant/venv/bin/python -c 'import libcamera
print("PENDANT-TEST: camera libcamera cameras", len(libcamera.CameraManager.singleton().cameras))
  ' 2>$CAMLOG || say camera libcamera failed: $(grep -v "^\[" $CAMLOG | tail -n 1)
  grep -q "Found registered pipeline handler 'rpi/vc4'" $CAMLOG \
    && say camera pipeline rpi/vc4 registered
  grep -q "Loaded IPA module '.*ipa_rpi_vc4.so'" $CAMLOG && say camera ipa rpi/vc4 loaded
  [ -f /usr/share/libcamera/ipa/rpi/vc4/imx219.json ] && say camera tuning imx219 present
  say camera media devices $(ls /dev/media* 2>/dev/null | wc -l)
  for m in bcm2835-unicam imx219 bcm2835-isp; do
    if modinfo -n $m >/dev/null 2>&1; then say camera module $m present
    else say camera module $m missing; fi
  done
  CAMNODE=/proc/device-tree/pendant-i2c0-mux/i2c@1/camera@10
  [ -d $CAMNODE ] && say camera sensor in the tree $(tr -d '\0' < $CAMNODE/compatible)
  for d in /sys/bus/i2c/devices/*-0010; do
    [ -e "$d" ] || continue
    drv=none; [ -e "$d/driver" ] && drv=$(basename "$(readlink "$d/driver")")
    say camera i2c client $(basename "$d") $(cat "$d/name") driver $drv
  done
  /opt/pendant/venv/bin/python -c 'import picamera2' 2>/run/pendant-test/picamera2.log \
    && say camera picamera2 importable \
    || say camera picamera2 not importable: $(tail -n 1 /run/pendant-test/picamera2.log)
  # What the eyes would say with eyes.camera = "picamera2": one line, or a traceback's many.
  /opt/pendant/venv/bin/python -c 'from pendant.core.backends import CAMERAS
from pendant.core.errors import PendantError
try:
    CAMERAS.load("picamera2")(640, 480).capture()
except PendantError as exc:
    print(type(exc).__name__ + ": " + str(exc))
  ' >/run/pendant-test/eyes-camera.log 2>&1
  say camera eyes report lines $(wc -l < /run/pendant-test/eyes-camera.log): \
    $(head -c 300 /run/pendant-test/eyes-camera.log)
}
[ -d /usr/share/libcamera/ipa/rpi/vc4 ] && camera_report
for i in $(seq 1 60); do ss -ltnH 'sport = :8883' | grep -q 8883 && break; sleep 1; done
ss -ltnH 'sport = :8883' | grep -q 8883 && say mosquitto tls listening 8883
LOG=/run/pendant-test/sub.log
: > $LOG
( while true; do
    mosquitto_sub -h localhost -p 8883 --cafile /etc/mosquitto/pendant/ca.crt -i boottest \
      -u phone-boottest -P "$(cat /etc/pendant/secrets/phone-boottest.password)" \
      -t "pendant/$ID/availability" -t "pendant/$ID/intent/#" -t "pendant/$ID/status" \
      -t "pendant/$ID/scene" \
      -v >> $LOG 2>&1
    sleep 1
  done ) &
# The shell's own read and printf: GNU sed's regex for `.\{0,600\}` took 77 MB in the guest (seen
# in its OOM report under mem=512M), memory the services then lacked; and mawk reads a pipe in
# blocks, so with `tail -f` it held the lines back (no subscriber line in a raspi3b boot).
tail -f $LOG | while IFS= read -r line; do printf 'PENDANT-SUB: %.600s\n' "$line"; done &
wait_for() {  # wait_for SECONDS COMMAND...: until the command succeeds
  t=$1; shift
  while [ $t -gt 0 ]; do "$@" && return 0; sleep 2; t=$((t - 2)); done
  return 1
}
progress() {  # a line a minute while waiting, so a slow or stuck boot shows which (major
  # faults climbing fast are memory thrash: pages read back from the card as soon as dropped)
  while true; do
    sleep 60
    say waiting $(cut -d' ' -f1 /proc/uptime) load $(cut -d' ' -f1-3 /proc/loadavg) \
      memavail $(awk '/MemAvailable/ {print int($2/1024) "M"}' /proc/meminfo) \
      majfaults $(awk '/^pgmajfault / {print $2}' /proc/vmstat) \
      $(for u in ears link body eyes web pairing; do printf "%s=%s " $u "$(state pendant-$u)"; done)
    for u in ears link body eyes web pairing; do  # why one that is not up yet is not
      systemctl is-active -q pendant-$u && continue
      say pendant-$u last result $(systemctl show -p Result -p ExecMainStatus --value pendant-$u)
      journalctl -b -u pendant-$u -o cat -n 12 --no-pager | grep -v "^pendant-$u.service: " \
        | tail -n 4 | sed -u "s/^/PENDANT-LOG: pendant-$u: /"
    done
  done
}
progress &
PROGRESS=$!
# The kernel's own line every 30 s, through neither journald nor systemd (the hook's lines go
# through both): if the hook falls silent while these go on, the guest runs and the path to the
# console stalled; if they stop too, the whole guest did. Shell builtins but sleep: no page of
# awk or systemctl to read back under memory pressure.
( while sleep 30; do read -r up _ < /proc/uptime; echo "pendant-test: alive $up" > /dev/kmsg
  done ) &
HEARTBEAT=$!
wait_for 900 systemctl is-active -q pendant-ears.service || logs pendant-ears.service
say unit pendant-ears $(state pendant-ears.service) $(cut -d' ' -f1 /proc/uptime)
say memory total $(awk '/MemTotal/ {print int($2/1024) "M"}' /proc/meminfo)
for u in ears eyes body link web pairing; do  # the limits systemd applies (the board's drop-ins)
  say memorymax pendant-$u $(systemctl show -p MemoryMax --value pendant-$u.service)
done
# What the ears' sandbox leaves of /run (TemporaryFileSystem=/run:ro and its binds), seen
# from inside their own mount namespace: the host's other sockets are ways to make DNS queries.
EARS=$(systemctl show -p MainPID --value pendant-ears.service)
for s in /run/dbus/system_bus_socket /run/systemd/resolve/io.systemd.Resolve \
  /run/systemd/private /run/avahi-daemon/socket; do
  [ -e "$s" ] || continue
  if nsenter -t "$EARS" -m test -e "$s"; then say sandbox ears see "$s"
  else say sandbox ears cannot see "$s"; fi
done
nsenter -t "$EARS" -m test -S /run/mosquitto/pendant.sock && say sandbox ears see the bus
wait_for 600 grep -q "availability online" $LOG && say availability online seen
wait_for 900 grep -q "/intent/" $LOG && say intent seen $(cut -d' ' -f1 /proc/uptime)
memory() {  # figures, not checks: each service's PSS/USS/RSS (its process tree), its cgroup's
  /opt/pendant/venv/bin/python -m pendant.core.procmem 2>&1 | sed "s/^/PENDANT-TEST: memory $1 /"
  for u in ears link body eyes web pairing; do
    cg=/sys/fs/cgroup/system.slice/pendant-$u.service
    [ -r $cg/memory.current ] || continue
    peak=$(cat $cg/memory.peak 2>/dev/null || echo 0)  # Linux >= 5.19
    say memory $1 cgroup pendant-$u current $(($(cat $cg/memory.current) >> 20))M \
      peak $((peak >> 20))M
  done
}
memory idle  # every service up, the ears listening again after a command
# "Read this" from the paired phone: the eyes start their reader, which answers with a scene.
# Asked only once the eyes are READY: a capture sent before they subscribe is never answered,
# and under 512 MB on an emulated core they come up minutes after the ears.
wait_for 900 systemctl is-active -q pendant-eyes.service || logs pendant-eyes.service
say before capture pendant-eyes $(state pendant-eyes.service) $(cut -d' ' -f1 /proc/uptime)
mosquitto_pub -h localhost -p 8883 --cafile /etc/mosquitto/pendant/ca.crt -i boottest-cmd \
  -u phone-boottest -P "$(cat /etc/pendant/secrets/phone-boottest.password)" \
  -t "pendant/$ID/cmd/capture" -m '{}' -q 1 && say capture asked
wait_for 600 grep -q "/scene " $LOG && say scene seen $(cut -d' ' -f1 /proc/uptime) \
  || logs pendant-eyes.service  # why not: the eyes' own lines (their reader's among them)
memory after-capture
before=$(systemctl show -p NRestarts --value pendant-ears.service)
intents=$(grep -c "/intent/" $LOG)
say killing pendant-ears NRestarts=$before
systemctl kill -s KILL pendant-ears.service
restarted() { [ "$(systemctl show -p NRestarts --value pendant-ears.service)" -gt "$before" ] \
  && systemctl is-active -q pendant-ears.service; }
wait_for 300 restarted || logs pendant-ears.service
restarted \
  && say pendant-ears restarted $(state pendant-ears.service) $(cut -d' ' -f1 /proc/uptime)
more() { [ "$(grep -c /intent/ $LOG)" -gt "$intents" ]; }
wait_for 300 more && say intent after restart $(cut -d' ' -f1 /proc/uptime)
settled() {  # active, or given up on (failed: its restarts are used up)
  s=$(systemctl is-active "$1"); [ "$s" = active ] || [ "$s" = failed ]; }
for u in link body eyes web pairing; do
  wait_for 300 settled pendant-$u.service
  systemctl is-active -q pendant-$u.service || logs pendant-$u.service
  say unit pendant-$u $(state pendant-$u.service) $(cut -d' ' -f1 /proc/uptime)
done
memory settled
# The eyes' models prepared for this board before the eyes started (a oneshot: active exited).
say unit pendant-eyes-prepare $(state pendant-eyes-prepare.service) \
  $(systemctl show -p Result --value pendant-eyes-prepare.service)
say prepared models $(find /var/cache/pendant-eyes -name '*.onnx' | wc -l)
say prepared before eyes \
  $(systemctl show -p ExecMainExitTimestampMonotonic --value pendant-eyes-prepare.service) \
  $(systemctl show -p ActiveEnterTimestampMonotonic --value pendant-eyes.service)
# ... and the eyes' reader loaded them: it says so when a model has no good copy for the board.
say unprepared loads $(journalctl -b -u pendant-eyes -o cat --no-pager \
  | grep -c -e "no copy prepared" -e "prepared copy .* would not load")
failed=$(systemctl list-units --failed --plain --no-legend | cut -d' ' -f1 | tr '\n' ' ')
kill $PROGRESS $HEARTBEAT
say failed units: $failed
say oom kills $(journalctl -k -b -o cat --no-pager | grep -c -i -e "out of memory" -e "oom-kill")
journalctl -k -b -o cat --no-pager | grep -i -e "out of memory" -e "oom-kill" | tail -n 6 \
  | sed -u "s/^/PENDANT-LOG: kernel: /"
for u in ears eyes body link web pairing; do  # systemd's word: a process of the unit OOM-killed
  n=$(journalctl -b -u pendant-$u.service -o cat --no-pager | grep -c "killed by the OOM killer")
  [ "$n" -gt 0 ] && say oom unit pendant-$u $n
done
[ -n "$failed" ] && logs $failed
say done $(cut -d' ' -f1 /proc/uptime)
sync
systemctl poweroff
"""


SILENCE_S = 600.0
"""No console line but the kernel's heartbeat for this long ends the boot: the guest is stuck
(see `follow`)."""
STOPPED_S = 240.0
"""No line at all, not even the heartbeat (every 30 s), for this long once it has beaten: the
whole guest stopped, and waiting out `SILENCE_S` would only cost CI its time."""
HEARTBEAT = "pendant-test: alive"
"""The hook's kernel line every 30 s (/dev/kmsg), which says the guest still runs."""


@dataclass
class Usage:
    """What a process has used so far: CPU seconds and MiB read (its read calls: QEMU's disk)."""

    cpu_s: float
    read_mb: float


def usage(pid: int) -> Usage | None:
    """The process's use so far, from /proc; None once it is gone (or where there is no /proc)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        io = Path(f"/proc/{pid}/io").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()  # after the command's name: field 3 on
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime
    rchar = next(int(ln.split()[1]) for ln in io.splitlines() if ln.startswith("rchar:"))
    return Usage(cpu, rchar / 2**20)


SOCKET_PATH_MAX = 108
"""The longest path a unix socket binds to (Linux's sun_path); QEMU will not start with a longer
one."""


def monitor_socket(directory: Path) -> Path | None:
    """Where QEMU's monitor listens (`vcpu_state`), in `directory`; None when that path would be
    too long for a unix socket: the boot then goes on without a monitor."""
    path = directory / "monitor.sock"
    return path if len(os.fsencode(path)) <= SOCKET_PATH_MAX else None


def vcpu_state(monitor: Path | None) -> str:
    """Where QEMU's virtual CPUs are, from its monitor (`info registers -a`): each one's PC and
    exception level (EL1 with a PC of 0xffff...: in the kernel; EL0: in a process). "" where
    there is no monitor or it does not answer."""
    if monitor is None or not monitor.exists():
        return ""
    out = b""
    try:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(3)
            sock.connect(str(monitor))
            sock.sendall(b"info registers -a\n")
            with contextlib.suppress(TimeoutError):
                while chunk := sock.recv(65536):  # until QEMU has said all and the read times out
                    out += chunk
    except OSError:
        return ""
    text = out.decode(errors="replace")
    cpus = re.findall(r"CPU#(\d+)\s+PC=([0-9a-f]+).*?PSTATE=\S+ \S+ (EL\d)", text, re.S)
    return "; vCPUs " + ", ".join(f"#{n} pc={pc} {el}" for n, pc, el in cpus) if cpus else ""


def silence_note(silence_s: float, beats: int, before: Usage | None, now: Usage | None) -> str:
    """What the test can say of a guest that stopped printing: whether its kernel still beat
    (`beats` heartbeats since its last other line; 0: the whole guest stopped) and what QEMU did
    meanwhile. Busy and reading: memory thrash (pages read back from the card); busy, not
    reading: a guest spinning; idle: a guest asleep that nothing wakes."""
    kernel = (
        f" but the kernel's heartbeat ({beats} lines): the guest ran, its hook's path to the "
        "console (journald) stopped"
        if beats
        else ", not even the kernel's heartbeat: the whole guest (or its hook) stopped"
    )
    qemu = ""
    if before is not None and now is not None:
        cpu = now.cpu_s - before.cpu_s
        qemu = (
            f"; QEMU meanwhile used {cpu:.0f} CPU-s ({cpu / silence_s:.0%} of a core) and read "
            f"{now.read_mb - before.read_mb:.0f} MiB"
        )
    return f"{MARK} the guest printed nothing for {silence_s:.0f} s{kernel}{qemu}"


@dataclass
class Boot:
    console: str
    returncode: int | None
    times: dict[str, float] = field(default_factory=dict)
    boot_partition: dict[str, str] = field(default_factory=dict)

    def lines(self, prefix: str = MARK) -> list[str]:
        return [ln.split(prefix, 1)[1].strip() for ln in self.console.splitlines() if prefix in ln]


def test_config(wav: str) -> str:
    """What a wearer would write on the card: the demo home. Plus what only a test needs:
    audio from a WAV file, and simulated body and eyes if the package's config knows them.

    Nothing else: the card's file is merged over the device's config
    (device/pendant/data/device-pendant.toml, installed as /etc/pendant/pendant.toml), which
    already names the bus and phones' socket, the outbox and the models the package ships. A
    boot that finds them proves the merge.
    """
    sys.path.insert(0, str(REPO / "device"))
    from pendant.core.config import Config

    home = (REPO / "examples" / "pendant.toml").read_text()
    home = re.sub(r"(?m)^device_id\s*=.*\n", "", home)
    data = tomllib.loads(home)
    # About 6 minutes of audio, a command every 31.5 s: the ears must not run out before the
    # test ends (a finished WAV source ends the service cleanly, which systemd does not
    # restart), and the source holds the whole playlist in RAM, inside the unit's MemoryMax.
    files = ", ".join([f'"{wav}"'] * 12)
    extra = f'\n[audio]\nsource = "wav"\nfiles = [{files}]\nrealtime = true\ngap_ms = 30000\n'
    if "body" in Config.model_fields and "body" not in data:
        extra += '\n[body]\npin_factory = "mock"\n'
    if "eyes" in Config.model_fields and "eyes" not in data:
        images = ", ".join(f'"/run/pendant-test/{p.name}"' for p in EYES_IMAGES)
        # A capture's first reader imports onnxruntime and OpenCV and loads every model before
        # it reads, all inside eyes.read_timeout_s (60 s by default): under TCG that took 47-53
        # s in CI's boots (zero2w, pi5) and 161 s on zero2w-camera with the host's 2 cores
        # shared with other builds; given up at 60 s, the capture publishes no scene (the
        # first zero2w-camera boot). Emulation is not the board: the test gives it 300 s.
        extra += f'\n[eyes]\ncamera = "files"\nfiles = [{images}]\nread_timeout_s = 300\n'
    # The device's own settings must come from the device: the test would not see a merge
    # that lost them if the card set them again.
    for table in ("audio", "bus", "link", "models"):
        if table in data:
            raise RuntimeError(f"examples/pendant.toml has [{table}]: the test config clashes")
    return home + extra


def mtools(*args: str) -> str:
    env = {**os.environ, "MTOOLS_SKIP_CHECK": "1"}
    proc = subprocess.run(args, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{args[0]} failed: {proc.stderr.strip()}")
    return proc.stdout


def prepare(image: Path, work: Path, memory_max: dict[str, str] | None = None) -> Path:
    disk = work / "disk.img"
    subprocess.run(["cp", "--sparse=always", str(image), str(disk)], check=True)
    with disk.open("r+b") as f:
        f.truncate(max(TEST_SIZE, disk.stat().st_size))
    files = work / "fat"
    (files / "pendant-test").mkdir(parents=True)
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w",
                    str(files / "pendant-test" / "command.wav"), COMMAND], check=True)  # fmt: skip
    for image_file in EYES_IMAGES:
        shutil.copyfile(image_file, files / "pendant-test" / image_file.name)
    (files / "pendant-test" / "prepare").write_text(PREPARE + set_memory_max(memory_max or {}))
    (files / "pendant-test" / "hook").write_text(HOOK)
    (files / "pendant.toml").write_text(test_config("/run/pendant-test/command.wav"))
    (files / "setup.toml").write_text(
        'timezone = "Europe/London"\nhostname = "pendant-test"\n\n[wifi]\nssid = "TestNet"\n'
        'password = "not-a-real-secret"\ncountry = "GB"\n'
    )
    (files / "authorized_keys").write_text(
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBootTestKeyOnlyNotARealKeyAAAAAAAAAAAAAAA test\n"
    )
    target = f"{disk}@@{BOOT_OFFSET}"
    for p in sorted(files.iterdir()):
        mtools("mcopy", "-o", "-s", "-i", target, str(p), "::")
    return disk


def read_boot_partition(disk: Path) -> dict[str, str]:
    target = f"{disk}@@{BOOT_OFFSET}"
    out = {}
    for name in ("setup.toml", "authorized_keys", "pendant-setup-error.txt"):
        try:
            out[name] = mtools("mtype", "-i", target, f"::{name}")
        except RuntimeError:
            continue
    return out


def raspi3b_tree(board_boot: Path, work: Path, board: str = "zero2w") -> Path:
    """QEMU's Pi 3 tree with the pendant's I2S mic and camera compiled in, as the image does
    for its board.

    The image carries them in the Zero 2 W's tree; QEMU models a Pi 3, so the test makes the
    same tree for that board and the guest's kernel shows whether the card comes up and where
    the camera's sensor is described.
    """
    return devicetree.with_fragment(
        board_boot / "bcm2837-rpi-3-b.dtb", work / "raspi3b.dtb", fragments(load_board(board))
    )


def guest_mem(board: dict, machine: str) -> str | None:
    """The kernel's `mem=` on QEMU's raspi3b: the board's RAM (a Zero 2 W's 512M), or
    IMAGE_MEM (`IMAGE_MEM=off`: the machine's whole GiB). None on -M virt (it is given -m)."""
    if machine != "raspi3b":
        return None
    mem = os.environ.get("IMAGE_MEM") or board.get("ram")
    return None if mem in (None, "off") else mem


def qemu_command(machine: str, board_boot: Path, disk: Path, cpu: str = "cortex-a53",
                 mem: str | None = None, board: str = "zero2w") -> list[str]:  # fmt: skip
    kernel, initrd = board_boot / "vmlinuz", board_boot / "initrd.img"
    common = ["-nographic", "-nic", "none", "-no-reboot", "-kernel", str(kernel),
              "-initrd", str(initrd)]  # fmt: skip
    cmdline = "root=LABEL=pendant-root ro rootwait pendant.test=1 systemd.show_status=1"
    if machine == "virt":
        return ["qemu-system-aarch64", "-M", "virt", "-cpu", cpu, "-smp", "2",
                "-m", "1024", *common, "-append", f"{cmdline} console=ttyAMA0",
                "-drive", f"file={disk},format=raw,if=none,id=hd",
                "-device", "virtio-blk-device,drive=hd"]  # fmt: skip
    dtb = raspi3b_tree(board_boot, disk.parent, board)
    # QEMU's Pi 3 has 1 GiB and no other size, and writes that into the tree's memory node:
    # the kernel's mem= gives it only the Zero 2 W's 512 MB (guest_mem), so the services must
    # fit it as they would on the board. The test checks MemTotal in the guest.
    limit = f" mem={mem}" if mem else ""
    return ["qemu-system-aarch64", "-M", "raspi3b", "-m", "1024", *common, "-dtb", str(dtb),
            "-append", f"{cmdline}{limit} console=ttyAMA0,115200 dwc_otg.fiq_fsm_enable=0",
            "-drive", f"file={disk},format=raw,if=sd"]  # fmt: skip


def boot(board: str = "zero2w", machine: str = "virt", timeout: float = 1500,
         log: Path | None = None, echo: bool = False) -> Boot:  # fmt: skip
    # A test build (build.py --test): only it has the hook this test drives.
    image = OUT / f"{image_stem(board, test=True)}.img"
    board_boot = OUT / f"{image_stem(board, test=True)}.boot"
    if not image.is_file() or not (board_boot / "vmlinuz").is_file():
        raise FileNotFoundError(
            f"{image} (and its kernel) missing: run `make image-test-build BOARD={board}`"
        )
    with (
        tempfile.TemporaryDirectory(prefix="pendant-boot-", dir=OUT) as tmp,
        # The monitor's socket out of the checkout: under a deep one, image/out's path would
        # be too long for a socket, and QEMU would refuse to start at all.
        tempfile.TemporaryDirectory(prefix="pendant-qemu-") as sockets,
    ):
        work = Path(tmp)
        desc = load_board(board)
        disk = prepare(image, work, memory_max_override(desc))
        cmd = qemu_command(machine, board_boot, disk, desc.get("qemu_cpu", "cortex-a53"),
                           guest_mem(desc, machine), board)  # fmt: skip
        monitor = monitor_socket(Path(sockets))
        if monitor is not None:
            cmd += ["-monitor", f"unix:{monitor},server=on,wait=off"]
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT)  # fmt: skip
        chunks, times = follow(proc, timeout, log=log, echo=echo, monitor=monitor)
        return Boot("\n".join(chunks), proc.returncode, times, read_boot_partition(disk))


def follow(
    proc: subprocess.Popen[bytes],
    timeout: float,
    silence_s: float = SILENCE_S,
    log: Path | None = None,
    echo: bool = False,
    stopped_s: float = STOPPED_S,
    monitor: Path | None = None,
) -> tuple[list[str], dict[str, float]]:
    """Reads the guest's console until it ends, `timeout` runs out, nothing but the kernel's
    heartbeat came for `silence_s`, or nothing at all for `stopped_s` after a heartbeat (the
    whole guest stopped: `times["stopped"]` too): then its last line says what the guest, its
    virtual CPUs and QEMU did meanwhile (`silence_note`, `vcpu_state`). The console's lines,
    and when each boot stage was reached."""
    assert proc.stdout is not None
    started = time.monotonic()
    times: dict[str, float] = {}
    chunks: list[str] = []
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    pending = b""
    logf = log.open("w") if log else None
    heard, beats, used = started, 0, usage(proc.pid)
    beat_at: float | None = None  # the last heartbeat, once there was one
    try:
        while time.monotonic() - started < timeout:
            # The hook prints a line a minute while it waits: silence this long is a guest that
            # stopped (seen twice in CI on -M raspi3b: once after the ears' SIGKILL, once while
            # the eyes' models were prepared, systemctl segfaulting just before), and waiting
            # out the whole timeout would only cost CI its time.
            now = time.monotonic()
            # The hook stops its heartbeat before "done": a quiet shutdown is not a stop.
            whole = (
                beat_at is not None
                and "done" not in times
                and now - max(beat_at, heard) > stopped_s
            )
            if now - heard > silence_s or whole:
                times["silent"] = now - started
                if whole:
                    times["stopped"] = times["silent"]
                # A whole stop counts from the last line of any kind, and no beat since it.
                quiet = now - max(beat_at or 0.0, heard) if whole else now - heard
                note = silence_note(quiet, 0 if whole else beats, used, usage(proc.pid))
                chunks.append(note + vcpu_state(monitor))
                break
            if not sel.select(timeout=min(5.0, silence_s)):
                if proc.poll() is not None:
                    break
                continue
            data = os.read(proc.stdout.fileno(), 65536)
            if not data:
                break
            pending += data
            *full, pending = pending.split(b"\n")
            for raw in full:
                line = raw.decode(errors="replace").rstrip("\r")
                t = time.monotonic() - started
                chunks.append(line)
                if HEARTBEAT in line:
                    beats += 1
                    beat_at = time.monotonic()
                else:
                    heard, beats, used = time.monotonic(), 0, usage(proc.pid)
                if logf:
                    logf.write(f"[{t:7.1f}] {line}\n")
                    logf.flush()
                if echo and (MARK in line or "Started" in line or "Failed" in line):
                    print(f"[{t:7.1f}] {line}", flush=True)
                for key, pattern in (
                    ("kernel", "Booting Linux"),
                    ("systemd", "systemd["),
                    ("mosquitto", "Started mosquitto"),
                    ("hook", "hook started"),
                    ("intent", "intent seen"),
                    ("restart", "pendant-ears restarted"),
                    ("done", f"{MARK} done"),
                ):
                    if pattern in line and key not in times:
                        times[key] = t
    finally:
        if proc.poll() is None:
            try:
                proc.wait(timeout=60 if "done" in times else 1)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if logf:
            logf.close()
    times["total"] = time.monotonic() - started
    return chunks, times


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="image/boot_test.py", description=__doc__.splitlines()[0])
    p.add_argument("--board", default="zero2w")
    p.add_argument("--machine", choices=["virt", "raspi3b"], default="virt")
    p.add_argument("--timeout", type=float, default=1500)
    p.add_argument("--log", type=Path, default=None)
    args = p.parse_args(argv)
    if shutil.which("qemu-system-aarch64") is None:
        print("boot_test: error: apt install qemu-system-arm", file=sys.stderr)
        return 2
    result = boot(args.board, args.machine, args.timeout, args.log, echo=True)
    for key, t in result.times.items():
        print(f"{key:>10}: {t:7.1f} s")
    return 0 if "done" in result.times else 1


if __name__ == "__main__":
    raise SystemExit(main())
