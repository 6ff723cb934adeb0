"""Build the pendant's SD card image from its declarative description in image/boards/.

    python image/build.py BOARD [--test] [--deb PATH] [--out DIR]     # BOARD: zero2w | pi5

A release build makes image/out/pendant-BOARD.img. `--test` makes pendant-BOARD-test.img, the
same image plus the board description's [test] part (the boot test's hook: image/test-rootfs),
which the QEMU boot test needs and a card in someone's hands must never have.

1. mmdebstrap assembles Debian arm64 (under qemu-user-static through binfmt_misc, mounted here
   when it is not) with the board's packages and the pendant's .deb (a local file, through
   mmdebstrap's file-mirror-automount hook). Before any package installs, a setup hook writes
   /etc/default/raspi-firmware (ROOTPART, CONSOLES), the config.txt fragment, the initramfs
   module list (MODULES=list) and the apt pins (backports).
2. A customize hook (this file, `--customize ROOT`) copies image/rootfs, makes the admin user
   (password locked: SSH keys only), enables the units, drops the build's SSH host keys and
   locks root.
3. The disk, without loop devices: the firmware partition (FAT32, mkfs.vfat + mtools), the
   read-only root and the data partition (`mke2fs -d`), laid into an MBR image made by sfdisk.

Every stage prints its time. Errors are one line naming what to fix, exit code 2.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
import devicetree  # noqa: E402 (image/ is scripts, not a package)

BOARDS = HERE / "boards"
SECTOR = 512
BOOT_START = 8192  # sectors: 4 MiB, the usual alignment of SD card erase blocks
HOST_TOOLS = {
    "mmdebstrap": "mmdebstrap",
    "mkfs.vfat": "dosfstools",
    "mcopy": "mtools",
    "mke2fs": "e2fsprogs",
    "sfdisk": "fdisk",
    "dtc": "device-tree-compiler",
    "update-binfmts": "binfmt-support",
}


class ImageError(Exception):
    """The build cannot go on; the message names what to fix."""


# --------------------------------------------------------------------------- description


def parse_size(text: str) -> int:
    m = re.fullmatch(r"(\d+)([KMG]?)", str(text).strip())
    if m is None:
        raise ImageError(f"size {text!r}: write it as e.g. 256M or 2G")
    return int(m.group(1)) * {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}[m.group(2)]


def load_board(board: str) -> dict:
    """The board's description merged onto its base: tables merge, `X_add` extends list X."""
    path = BOARDS / f"{board}.toml"
    known = sorted(p.stem for p in BOARDS.glob("*.toml") if p.stem != "common")
    if board == "common" or not path.is_file():
        raise ImageError(f"unknown board {board!r}: pick one of {', '.join(known)}")

    def read(p: Path) -> dict:
        try:
            return tomllib.loads(p.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise ImageError(f"{p.relative_to(REPO)}: {exc}") from None

    own = read(path)
    merged = read(BOARDS / own.pop("base")) if "base" in own else {}
    for key, value in own.items():
        if key.endswith("_add"):
            merged[key[:-4]] = [*merged.get(key[:-4], []), *value]
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    merged["board"] = board
    for key in ("suite", "arch", "packages", "disk", "wear", "raspi_firmware"):
        if key not in merged:
            raise ImageError(f"{path.relative_to(REPO)}: missing {key!r}")
    return merged


# --------------------------------------------------------------------------- host


class Stage:
    """Prints a stage's name, then its time when it ends; keeps the figures for the summary."""

    times: dict[str, float] = {}  # noqa: RUF012 (one build per process)

    def __init__(self, name: str) -> None:
        self.name = name

    def __enter__(self) -> Stage:
        print(f"==> {self.name}", flush=True)
        self.started = time.monotonic()
        return self

    def __exit__(self, *exc: object) -> None:
        spent = time.monotonic() - self.started
        Stage.times[self.name] = spent
        if exc[0] is None:
            print(f"    {self.name}: {spent:.1f} s", flush=True)


def run(cmd: list[str], what: str, *, show: bool = False, **kw: object) -> str:
    """Run a tool; with `show`, its output streams through (mmdebstrap's progress)."""
    if show:
        proc = subprocess.run(cmd, check=False, **kw)  # type: ignore[call-overload]
        if proc.returncode != 0:
            raise ImageError(f"{what} failed (exit {proc.returncode}): see the output above")
        return ""
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, **kw)  # type: ignore[call-overload]
    if proc.returncode != 0:
        last = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise ImageError(f"{what} failed: {last[0]}")
    return proc.stdout


def check_host() -> None:
    if os.geteuid() != 0:
        raise ImageError("building the image needs root (mmdebstrap's root mode): use sudo")
    missing = sorted({pkg for tool, pkg in HOST_TOOLS.items() if shutil.which(tool) is None})
    if missing:
        raise ImageError(f"missing build tools: apt install {' '.join(missing)}")
    binfmt = Path("/proc/sys/fs/binfmt_misc")
    if not (binfmt / "status").exists():
        run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(binfmt)], "mounting binfmt_misc")
    if not (binfmt / "qemu-aarch64").exists():
        run(["update-binfmts", "--enable", "qemu-aarch64"], "update-binfmts qemu-aarch64")
    if not (binfmt / "qemu-aarch64").exists():
        raise ImageError("no binfmt handler for aarch64: apt install qemu-user-static")


# --------------------------------------------------------------------------- mmdebstrap


def setup_files(desc: dict) -> dict[str, str]:
    """Files that must exist before the first package installs, by path in the root."""
    rf = "".join(f'{k}="{v}"\n' for k, v in desc["raspi_firmware"].items())
    modules = "".join(f"{m}\n" for m in desc.get("initramfs_modules", []))
    fragment = desc.get("config_txt", "").strip() + "\n"
    hw = REPO / desc.get("hw_config_txt", "hw/config/config-pendant.txt")
    if hw.is_file():
        fragment += f"\n# from {hw.relative_to(REPO)}\n" + hw.read_text()
    fragment += power_config_txt(desc, fragment)
    trees = desc.get("device_trees", {})
    if trees:
        fragment += (
            "\n# Debian's firmware has no overlays, so dtoverlay= lines do nothing on this image:"
            "\n# the I2S mic and the camera are compiled into the board's tree (image/dts/).\n"
            + "".join(f"[{flt}]\ndevice_tree=pendant-{dtb}\n" for flt, dtb in trees.items())
            + "[all]\n"
        )
    pins = "".join(
        f"Package: {pkg}\nPin: release n={suite}\nPin-Priority: 990\n\n"
        for pkg, suite in desc.get("pin", {}).items()
    )
    return {
        "etc/default/raspi-firmware": rf,
        # raspi-firmware appends this file to the config.txt it writes.
        "etc/default/raspi-firmware-custom": fragment,
        "etc/initramfs-tools/conf.d/pendant.conf": "MODULES=list\nCOMPRESS=zstd\n",
        "usr/share/initramfs-tools/modules.d/pendant": modules,
        "etc/apt/preferences.d/pendant": pins,
        "etc/hostname": "pendant\n",
    }


def setup_hook(desc: dict, staging: Path) -> str:
    """Writes the setup files under `staging`; returns the hook that copies them in."""
    for rel, text in setup_files(desc).items():
        (staging / rel).parent.mkdir(parents=True, exist_ok=True)
        (staging / rel).write_text(text)
    return f'cp -a {shlex.quote(str(staging))}/. "$1"/'


def mmdebstrap(desc: dict, deb: Path, rootdir: Path, staging: Path, test: bool = False) -> None:
    suites = [desc["suite"], *desc.get("extra_suites", [])]
    components = " ".join(desc.get("components", ["main"]))
    mirrors = [f"deb {desc['mirror']} {s} {components}" for s in suites]
    # zstd compresses the initramfs (COMPRESS=zstd); the .deb installs from its path.
    packages = [*desc["packages"], "zstd", str(deb)]
    hook_dir = Path("/usr/share/mmdebstrap/hooks/file-mirror-automount")
    me = " ".join(shlex.quote(a) for a in (sys.executable, str(Path(__file__).resolve())))
    customize_hook = f'{me} --customize "$1" {shlex.quote(desc["board"])}'
    if test:
        customize_hook += " --test"
    cmd = [
        "mmdebstrap",
        "--mode=root",
        f"--arch={desc['arch']}",
        f"--variant={desc.get('variant', 'minbase')}",
        f"--include={','.join(packages)}",
        # Keep the files the setup hook wrote (/etc/default/raspi-firmware is a conffile).
        "--dpkgopt=force-confold",
        f"--hook-dir={hook_dir}",
        f"--setup-hook={setup_hook(desc, staging)}",
        '--essential-hook=mkdir -p "$1/boot/firmware"',
        f"--customize-hook={customize_hook}",
        "--skip=cleanup/apt/lists",
        desc["suite"],
        str(rootdir),
        *mirrors,
    ]
    # On a terminal mmdebstrap draws its own progress bars; elsewhere (CI, a log) apt's and
    # dpkg's lines are the progress.
    if os.environ.get("PENDANT_IMAGE_VERBOSE") or not sys.stdout.isatty():
        cmd.insert(1, "--verbose")
    # The host's pip settings (find-links, indexes) must not reach the package's postinst.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    run(cmd, "mmdebstrap", show=True, env=env)


# --------------------------------------------------------------------------- customize


def image_stem(board: str, test: bool = False) -> str:
    """pendant-BOARD, or pendant-BOARD-test: a test build never takes the release's name."""
    return f"pendant-{board}-test" if test else f"pendant-{board}"


def overlay_files(desc: dict, test: bool = False) -> dict[str, Path]:
    """What the customize hook copies into the root: path in the root -> file in image/."""
    overlays = [desc.get("rootfs_overlay", "rootfs")]
    if test:
        overlays.append(desc["test"]["rootfs_overlay"])
    files: dict[str, Path] = {}
    for name in overlays:
        overlay = HERE / name
        for src in sorted(overlay.rglob("*")):
            if not src.is_dir():
                files[str(src.relative_to(overlay))] = src
    return files


def units_to_enable(desc: dict, test: bool = False) -> list[str]:
    return [*desc.get("enable", []), *(desc["test"]["enable"] if test else [])]


POWER_KEYS = {
    "governor": str, "act_led": bool, "hdmi": bool, "bluetooth": bool, "wifi_power_save": bool,
    "audio": bool, "usb": bool, "display": bool, "arm_freq_min_mhz": int, "mask": list,
}  # fmt: skip
GOVERNORS = ("ondemand", "schedutil", "conservative", "powersave", "performance")
# The drivers each switched-off part needs; a blacklist keeps udev from loading them.
POWER_DRIVERS = {
    "hdmi": ("vc4",),
    "bluetooth": ("hci_uart", "btbcm"),
    "audio": ("snd_bcm2835",),
    "usb": ("dwc2",),
}
# The firmware's clocks: below 100 MHz or above the stock 1 GHz is not an idle clock.
ARM_FREQ_MIN_MHZ = (100, 1000)


def power_table(desc: dict) -> dict:
    """The board's [power] table, checked: a wrong key or value is one line naming it."""
    power = desc.get("power", {})
    for key, value in power.items():
        if key not in POWER_KEYS:
            raise ImageError(f"[power] {key}: unknown, the keys are {', '.join(POWER_KEYS)}")
        if not isinstance(value, POWER_KEYS[key]) or (
            POWER_KEYS[key] is int and isinstance(value, bool)
        ):
            raise ImageError(f"[power] {key} = {value!r}: write a {POWER_KEYS[key].__name__}")
    governor = power.get("governor", "")
    if governor and governor not in GOVERNORS:
        raise ImageError(f"[power] governor = {governor!r}: pick one of {', '.join(GOVERNORS)}")
    low, high = ARM_FREQ_MIN_MHZ
    mhz = power.get("arm_freq_min_mhz")
    if mhz is not None and not low <= mhz <= high:
        raise ImageError(f"[power] arm_freq_min_mhz = {mhz}: between {low} and {high}")
    for unit in power.get("mask", []):
        if not isinstance(unit, str) or not re.fullmatch(r"[\w@.-]+\.(timer|service)", unit):
            raise ImageError(f"[power] mask: {unit!r} is not a .timer or .service name")
    return power


def power_files(desc: dict) -> dict[str, str]:
    """The board's [power] table as files in the root: path in the root -> text."""
    power = power_table(desc)
    off = [
        m for part, mods in POWER_DRIVERS.items() if power.get(part, True) is False for m in mods
    ]
    modprobe = "# image/boards/*.toml [power]: parts of the board the pendant does not use.\n"
    modprobe += "".join(f"blacklist {m}\n" for m in off)
    default = (
        "# image/boards/*.toml [power], applied by pendant-power.service.\n"
        f"GOVERNOR={power.get('governor', '')}\n"
        f"ACT_LED={'on' if power.get('act_led', True) else 'off'}\n"
        f"WIFI_POWER_SAVE={'on' if power.get('wifi_power_save', False) else 'off'}\n"
    )
    return {"etc/modprobe.d/pendant-power.conf": modprobe, "etc/default/pendant-power": default}


def power_config_txt(desc: dict, fragment: str = "") -> str:
    """The [power] settings the firmware reads from config.txt (they act on any OS), as lines
    to append to `fragment` (the config.txt text so far): none it already has, and a fragment
    that sets one of them otherwise is an error (hw/config/power.txt and [power] disagree)."""
    power = power_table(desc)
    want = {}
    if "arm_freq_min_mhz" in power:
        want["arm_freq_min"] = str(power["arm_freq_min_mhz"])
    if power.get("audio", True) is False:
        want["dtparam=audio"] = "off"
    if power.get("display", True) is False:
        # The firmware's own display pipeline (HDMI and composite, their clocks, the scaler and
        # pixel valve) never set up: what `tvservice -o` tears down, from boot.
        want.update(hdmi_ignore_hotplug="1", hdmi_ignore_composite="1", max_framebuffers="0")
    lines = []
    for key, value in want.items():
        have = re.findall(rf"(?m)^{re.escape(key)}=(\S+)$", fragment)
        if have and have[-1] != value:
            raise ImageError(
                f"config.txt sets {key}={have[-1]} where [power] wants {key}={value}: "
                "make them agree"
            )
        if not have:
            lines.append(f"{key}={value}")
    if not lines:
        return ""
    return "\n# image/boards/*.toml [power] (hw/power.md models each)\n" + "\n".join(lines) + "\n"


def power_masked(desc: dict) -> list[str]:
    """Units the build masks: timers and services a read-only pendant has no use for."""
    return list(power_table(desc).get("mask", []))


# The pendant's services, each a unit of the package (services/pendant-<name>.service) that
# runs for as long as the pendant does. A oneshot step (pendant-eyes-prepare, which ends before
# the eyes start) is not one: it has its own MemoryMax= and never runs beside its service.
PENDANT_SERVICES = tuple(
    sorted(
        p.stem.removeprefix("pendant-")
        for p in (REPO / "services").glob("pendant-*.service")
        if not re.search(r"(?m)^Type=oneshot$", p.read_text())
    )
)
MEMORY_DROP_IN = "etc/systemd/system/pendant-{}.service.d/40-memory.conf"


def memory_files(desc: dict) -> dict[str, str]:
    """The board's [memory] table as systemd drop-ins: path in the root -> text.

    `budget` bounds the sum of the services' MemoryMax= (the board's RAM less what the system
    needs); every pendant service must have a limit, so the sum is what the board can be asked
    for. The drop-in's name sorts before `50-MemoryMax.conf` (`systemctl set-property`) and
    `override.conf` (`systemctl edit`), so either still changes a limit on the device.
    """
    memory = dict(desc.get("memory", {}))
    if not memory:
        return {}
    budget_text = memory.pop("budget", None)
    unknown = sorted(set(memory) - set(PENDANT_SERVICES))
    if unknown:
        known = ", ".join(PENDANT_SERVICES)
        raise ImageError(f"[memory] {unknown[0]}: no such service, the services are {known}")
    missing = [s for s in PENDANT_SERVICES if s not in memory]
    if missing:
        raise ImageError(f"[memory] has no limit for {', '.join(missing)}: give every service one")
    limits: dict[str, int] = {}
    for name, text in {**memory, "budget": budget_text or "0"}.items():
        try:
            limits[name] = parse_size(text)
        except ImageError as exc:
            raise ImageError(f"[memory] {name}: {exc}") from None
    budget = limits.pop("budget")
    if budget_text is not None:
        total = sum(limits.values())
        if total > budget:
            raise ImageError(
                f"[memory] limits sum to {total >> 20}M, over the budget {budget_text}: lower them"
            )
    return {
        MEMORY_DROP_IN.format(name): (
            "# image/boards/*.toml [memory]: this board's share of its RAM for the service.\n"
            f"[Service]\nMemoryMax={memory[name]}\n"
        )
        for name in sorted(limits)
    }


def chroot(root: Path, *cmd: str) -> str:
    return run(["chroot", str(root), *cmd], " ".join(cmd))


def customize(root: Path, desc: dict, test: bool = False) -> None:
    """Runs inside mmdebstrap (its customize hook): the root is complete, packages configured."""
    for rel, src in overlay_files(desc, test).items():
        dest = root / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dest)
        dest.chmod(0o755 if os.access(src, os.X_OK) else 0o644)
    for user in desc.get("users", []):
        name = user["name"]
        groups = ",".join(g for g in user.get("groups", []) if chroot_group(root, g))
        chroot(root, "useradd", "--create-home", "--shell", "/bin/bash",
               *(["--groups", groups] if groups else []), name)  # fmt: skip
        # '*': no password can ever match. SSH takes the key from the boot partition.
        chroot(root, "usermod", "--password", "*", name)
        if user.get("sudo_nopasswd"):
            sudoers = root / "etc/sudoers.d" / f"10-{name}"
            sudoers.write_text(f"{name} ALL=(ALL) NOPASSWD: ALL\n")
            sudoers.chmod(0o440)
    chroot(root, "usermod", "--password", "*", "root")
    for rel, text in {**power_files(desc), **memory_files(desc)}.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    if desc.get("disable"):
        chroot(root, "systemctl", "disable", *desc["disable"])
    if masked := power_masked(desc):
        chroot(root, "systemctl", "mask", *masked)
    chroot(root, "systemctl", "enable", *units_to_enable(desc, test))
    # The test hook runs whatever is on the FAT partition as root: a release image without it
    # is the point of the [test] split, so a hook that came back another way stops the build.
    if not test and (hooks := hook_units_in(root, desc)):
        raise ImageError(f"release image holds {hooks[0]}: test builds only")
    for unit, wanted in desc.get("wants", {}).items():
        wants = root / "etc/systemd/system" / f"{unit}.wants"
        wants.mkdir(parents=True, exist_ok=True)
        for name in wanted:
            template = re.sub(r"@[^.]*\.", "@.", name)
            (wants / name).unlink(missing_ok=True)
            (wants / name).symlink_to(f"/lib/systemd/system/{template}")
    # Each card makes its own host keys on first boot (pendant-firstboot), on the data partition.
    for key in (root / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    # Empty: a fresh machine id each boot of the read-only root, not one shared by every card.
    (root / "etc/machine-id").write_text("")
    wear = desc["wear"]
    (root / "etc/systemd/journald.conf.d").mkdir(parents=True, exist_ok=True)
    (root / "etc/systemd/journald.conf.d/pendant.conf").write_text(
        "# The root is read-only: the journal lives in RAM, bounded.\n[Journal]\n"
        f"Storage=volatile\nRuntimeMaxUse={wear.get('journal_runtime_max', '16M')}\n"
    )
    # Time zone and host name live on the data partition (set from setup.toml on first boot).
    for name in ("localtime", "hostname"):
        target = root / "etc" / name
        target.unlink(missing_ok=True)
        target.symlink_to(f"/etc/pendant/{name}")
    (root / "etc/pendant").mkdir(exist_ok=True)
    (root / "etc/pendant/hostname").write_text("pendant\n")
    (root / "etc/pendant/localtime").unlink(missing_ok=True)
    (root / "etc/pendant/localtime").symlink_to("/usr/share/zoneinfo/Etc/UTC")
    for path in wear.get("persist", []):
        (root / path.lstrip("/")).mkdir(parents=True, exist_ok=True)
    firmware = root / "boot/firmware"
    for dtb in desc.get("device_trees", {}).values():
        try:
            devicetree.with_fragment(firmware / dtb, firmware / f"pendant-{dtb}", fragments(desc))
        except devicetree.DeviceTreeError as exc:
            raise ImageError(str(exc)) from None


def fragments(desc: dict) -> list[Path]:
    """The device tree fragments (image/dts/) the board's description names, in order."""
    names = desc.get("device_tree_fragments")
    if names is None:
        return list(devicetree.FRAGMENTS)
    return [devicetree.DTS / name for name in names]


def hook_units_in(root: Path, desc: dict) -> list[str]:
    """The [test] units found in a root: as unit files, or enabled (a .wants link)."""
    etc = root / "etc/systemd/system"
    found = []
    for name in desc["test"]["enable"]:
        for d in ("usr/lib/systemd/system", "lib/systemd/system", "etc/systemd/system"):
            if (root / d / name).exists():
                found.append(f"/{d}/{name}")
        found += [f"/{p.relative_to(root)}" for p in etc.glob(f"*.wants/{name}")]
    return found


def chroot_group(root: Path, group: str) -> bool:
    return any(ln.split(":")[0] == group for ln in (root / "etc/group").read_text().splitlines())


# --------------------------------------------------------------------------- the disk


def split_data(root: Path, data: Path, desc: dict) -> str:
    """Move the persistent paths onto the data partition's tree; return the fstab."""
    disk, wear = desc["disk"], desc["wear"]
    lines = [
        "# The root is read-only at run time; state lives on the data partition (bind mounts)",
        "# and in RAM. To change the root: mount -o remount,rw / (then back to ro).",
        f"LABEL={disk['root_label']} / ext4 ro,noatime 0 1",
        f"LABEL={disk['boot_label']} /boot/firmware vfat rw,noatime,umask=0077,flush 0 2",
        f"LABEL={disk['data_label']} /data ext4 rw,noatime,commit=30 0 2",
    ]
    for path in wear.get("persist", []):
        src = root / path.lstrip("/")
        dest = data / path.lstrip("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        st = src.stat()
        os.rename(src, dest)  # keeps owner and mode (the same file system)
        src.mkdir()
        os.chown(src, st.st_uid, st.st_gid)
        src.chmod(st.st_mode & 0o7777)
        lines.append(f"/data{path} {path} none bind,x-systemd.requires-mounts-for=/data 0 0")
    for link, target in wear.get("symlinks", {}).items():
        src, dest = root / link.lstrip("/"), data / target.lstrip("/")
        dest.mkdir(parents=True, exist_ok=True)
        if src.is_dir() and not src.is_symlink():
            for item in src.iterdir():
                os.rename(item, dest / item.name)
            src.rmdir()
        src.parent.mkdir(parents=True, exist_ok=True)
        src.symlink_to(target)
    for path, size in wear.get("tmpfs", {}).items():
        mode = "1777" if "tmp" in path else "0755"
        lines.append(f"tmpfs {path} tmpfs rw,nosuid,nodev,size={size},mode={mode} 0 0")
    return "\n".join(lines) + "\n"


def make_disk(root: Path, work: Path, desc: dict, image: Path) -> None:
    disk = desc["disk"]
    total = parse_size(disk["size"])
    boot_size, root_size = parse_size(disk["boot_size"]), parse_size(disk["root_size"])
    boot_start = BOOT_START * SECTOR
    data_start = boot_start + boot_size + root_size
    data_size = total - data_start
    if data_size < 32 << 20:
        raise ImageError(f"disk.size {disk['size']} leaves no room for the data partition")
    # The firmware partition: what raspi-firmware and the kernel hooks put in /boot/firmware.
    firmware = root / "boot/firmware"
    boot_img, root_img, data_img = work / "boot.img", work / "root.img", work / "data.img"
    data_tree = work / "data"
    with Stage("data partition: persistent paths, fstab"):
        if data_tree.exists():
            shutil.rmtree(data_tree)
        data_tree.mkdir()
        (root / "etc/fstab").write_text(split_data(root, data_tree, desc))
        (root / "data").mkdir(exist_ok=True)
    with Stage(f"boot partition (FAT32, {boot_size >> 20} MiB)"):
        boot_img.unlink(missing_ok=True)
        run(["mkfs.vfat", "-F", "32", "-n", disk["boot_label"], "-C", str(boot_img),
             str(boot_size // 1024)], "mkfs.vfat")  # fmt: skip
        entries = sorted(firmware.iterdir())
        if not any(p.name == "config.txt" for p in entries):
            raise ImageError("raspi-firmware made no config.txt: check the mmdebstrap output")
        run(["mcopy", "-s", "-p", "-m", "-i", str(boot_img), *map(str, entries), "::"],
            "mcopy", env={**os.environ, "MTOOLS_SKIP_CHECK": "1"})  # fmt: skip
        for p in entries:
            shutil.rmtree(p) if p.is_dir() else p.unlink()
    with Stage(f"root partition (ext4, {root_size >> 20} MiB, mke2fs -d)"):
        root_img.unlink(missing_ok=True)
        run(["mke2fs", "-q", "-t", "ext4", "-L", disk["root_label"], "-d", str(root),
             "-E", "root_owner=0:0", str(root_img), str(root_size // 1024)],
            "mke2fs (root)")  # fmt: skip
    with Stage(f"data partition (ext4, {data_size >> 20} MiB, grows on first boot)"):
        data_img.unlink(missing_ok=True)
        run(["mke2fs", "-q", "-t", "ext4", "-L", disk["data_label"], "-d", str(data_tree),
             str(data_img), str(data_size // 1024)], "mke2fs (data)")  # fmt: skip
    with Stage(f"disk image {image.name} ({total >> 20} MiB, MBR)"):
        tmp = image.with_suffix(".img.part")
        with tmp.open("wb") as f:
            f.truncate(total)
        s = SECTOR
        table = (
            "label: dos\n"
            f"start={BOOT_START}, size={boot_size // s}, type=c, bootable\n"
            f"start={(boot_start + boot_size) // s}, size={root_size // s}, type=83\n"
            f"start={data_start // s}, size={data_size // s}, type=83\n"
        )
        run(["sfdisk", "-q", str(tmp)], "sfdisk", input=table)
        with tmp.open("r+b") as out:
            for part, offset in ((boot_img, boot_start), (root_img, boot_start + boot_size),
                                 (data_img, data_start)):  # fmt: skip
                out.seek(offset)
                with part.open("rb") as src:
                    shutil.copyfileobj(src, out, 16 << 20)
                part.unlink()
        os.replace(tmp, image)


def mounts_under(path: Path) -> list[str]:
    prefix = str(path.resolve()) + "/"
    targets = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        target = line.split()[4].encode().decode("unicode_escape")
        if target.startswith(prefix):
            targets.append(target)
    return sorted(targets, key=len, reverse=True)


def remove_tree(path: Path) -> None:
    """rm -r, but first unmount what a failed mmdebstrap may have left mounted in it."""
    for target in mounts_under(path):
        if subprocess.run(["umount", target], capture_output=True, check=False).returncode:
            subprocess.run(["umount", "-l", target], capture_output=True, check=False)
    left = mounts_under(path)
    if left:
        raise ImageError(f"{left[0]} is still mounted: unmount it, then build again")
    if path.exists():
        shutil.rmtree(path)


def build(board: str, deb: Path, out: Path, test: bool = False) -> Path:
    desc = load_board(board)
    # A wrong [power] or [memory] table stops the build before mmdebstrap, not after.
    power_files(desc)
    memory_files(desc)
    stem = image_stem(board, test)
    check_host()
    if not deb.is_file():
        raise ImageError(f"{deb} does not exist: run `make deb` first")
    out.mkdir(parents=True, exist_ok=True)
    work = out / f"work-{stem}"
    rootdir = work / "root"
    remove_tree(work)
    work.mkdir(parents=True)
    image = out / f"{stem}.img"
    started = time.monotonic()
    with Stage(f"mmdebstrap {desc['suite']} {desc['arch']} ({len(desc['packages'])} packages "
               f"+ {deb.name})"):  # fmt: skip
        mmdebstrap(desc, deb.resolve(), rootdir, work / "setup", test)
    # The kernel and initrd the boot test hands to QEMU (-kernel/-initrd), and the dtbs.
    boot_copy = out / f"{stem}.boot"
    if boot_copy.exists():
        shutil.rmtree(boot_copy)
    shutil.copytree(rootdir / "boot/firmware", boot_copy)
    for name in ("vmlinuz", "initrd.img"):
        found = sorted((rootdir / "boot").glob(f"{name}-*"))
        if found:
            shutil.copyfile(found[-1], boot_copy / name)
    make_disk(rootdir, work, desc, image)
    remove_tree(work)
    total = time.monotonic() - started
    print(f"\n{image} ({image.stat().st_size >> 20} MiB) in {total:.0f} s:")
    for name, spent in Stage.times.items():
        print(f"  {spent:7.1f} s  {name}")
    return image


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="image/build.py", description=__doc__.splitlines()[0])
    p.add_argument("board", help="zero2w or pi5 (image/boards/BOARD.toml)")
    p.add_argument("--deb", type=Path, help="the pendant package (default: image/out/pendant_*)")
    p.add_argument("--out", type=Path, default=HERE / "out")
    p.add_argument(
        "--test", action="store_true", help="a test image, pendant-BOARD-test.img: with the hook"
    )
    p.add_argument("--customize", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    try:
        if args.customize:
            customize(args.customize, load_board(args.board), args.test)
            return 0
        deb = args.deb or next(iter(sorted(args.out.glob("pendant_*_all.deb"))[-1:]), None)
        if deb is None:
            raise ImageError(f"no pendant_*_all.deb in {args.out}: run `make deb` first")
        build(args.board, deb, args.out, args.test)
    except ImageError as exc:
        print(f"image: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("image: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
