"""The image's descriptions, tools and first-boot logic, offline and in seconds.

What needs root, mmdebstrap or QEMU is in tests/system/test_image_boot.py (its own make target).
Here: the board descriptions merge and name files that exist, the .deb description is
complete, the rpi-image-gen layer is valid YAML referencing files that exist, `flash` refuses
what it must (on a fake sysfs and lsblk), and first boot applies the boot partition's settings
and removes the secrets it consumed (on a scratch root).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO

IMAGE = REPO / "image"
# The device config the package installs as /etc/pendant/pendant.toml.
DEVICE_DEFAULTS = REPO / "device/pendant/data/device-pendant.toml"


def _load(name: str, path: Path):  # image/ and packaging/ are scripts, not packages
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


image_build = _load("pendant_image_build", IMAGE / "build.py")
flash = _load("pendant_image_flash", IMAGE / "flash.py")
boot_test = _load("pendant_image_boot_test", IMAGE / "boot_test.py")
devicetree = _load("pendant_image_devicetree", IMAGE / "devicetree.py")
sys.path.insert(0, str(REPO / "packaging"))  # build_deb imports lock.py from beside it
build_deb = _load("pendant_build_deb", REPO / "packaging" / "build_deb.py")

BOARDS = ["zero2w", "pi5", "zero2w-camera"]


# --------------------------------------------------------------------------- boards


@pytest.mark.parametrize("board", BOARDS)
def test_board_descriptions_merge_onto_common(board: str) -> None:
    desc = image_build.load_board(board)
    assert desc["arch"] == "arm64"
    assert {"raspi-firmware", "linux-image-arm64", "systemd", "python3", "mosquitto"} <= set(
        desc["packages"]
    )
    assert desc["raspi_firmware"]["ROOTPART"] == f"LABEL={desc['disk']['root_label']}"
    assert "CONSOLES" in desc["raspi_firmware"]
    mods = set(desc["initramfs_modules"])
    assert {"sdhci_iproc", "sdhci_brcmstb", "mmc_block", "bcm2835", "ext4", "vfat"} <= mods
    total = image_build.parse_size(desc["disk"]["size"])
    assert total & (total - 1) == 0, "QEMU's raspi3b wants a power-of-two SD card"
    assert image_build.parse_size(desc["disk"]["boot_size"]) + image_build.parse_size(
        desc["disk"]["root_size"]
    ) < total - (64 << 20)
    # Journal in RAM, bounded; state on the data partition.
    assert "/var/log" in desc["wear"]["tmpfs"]
    assert {"/etc/pendant", "/var/lib/pendant"} <= set(desc["wear"]["persist"])


# systemd creates these under /var, which is on the read-only root.
_UNIT_DIRS = {
    "StateDirectory": "/var/lib",
    "CacheDirectory": "/var/cache",
    "LogsDirectory": "/var/log",
}


def test_every_units_state_and_cache_directory_is_writable_on_the_read_only_root() -> None:
    # The ears' CacheDirectory= once failed every start on the image with 239/CACHE_DIRECTORY.
    wear = image_build.load_board("zero2w")["wear"]
    writable = [*wear["persist"], *wear["tmpfs"]]
    units = [*(REPO / "services").glob("*.service"),
             *(IMAGE / "rootfs/usr/lib/systemd/system").glob("*.service")]  # fmt: skip
    checked = 0
    for unit in units:
        for key, value in re.findall(r"(?m)^(\w+Directory)=(.+)$", unit.read_text()):
            if key not in _UNIT_DIRS:
                continue
            for name in value.split():
                path = f"{_UNIT_DIRS[key]}/{name.split(':')[0]}"
                checked += 1
                assert any(path == w or path.startswith(w + "/") for w in writable), (
                    f"{unit.name}: {key}={name} is {path}, on the read-only root"
                )
    assert checked >= 2


def test_pi5_is_trixie_with_backports_kernel_and_login() -> None:
    desc = image_build.load_board("pi5")
    assert desc["suite"] == "trixie"
    assert desc["pin"]["linux-image-arm64"] == "trixie-backports"
    assert {"passwd", "login"} <= set(desc["packages"])


def test_zero2w_wifi_firmware_from_backports() -> None:
    desc = image_build.load_board("zero2w")
    assert desc["suite"] == "bookworm"
    assert desc["pin"]["firmware-brcm80211"] == "bookworm-backports"
    assert "bookworm-backports" in desc["extra_suites"]
    # No camera stack on the image CI tests: that is the zero2w-camera board's.
    assert "libcamera-ipa" not in desc["packages"]
    assert [f.name for f in image_build.fragments(desc)] == ["i2s-mic.dtsi"]


def test_zero2w_camera_is_trixie_with_its_wifi_firmware_and_login() -> None:
    # trixie's firmware-brcm80211 (20250410) is the version bookworm took from backports: it
    # has brcmfmac43430-sdio.raspberrypi,model-zero-2-w.txt, which the 6.12 brcmfmac asks for.
    desc = image_build.load_board("zero2w-camera")
    assert desc["suite"] == "trixie"
    assert "firmware-brcm80211" in desc["packages"]
    assert not desc.get("extra_suites") and not desc.get("pin")
    assert {"passwd", "login"} <= set(desc["packages"])


def test_zero2w_camera_is_the_zero2w_board_and_the_camera() -> None:
    """The same board as zero2w (trees, console, CPU, power), on trixie with the camera."""
    zero2w, camera = image_build.load_board("zero2w"), image_build.load_board("zero2w-camera")
    for key in ("device_trees", "raspi_firmware", "qemu_cpu", "power", "disk", "wear"):
        assert camera[key] == zero2w[key], key
    added = {"passwd", "login", "libcamera-ipa", "python3-libcamera"}
    assert set(camera["packages"]) - set(zero2w["packages"]) == added


def test_zero2w_camera_carries_libcamera_with_the_pi_pipeline_and_its_python_bindings() -> None:
    # libcamera-ipa: ipa_rpi_vc4.so and the sensors' tuning files; python3-libcamera: the
    # bindings for trixie's CPython 3.13, which the venv sees (--system-site-packages).
    desc = image_build.load_board("zero2w-camera")
    assert {"libcamera-ipa", "python3-libcamera"} <= set(desc["packages"])
    assert "venv --system-site-packages" in (REPO / "packaging/build_deb.py").read_text()


def test_the_camera_check_is_a_make_target_and_not_in_ci() -> None:
    makefile = (REPO / "Makefile").read_text()
    assert "image-camera-check:" in makefile and "BOARD=zero2w-camera" in makefile
    assert "zero2w-camera" not in (REPO / ".ci/run").read_text()


def test_unknown_board_is_one_line() -> None:
    with pytest.raises(image_build.ImageError, match="unknown board 'pi4': pick one of"):
        image_build.load_board("pi4")


@pytest.mark.parametrize("text", ["2X", "", "-1G", "1.5G"])
def test_bad_sizes_are_refused(text: str) -> None:
    with pytest.raises(image_build.ImageError, match="write it as"):
        image_build.parse_size(text)


def test_enabled_units_exist_in_the_overlay_or_the_package() -> None:
    desc = image_build.load_board("zero2w")
    ours = {Path(p).name for p in image_build.overlay_files(desc, test=True)}
    packaged = {p.name for p in (REPO / "services").glob("pendant*")} | {"pendant-setup.service"}
    from_debian = {"systemd-networkd.service", "systemd-resolved.service", "ssh.service",
                   "systemd-timesyncd.service", "wpa_supplicant@wlan0.service"}  # fmt: skip
    enabled = image_build.units_to_enable(desc, test=True)
    for unit in [*enabled, *(u for w in desc["wants"].values() for u in w)]:
        assert unit in ours | packaged | from_debian, unit


# Issue 14 item 21: the hook runs scripts from the FAT partition as root when cmdline.txt says
# pendant.test=1. Anyone who can write the card's FAT partition (any computer) could use it.
HOOK_UNIT = "pendant-test-hook.service"


@pytest.mark.parametrize("board", BOARDS)
def test_a_release_build_has_no_test_hook_and_a_test_build_has_it(board: str) -> None:
    desc = image_build.load_board(board)
    release = image_build.overlay_files(desc)
    test = image_build.overlay_files(desc, test=True)
    assert not [p for p in release if "pendant-test" in p], release
    assert HOOK_UNIT not in image_build.units_to_enable(desc)
    assert f"usr/lib/systemd/system/{HOOK_UNIT}" in test
    assert HOOK_UNIT in image_build.units_to_enable(desc, test=True)
    # The test build is the release build plus the hook and its drop-ins, nothing changed.
    assert {k: v for k, v in test.items() if k in release} == release
    assert image_build.image_stem(board) == f"pendant-{board}"
    assert image_build.image_stem(board, test=True) == f"pendant-{board}-test"


def test_the_test_drop_ins_only_show_the_test_inputs() -> None:
    desc = image_build.load_board("zero2w")
    release = image_build.overlay_files(desc)
    test = image_build.overlay_files(desc, test=True)
    drop_ins = {k: v for k, v in test.items() if k not in release and k.endswith(".conf")}
    # And the device timeout, longer for emulation on a loaded machine (systemd's own setting).
    manager = drop_ins.pop("usr/lib/systemd/system.conf.d/pendant-test.conf")
    assert "\nDefaultDeviceTimeoutSec=600\n" in manager.read_text()
    assert set(drop_ins) == {
        f"usr/lib/systemd/system/pendant-{u}.service.d/pendant-test.conf" for u in ("ears", "eyes")
    }
    for name, src in drop_ins.items():
        lines = [ln for ln in src.read_text().splitlines() if ln and not ln.startswith("#")]
        # The ears' start, beside the eyes' preparation on QEMU's four cores run on two.
        longer = ["TimeoutStartSec=600s"] if "pendant-ears" in name else []
        assert lines == ["[Service]", "BindReadOnlyPaths=-/run/pendant-test", *longer], src


@pytest.mark.parametrize("test", [False, True])
def test_the_customize_hook_is_told_which_build_it_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, test: bool
) -> None:
    ran: list[list[str]] = []
    monkeypatch.setattr(image_build, "run", lambda cmd, *a, **kw: ran.append(cmd) or "")
    desc = image_build.load_board("zero2w")
    image_build.mmdebstrap(desc, tmp_path / "p.deb", tmp_path / "root", tmp_path / "setup", test)
    (hook,) = [a for a in ran[0] if a.startswith("--customize-hook=")]
    assert hook.endswith('--customize "$1" zero2w' + (" --test" if test else "")), hook


def test_a_release_root_with_the_hook_is_refused(tmp_path: Path) -> None:
    desc = image_build.load_board("zero2w")
    (tmp_path / "etc/systemd/system/multi-user.target.wants").mkdir(parents=True)
    assert image_build.hook_units_in(tmp_path, desc) == []
    unit = tmp_path / "usr/lib/systemd/system" / HOOK_UNIT
    unit.parent.mkdir(parents=True)
    unit.write_text("[Service]\n")
    (tmp_path / "etc/systemd/system/multi-user.target.wants" / HOOK_UNIT).symlink_to(unit)
    assert image_build.hook_units_in(tmp_path, desc) == [
        f"/usr/lib/systemd/system/{HOOK_UNIT}",
        f"/etc/systemd/system/multi-user.target.wants/{HOOK_UNIT}",
    ]


def test_the_boot_test_boots_the_test_image(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(boot_test, "OUT", tmp_path)
    with pytest.raises(FileNotFoundError, match=r"pendant-zero2w-test\.img"):
        boot_test.boot("zero2w")


def _follow(script: str, silence_s: float = 1.0) -> tuple[list[str], dict[str, float]]:
    """A stand-in guest (a shell printing as the console would) read as a boot is."""
    proc = subprocess.Popen(["sh", "-c", script], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
    return boot_test.follow(proc, timeout=60, silence_s=silence_s)


def test_a_guest_whose_hook_falls_silent_while_its_kernel_beats_is_told_apart() -> None:
    # journald (the hook's path to the console) stuck, the guest itself running.
    beat = f'echo "[ 480.1] {boot_test.HEARTBEAT} 480.1"'
    chunks, times = _follow(f'echo "{boot_test.MARK} hook started"; while :; do {beat}; '
                            "sleep 0.1; done")  # fmt: skip
    assert "silent" in times and "hook" in times
    assert "but the kernel's heartbeat" in chunks[-1], chunks[-1]
    assert "QEMU meanwhile used" in chunks[-1]


def test_a_guest_that_stops_whole_is_given_up_and_says_so() -> None:
    chunks, times = _follow(f'echo "{boot_test.MARK} hook started"; exec sleep 30')
    assert "silent" in times
    assert chunks[-1].startswith(f"{boot_test.MARK} the guest printed nothing for 1 s")
    assert "not even the kernel's heartbeat" in chunks[-1], chunks[-1]


def test_a_guest_whose_heartbeat_stops_too_is_given_up_before_the_long_silence() -> None:
    # The kernel beat, then nothing at all: the whole guest stopped, told apart in `stopped_s`
    # rather than the hook's longer `silence_s`.
    beat = f'echo "[ 480.1] {boot_test.HEARTBEAT} 480.1"'
    proc = subprocess.Popen(["sh", "-c", f'echo "{boot_test.MARK} hook started"; {beat}; '
                             "exec sleep 30"], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
    chunks, times = boot_test.follow(proc, timeout=60, silence_s=20.0, stopped_s=1.0)
    assert "stopped" in times and times["stopped"] < 20
    assert "not even the kernel's heartbeat" in chunks[-1], chunks[-1]


def test_the_vcpus_are_read_from_qemus_monitor(tmp_path: Path) -> None:
    if shutil.which("qemu-system-aarch64") is None:
        pytest.skip("qemu-system-aarch64 is missing: apt install qemu-system-arm")
    sock = tmp_path / "monitor.sock"
    proc = subprocess.Popen(["qemu-system-aarch64", "-M", "virt", "-cpu", "cortex-a53", "-smp",
                             "2", "-nographic", "-nic", "none", "-monitor",
                             f"unix:{sock},server=on,wait=off"], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        for _ in range(100):
            if sock.exists():
                break
            time.sleep(0.1)
        state = boot_test.vcpu_state(sock)
    finally:
        proc.kill()
        proc.wait()
    assert state.startswith("; vCPUs #0 pc=") and ", #1 pc=" in state, state
    assert boot_test.vcpu_state(tmp_path / "gone.sock") == ""


def test_a_monitor_path_too_long_for_a_socket_is_left_out(tmp_path: Path) -> None:
    # QEMU will not start at all with a longer one (a checkout deeper than about 60 characters
    # put it in image/out): the boot goes on without its monitor instead.
    assert boot_test.monitor_socket(tmp_path) == tmp_path / "monitor.sock"
    deep = tmp_path / ("d" * (boot_test.SOCKET_PATH_MAX - len(str(tmp_path)) - 13))
    assert len(str(deep / "monitor.sock")) == boot_test.SOCKET_PATH_MAX + 1
    assert boot_test.monitor_socket(deep) is None
    if shutil.which("qemu-system-aarch64") is not None:  # what QEMU makes of that path
        deep.mkdir()
        run = subprocess.run(["qemu-system-aarch64", "-M", "virt", "-display", "none", "-nic",
                              "none", "-S", "-monitor",
                              f"unix:{deep / 'monitor.sock'},server=on,wait=off"],
                             capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
        assert run.returncode != 0 and "too long" in run.stderr, run.stderr


def test_a_guest_that_keeps_printing_is_not_silent() -> None:
    line = f'echo "{boot_test.MARK} waiting"'
    chunks, times = _follow(f"for i in $(seq 20); do {line}; sleep 0.2; done; "
                            f'echo "{boot_test.MARK} done 9.9"', silence_s=2.0)  # fmt: skip
    assert "silent" not in times and "done" in times
    assert chunks[-1] == f"{boot_test.MARK} done 9.9"


def test_a_processs_use_is_read_and_a_gone_one_has_none() -> None:
    before = boot_test.usage(os.getpid())
    with open("/dev/zero", "rb") as zero:
        zero.read(3 << 20)
    after = boot_test.usage(os.getpid())
    assert before is not None and after is not None
    assert after.read_mb - before.read_mb >= 3
    assert after.cpu_s >= before.cpu_s
    proc = subprocess.Popen(["true"])
    proc.wait()
    assert boot_test.usage(proc.pid) is None


def test_setup_hook_writes_raspi_firmware_defaults_before_packages(tmp_path: Path) -> None:
    hook = image_build.setup_hook(image_build.load_board("zero2w"), tmp_path / "setup")
    files = tmp_path / "setup"
    assert 'ROOTPART="LABEL=pendant-root"' in (files / "etc/default/raspi-firmware").read_text()
    assert "MODULES=list" in (files / "etc/initramfs-tools/conf.d/pendant.conf").read_text()
    assert "sdhci_iproc" in (files / "usr/share/initramfs-tools/modules.d/pendant").read_text()
    pins = (files / "etc/apt/preferences.d/pendant").read_text()
    assert "Pin: release n=bookworm-backports" in pins
    assert "dtparam=i2s=on" in (files / "etc/default/raspi-firmware-custom").read_text()
    root = tmp_path / "root"
    root.mkdir()
    subprocess.run(["sh", "-c", hook, "sh", str(root)], check=True)
    assert (root / "etc/default/raspi-firmware").is_file()


# --------------------------------------------------------------------------- the board's tree

# The nodes of Debian's bcm2837 trees (kernel 6.12, trixie) that the mic and camera fragments
# touch, at the same paths and with the same properties (decompiled from
# bcm2837-rpi-zero-2-w.dtb); the image test checks the real tree the build made, and the
# raspi3b boot shows the kernel bringing the card up and where the sensor is.
BCM2837_STANDIN = """/dts-v1/;
/ {
	#address-cells = <1>; #size-cells = <1>;
	soc {
		compatible = "simple-bus"; #address-cells = <1>; #size-cells = <1>; ranges;
		gpio@7e200000 {
			compatible = "brcm,bcm2835-gpio"; reg = <0x7e200000 0xb4>;
			gpio-controller; #gpio-cells = <2>;
			i2c0_gpio0: i2c0-gpio0 { brcm,pins = <0 1>; brcm,function = <4>; };
			i2c0-gpio44 { brcm,pins = <44 45>; brcm,function = <5>; };
			pcm-gpio18 { brcm,pins = <18 19 20 21>; brcm,function = <4>; };
			pcm-gpio28 { brcm,pins = <28 29 30 31>; brcm,function = <6>; };
		};
		i2s@7e203000 {
			compatible = "brcm,bcm2835-i2s"; reg = <0x7e203000 0x24>; status = "disabled";
		};
		i2c@7e205000 {
			compatible = "brcm,bcm2835-i2c"; reg = <0x7e205000 0x200>;
			#address-cells = <1>; #size-cells = <0>; status = "okay";
			pinctrl-names = "default"; pinctrl-0 = <&i2c0_gpio0>;
		};
		csi@7e801000 {
			compatible = "brcm,bcm2835-unicam"; reg = <0x7e801000 0x800 0x7e802004 0x04>;
			brcm,num-data-lanes = <4>; status = "disabled";
			port { };
		};
	};
};
"""


def _dtb(tmp_path: Path, name: str, source: str) -> Path:
    dts = tmp_path / f"{name}.dts"
    dts.write_text(source)
    out = tmp_path / f"{name}.dtb"
    subprocess.run(["dtc", "-q", "-I", "dts", "-O", "dtb", "-o", str(out), str(dts)], check=True)
    return out


def _get(dtb: Path, node: str, prop: str, kind: str = "s") -> str:
    return subprocess.run(["fdtget", "-t", kind, str(dtb), node, prop], capture_output=True,
                          text=True, check=True).stdout.strip()  # fmt: skip


def _has(dtb: Path, node: str, prop: str) -> bool:
    done = subprocess.run(["fdtget", str(dtb), node, prop], capture_output=True, check=False)
    return done.returncode == 0


def mic_tree_facts(dtb: Path) -> dict[str, str]:
    """What a kernel needs to see for the I2S mic card, read back from a compiled tree."""
    # The fragment's own pin group: the boards' own is pcm_gpio18 in 6.1 and pcm-gpio18 in 6.12.
    i2s, pcm = "/soc/i2s@7e203000", "/soc/gpio@7e200000/pendant-mic-pcm-gpio18"
    card = "/pendant-mic-sound"
    return {
        "i2s status": _get(dtb, i2s, "status"),
        "i2s pins": "pendant-mic-pcm-gpio18"
        if _get(dtb, i2s, "pinctrl-0", "u") == _get(dtb, pcm, "phandle", "u")
        else "other",
        "pins": _get(dtb, pcm, "brcm,pins", "u") + " alt " + _get(dtb, pcm, "brcm,function", "u"),
        "card": _get(dtb, card, "compatible") + " " + _get(dtb, card, "simple-audio-card,name"),
        "cpu dai is i2s": str(
            _get(dtb, f"{card}/simple-audio-card,cpu", "sound-dai", "u")
            == _get(dtb, i2s, "phandle", "u")
        ),
        "clocks from": "cpu"
        if _get(dtb, card, "simple-audio-card,bitclock-master", "u")
        == _get(dtb, f"{card}/simple-audio-card,cpu", "phandle", "u")
        else "codec",
        "codec": _get(dtb, "/pendant-mic-codec", "compatible"),
    }


MIC_TREE = {
    "i2s status": "okay",
    "i2s pins": "pendant-mic-pcm-gpio18",
    "pins": "18 19 20 21 alt 4",
    "card": "simple-audio-card adau7002",
    "cpu dai is i2s": "True",
    "clocks from": "cpu",
    "codec": "dmic-codec",
}


def camera_tree_facts(dtb: Path) -> dict[str, str]:
    """What a kernel needs to see for the IMX219 on the CSI port, read back from a tree."""
    gpio, csi = "/soc/gpio@7e200000", "/soc/csi@7e801000"
    mux, sensor = "/pendant-i2c0-mux", "/pendant-i2c0-mux/i2c@1/camera@10"
    phandle = lambda node: _get(dtb, node, "phandle", "u")  # noqa: E731
    return {
        "sensor": _get(dtb, sensor, "compatible") + " @" + _get(dtb, sensor, "reg", "x"),
        "mux": _get(dtb, mux, "compatible"),
        "mux parent is i2c0": str(
            _get(dtb, mux, "i2c-parent", "u") == phandle("/soc/i2c@7e205000")
        ),
        "camera bus pins": "i2c0-gpio44"
        if _get(dtb, mux, "pinctrl-1", "u") == phandle(f"{gpio}/i2c0-gpio44")
        else "other",
        "i2c0 pins left to the mux": str(not _has(dtb, "/soc/i2c@7e205000", "pinctrl-0")),
        "csi status": _get(dtb, csi, "status")
        + " lanes "
        + _get(dtb, csi, "brcm,num-data-lanes", "u"),
        "sensor to csi": str(
            _get(dtb, f"{sensor}/port/endpoint", "remote-endpoint", "u")
            == phandle(f"{csi}/port/endpoint")
            and _get(dtb, f"{csi}/port/endpoint", "remote-endpoint", "u")
            == phandle(f"{sensor}/port/endpoint")
        ),
        "data lanes": _get(dtb, f"{sensor}/port/endpoint", "data-lanes", "u"),
        "power gpio": _get(dtb, "/pendant-cam1-vana", "gpio", "u").split()[1],
        "clock hz": _get(dtb, "/pendant-cam1-clk", "clock-frequency", "u"),
    }


CAMERA_TREE = {
    "sensor": "sony,imx219 @10",
    "mux": "i2c-mux-pinctrl",
    "mux parent is i2c0": "True",
    "camera bus pins": "i2c0-gpio44",
    "i2c0 pins left to the mux": "True",
    "csi status": "okay lanes 2",
    "sensor to csi": "True",
    "data lanes": "1 2",
    "power gpio": "40",
    "clock hz": "24000000",
}


def test_mic_and_camera_are_compiled_into_the_board_tree(tmp_path: Path) -> None:
    base = _dtb(tmp_path, "bcm2837", BCM2837_STANDIN)
    out = devicetree.with_fragment(
        base, tmp_path / "pendant-bcm2837.dtb", [devicetree.MIC, devicetree.CAMERA]
    )
    assert mic_tree_facts(out) == MIC_TREE
    assert camera_tree_facts(out) == CAMERA_TREE


@pytest.mark.parametrize("kernel", ["6.1", "6.12"])
def test_the_mic_alone_compiles_into_either_kernels_tree(tmp_path: Path, kernel: str) -> None:
    # bookworm's 6.1 (the zero2w image) spells the board's pin groups pcm_gpio18, i2c0_gpio44;
    # trixie's 6.12 (zero2w-camera) pcm-gpio18: the mic's own pin group fits both.
    text = BCM2837_STANDIN.replace("-gpio", "_gpio") if kernel == "6.1" else BCM2837_STANDIN
    out = devicetree.with_fragment(_dtb(tmp_path, "board", text), tmp_path / "pendant.dtb")
    assert mic_tree_facts(out) == MIC_TREE
    assert not _has(out, "/pendant-i2c0-mux", "compatible")  # the default is the mic only


def test_the_zero2w_camera_board_names_its_fragments_in_order() -> None:
    desc = image_build.load_board("zero2w-camera")
    assert [f.name for f in image_build.fragments(desc)] == ["i2s-mic.dtsi", "imx219-camera.dtsi"]
    assert all(f.is_file() for f in image_build.fragments(desc))


def test_the_camera_fragment_alone_compiles_into_the_board_tree(tmp_path: Path) -> None:
    base = _dtb(tmp_path, "bcm2837", BCM2837_STANDIN)
    out = devicetree.with_fragment(base, tmp_path / "cam.dtb", devicetree.CAMERA)
    assert camera_tree_facts(out) == CAMERA_TREE
    assert _get(out, "/soc/i2s@7e203000", "status") == "disabled"  # no mic asked for


def test_mic_tree_errors_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(devicetree.DeviceTreeError, match="does not exist"):
        devicetree.with_fragment(tmp_path / "nope.dtb", tmp_path / "out.dtb")
    # A board whose tree lacks the BCM283x GPIO and I2S blocks: dtc's own message, one line,
    # names the first path it missed.
    other = _dtb(tmp_path, "other", "/dts-v1/;\n/ { soc { }; };\n")
    with pytest.raises(devicetree.DeviceTreeError) as err:
        devicetree.with_fragment(other, tmp_path / "out.dtb", devicetree.MIC)
    assert "\n" not in str(err.value) and "/soc/gpio@7e200000 not found" in str(err.value)
    # The camera's fragment names 6.12's pin groups; bookworm's 6.1 trees spell them with
    # underscores (i2c0_gpio0, i2c0_gpio44): the message names the first path it missed.
    old = _dtb(tmp_path, "old", BCM2837_STANDIN.replace("-gpio", "_gpio"))
    with pytest.raises(devicetree.DeviceTreeError) as err:
        devicetree.with_fragment(old, tmp_path / "out.dtb", [devicetree.MIC, devicetree.CAMERA])
    assert "\n" not in str(err.value) and "i2c0-gpio0" in str(err.value)
    assert not (tmp_path / "out.dtb").exists()


def test_zero2w_config_txt_points_the_board_at_the_mic_tree() -> None:
    desc = image_build.load_board("zero2w")
    config = image_build.setup_files(desc)["etc/default/raspi-firmware-custom"]
    assert desc["device_trees"] == {"pi02": "bcm2837-rpi-zero-2-w.dtb"}
    # After the overlays (which Debian's firmware lacks), and back to [all] at the end.
    tail = config[config.rindex("dtoverlay=adau7002-simple") :]
    assert "[pi02]\ndevice_tree=pendant-bcm2837-rpi-zero-2-w.dtb\n[all]\n" in tail
    assert (
        "device_tree="
        not in image_build.setup_files(image_build.load_board("pi5"))[
            "etc/default/raspi-firmware-custom"
        ]
    )


# --------------------------------------------------------------------------- power (issue 17)

POWER_SCRIPT = IMAGE / "rootfs/usr/lib/pendant-image/power"


@pytest.mark.parametrize("board", BOARDS)
def test_the_power_settings_are_files_in_the_root_and_a_unit_applies_them(board: str) -> None:
    desc = image_build.load_board(board)
    files = image_build.power_files(desc)
    blacklisted = re.findall(r"(?m)^blacklist (\S+)$", files["etc/modprobe.d/pendant-power.conf"])
    # Bluetooth, the KMS display driver and the SoC's own audio off; on the Zero 2 W its USB
    # controller too (the Pi 5's USB is another driver, and a Coral may need it).
    want = [
        "btbcm",
        "hci_uart",
        "snd_bcm2835",
        "vc4",
        *(["dwc2"] if board.startswith("zero2w") else []),
    ]
    assert sorted(blacklisted) == sorted(want)
    default = files["etc/default/pendant-power"]
    for line in ("GOVERNOR=ondemand", "ACT_LED=off", "WIFI_POWER_SAVE=on"):
        assert re.search(rf"(?m)^{line}$", default), line
    assert "pendant-power.service" in image_build.units_to_enable(desc)
    # Run again when wlan0 appears, to put it into power save.
    assert "pendant-power.service" in desc["wants"]["sys-subsystem-net-devices-wlan0.device"]
    # Raspberry Pi OS (image/rpi-image-gen) and the Debian image's config.txt: the same parts off.
    config = image_build.setup_files(desc)["etc/default/raspi-firmware-custom"]
    assert re.search(r"(?m)^dtoverlay=disable-bt$", config)
    assert re.search(r"(?m)^dtparam=act_led_trigger=none$", config)
    assert re.findall(r"(?m)^dtparam=audio=\S+$", config) == ["dtparam=audio=off"]


def test_the_zero2w_config_txt_carries_the_lowest_idle_clock_once() -> None:
    desc = image_build.load_board("zero2w")
    assert desc["power"]["arm_freq_min_mhz"] == 400
    config = image_build.setup_files(desc)["etc/default/raspi-firmware-custom"]
    assert re.findall(r"(?m)^arm_freq_min=\S+$", config) == ["arm_freq_min=400"]
    # Under the Zero 2 W's filter (Raspberry Pi OS appends the same fragment on a Pi 5 too).
    section = config[: config.index("arm_freq_min=400")].rsplit("[", 1)[1]
    assert section.startswith("pi02]")
    # Without the hardware fragment, [power] alone writes the line.
    bare = {**desc, "hw_config_txt": "hw/config/none.txt"}
    config = image_build.setup_files(bare)["etc/default/raspi-firmware-custom"]
    assert re.findall(r"(?m)^arm_freq_min=\S+$", config) == ["arm_freq_min=400"]
    assert re.findall(r"(?m)^dtparam=audio=\S+$", config) == ["dtparam=audio=off"]


def test_the_zero2w_firmware_sets_up_no_display_pipeline() -> None:
    config = image_build.setup_files(image_build.load_board("zero2w"))[
        "etc/default/raspi-firmware-custom"
    ]
    for line in ("hdmi_ignore_hotplug=1", "hdmi_ignore_composite=1", "max_framebuffers=0"):
        assert re.findall(rf"(?m)^{line.split('=')[0]}=\S+$", config) == [line], line
    # A board with a display keeps it.
    desc = image_build.load_board("zero2w")
    desc["power"] = {**desc["power"], "display": True}
    assert "hdmi_ignore" not in image_build.power_config_txt(desc)


def test_a_config_txt_that_disagrees_with_power_is_one_line() -> None:
    desc = image_build.load_board("zero2w")
    with pytest.raises(image_build.ImageError) as err:
        image_build.power_config_txt(desc, "[pi02]\narm_freq_min=600\n[all]\n")
    assert "\n" not in str(err.value) and "arm_freq_min=600" in str(err.value)
    have = "arm_freq_min=400\ndtparam=audio=off\nhdmi_ignore_hotplug=1\n"
    assert image_build.power_config_txt(desc, have).count("=") == 2  # the two it lacks


@pytest.mark.parametrize("board", BOARDS)
def test_the_build_masks_the_timers_a_read_only_root_has_no_use_for(
    board: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    desc = image_build.load_board(board)
    masked = image_build.power_masked(desc)
    assert {"apt-daily.timer", "apt-daily-upgrade.timer", "dpkg-db-backup.timer"} <= set(masked)
    assert "fstrim.timer" not in masked  # it trims the data partition
    ran: list[tuple[str, ...]] = []
    monkeypatch.setattr(image_build, "chroot", lambda root, *cmd: ran.append(cmd) or "")
    root = tmp_path / "root"
    (root / "etc/sudoers.d").mkdir(parents=True)  # what the packages leave
    (root / "etc/group").write_text("sudo:x:27:\n")
    image_build.customize(root, {**desc, "device_trees": {}})  # no tree in this root
    assert ("systemctl", "mask", *masked) in ran
    conf = (root / "etc/modprobe.d/pendant-power.conf").read_text()
    assert "blacklist snd_bcm2835" in conf


def test_a_board_overrides_a_power_setting_and_a_wrong_one_is_one_line() -> None:
    desc = image_build.load_board("zero2w")
    desc["power"] = {**desc["power"], "hdmi": True, "act_led": True, "governor": ""}
    files = image_build.power_files(desc)
    assert "vc4" not in files["etc/modprobe.d/pendant-power.conf"]
    assert "ACT_LED=on" in files["etc/default/pendant-power"]
    assert re.search(r"(?m)^GOVERNOR=$", files["etc/default/pendant-power"])
    for bad, named in [
        ({"governer": "ondemand"}, "governer"),
        ({"governor": "turbo"}, "turbo"),
        ({"hdmi": "off"}, "hdmi"),
        ({"arm_freq_min_mhz": 20}, "arm_freq_min_mhz"),
        ({"arm_freq_min_mhz": True}, "arm_freq_min_mhz"),
        ({"mask": ["apt-daily"]}, "apt-daily"),
        ({"usb": "no"}, "usb"),
    ]:
        with pytest.raises(image_build.ImageError) as err:
            image_build.power_files({**desc, "power": bad})
        assert "\n" not in str(err.value) and named in str(err.value)


# --------------------------------------------------------------------------- memory (issue 17)


def test_every_service_of_the_package_is_known_to_the_image_build() -> None:
    units = sorted(p.stem for p in (REPO / "services").glob("pendant-*.service"))
    steps = ["pendant-eyes-prepare"]  # a oneshot that ends before its service starts
    assert sorted([f"pendant-{s}" for s in image_build.PENDANT_SERVICES] + steps) == units
    assert {"ears", "eyes", "body", "link", "web", "pairing"} == set(image_build.PENDANT_SERVICES)
    # Its memory is never beside the eyes': the eyes start after it has ended.
    eyes = (REPO / "services" / "pendant-eyes.service").read_text()
    assert re.search(r"(?m)^After=.*\bpendant-eyes-prepare\.service\b", eyes)


def test_the_zero2w_memory_limits_cover_every_service_within_its_budget() -> None:
    """Every service limited, the sum within the board's budget, the budget under its RAM.
    (Issue 17 asks for a 300 MB budget; the board file says why it is not there yet.)"""
    desc = image_build.load_board("zero2w")
    files = image_build.memory_files(desc)
    limits = {}
    for service in image_build.PENDANT_SERVICES:
        text = files[f"etc/systemd/system/pendant-{service}.service.d/40-memory.conf"]
        found = re.findall(r"(?m)^MemoryMax=(\S+)$", text)
        assert len(found) == 1 and text.startswith("#") and "\n[Service]\n" in text, text
        limits[service] = image_build.parse_size(found[0])
    assert len(files) == len(limits)
    budget = image_build.parse_size(desc["memory"]["budget"])
    assert sum(limits.values()) <= budget, limits
    # The board's RAM, which the boot test gives QEMU's raspi3b (mem=): the kernel, systemd,
    # mosquitto and the page cache need some of it too.
    assert image_build.parse_size(desc["ram"]) == 512 << 20
    assert budget < 512 << 20


def test_the_memory_drop_in_gives_way_to_set_property_and_systemctl_edit() -> None:
    # systemd applies drop-ins in the order of their names, whichever directory holds them.
    name = Path(image_build.MEMORY_DROP_IN).name
    assert sorted([name, "50-MemoryMax.conf", "override.conf"])[0] == name


def test_a_board_without_memory_keeps_the_units_limits() -> None:
    assert image_build.memory_files(image_build.load_board("pi5")) == {}


def test_the_customize_hook_writes_the_memory_drop_ins(tmp_path: Path, monkeypatch) -> None:
    desc = image_build.load_board("zero2w")
    calls = []
    monkeypatch.setattr(image_build, "chroot", lambda root, *cmd: calls.append(cmd) or "")
    monkeypatch.setattr(image_build, "hook_units_in", lambda root, desc: [])
    for d in ("etc/ssh", "etc/sudoers.d"):
        (tmp_path / d).mkdir(parents=True)
    (tmp_path / "etc/group").write_text("sudo:x:27:\n")
    (tmp_path / "boot/firmware").mkdir(parents=True)
    monkeypatch.setattr(image_build.devicetree, "with_fragment", lambda *a: None)
    image_build.customize(tmp_path, desc)
    drop_in = tmp_path / "etc/systemd/system/pendant-eyes.service.d/40-memory.conf"
    assert f"MemoryMax={desc['memory']['eyes']}" in drop_in.read_text()


@pytest.mark.parametrize(
    ("memory", "named"),
    [
        ({"ears": "100M", "eyse": "10M"}, "eyse"),
        ({"ears": "100M"}, "no limit for body"),
        ({"ears": "a lot"}, "[memory] ears"),
        ({"budget": "100M", "ears": "90M", "eyes": "20M"}, "over the budget 100M"),
    ],
)
def test_a_wrong_memory_table_is_one_line(memory: dict, named: str) -> None:
    desc = image_build.load_board("zero2w")
    if "no limit" not in named:
        memory = {**{s: "1M" for s in image_build.PENDANT_SERVICES}, **memory}
    with pytest.raises(image_build.ImageError) as err:
        image_build.memory_files({**desc, "memory": memory})
    assert "\n" not in str(err.value) and named in str(err.value), err.value


def fake_sys(root: Path, wlan0: bool) -> Path:
    sys_root = root / "sys"
    for n in (0,):
        policy = sys_root / f"devices/system/cpu/cpufreq/policy{n}"
        policy.mkdir(parents=True)
        (policy / "scaling_governor").write_text("performance\n")
    led = sys_root / "class/leds/ACT"
    led.mkdir(parents=True)
    (led / "trigger").write_text("actpwr\n")
    (led / "brightness").write_text("1\n")
    if wlan0:
        (sys_root / "class/net/wlan0").mkdir(parents=True)
    return sys_root


def run_power(tmp_path: Path, defaults: str, wlan0: bool, iw_fails: bool = False):
    sys_root = fake_sys(tmp_path, wlan0)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls.log"
    for tool, code in (("modprobe", 0), ("iw", 1 if iw_fails else 0)):
        stub = bin_dir / tool
        stub.write_text(f'#!/bin/sh\necho "{tool} $*" >> {log}\nexit {code}\n')
        stub.chmod(0o755)
    (tmp_path / "defaults").write_text(defaults)
    env = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "PENDANT_POWER_SYS": str(sys_root),
        "PENDANT_POWER_DEFAULTS": str(tmp_path / "defaults"),
    }
    proc = subprocess.run([str(POWER_SCRIPT)], env=env, capture_output=True, text=True)
    calls = log.read_text().splitlines() if log.exists() else []
    return proc, sys_root, calls


def test_the_power_script_applies_what_the_build_wrote(tmp_path: Path) -> None:
    defaults = image_build.power_files(image_build.load_board("zero2w"))[
        "etc/default/pendant-power"
    ]
    proc, sys_root, calls = run_power(tmp_path, defaults, wlan0=True)
    assert proc.returncode == 0, proc.stderr
    policy = sys_root / "devices/system/cpu/cpufreq/policy0"
    assert (policy / "scaling_governor").read_text().strip() == "ondemand"
    assert (sys_root / "class/leds/ACT/trigger").read_text().strip() == "none"
    assert (sys_root / "class/leds/ACT/brightness").read_text().strip() == "0"
    assert calls == ["modprobe -q cpufreq_ondemand", "iw dev wlan0 set power_save on"]


def test_the_power_script_leaves_alone_what_is_switched_on_or_absent(tmp_path: Path) -> None:
    proc, sys_root, calls = run_power(
        tmp_path, "GOVERNOR=\nACT_LED=on\nWIFI_POWER_SAVE=off\n", wlan0=True
    )
    assert proc.returncode == 0, proc.stderr
    assert (sys_root / "devices/system/cpu/cpufreq/policy0/scaling_governor").read_text() == (
        "performance\n"
    )
    assert (sys_root / "class/leds/ACT/trigger").read_text() == "actpwr\n"
    assert calls == []


def test_the_power_script_fails_visibly_when_wlan0_refuses(tmp_path: Path) -> None:
    proc, _, calls = run_power(tmp_path, "WIFI_POWER_SAVE=on\n", wlan0=True, iw_fails=True)
    assert proc.returncode == 1 and "wlan0 refused power save" in proc.stderr
    # No wlan0 yet (the unit runs again when it appears): nothing to do, no failure.
    proc, _, calls = run_power(tmp_path / "later", "WIFI_POWER_SAVE=on\n", wlan0=False)
    assert proc.returncode == 0 and not any(c.startswith("iw ") for c in calls)


def test_rpi_image_gen_installs_and_enables_the_power_unit() -> None:
    layer = (IMAGE / "rpi-image-gen/layer/pendant.yaml").read_text()
    assert "rootfs/usr/lib/pendant-image/power" in layer
    assert "rootfs/usr/lib/systemd/system/pendant-power.service" in layer
    assert re.search(r"enable-units .*pendant-power", layer)


def test_no_password_login_anywhere() -> None:
    sshd = (IMAGE / "rootfs/etc/ssh/sshd_config.d/pendant.conf").read_text()
    assert re.search(r"(?m)^PasswordAuthentication no$", sshd)
    assert re.search(r"(?m)^PermitRootLogin no$", sshd)
    for rpi in (IMAGE / "rpi-image-gen/pendant.d/sshd-pendant.conf",):
        assert "PasswordAuthentication no" in rpi.read_text()
    src = (IMAGE / "build.py").read_text()
    # Users get the impossible password '*', root too; nothing sets a real one.
    assert '"usermod", "--password", "*", name' in src
    assert '"usermod", "--password", "*", "root"' in src
    assert "chpasswd" not in src


def test_shell_scripts_parse() -> None:
    subprocess.run(["sh", "-n", str(IMAGE / "rootfs/usr/lib/pendant-image/grow-data")], check=True)
    subprocess.run(["sh", "-n", str(POWER_SCRIPT)], check=True)
    for text in (boot_test.HOOK, boot_test.PREPARE):
        subprocess.run(["sh", "-n", "-c", text], check=True)


# --------------------------------------------------------------------------- the .deb


def test_deb_description_names_files_that_exist() -> None:
    desc = build_deb.load_description()
    assert desc["package"]["name"] == "pendant"
    assert {"python3-venv", "mosquitto (>= 2.0)", "openssl", "libportaudio2",
            "python3-systemd"} <= set(desc["package"]["depends"])  # fmt: skip
    pythons = {(t["python"], t["machine"]) for t in desc["targets"]}
    assert {("3.11", "aarch64"), ("3.13", "aarch64")} <= pythons
    for entry in desc["files"]:
        for pattern in entry["src"]:
            assert list(REPO.glob(pattern)), pattern
    assert "whisper-base" in desc["models"]["exclude"]


def test_deb_control_and_postinst_are_offline() -> None:
    control = build_deb.control(build_deb.load_description(), "1.2.3", 1000)
    assert "Architecture: all" in control
    assert re.search(r"(?m)^Depends: .*python3-venv", control)
    assert "--no-index" in build_deb.POSTINST and "--require-hashes" in build_deb.POSTINST
    assert "/opt/pendant/venv" in build_deb.POSTINST


def test_built_deb_if_present() -> None:
    debs = sorted((IMAGE / "out").glob("pendant_*_all.deb"))
    if not debs or shutil.which("dpkg-deb") is None:
        pytest.skip("no image/out/pendant_*_all.deb: `make deb` builds it")
    info = subprocess.run(["dpkg-deb", "-f", str(debs[-1]), "Architecture", "Package"],
                          capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert "Architecture: all" in info
    listing = subprocess.run(["dpkg-deb", "-c", str(debs[-1])], capture_output=True, text=True,
                             check=True).stdout  # fmt: skip
    assert "usr/lib/systemd/system/pendant-ears.service" in listing
    assert "./usr/bin/pendant -> /opt/pendant/venv/bin/pendant" in listing
    assert re.search(r"usr/share/pendant/wheels/pendant-[^ ]+-py3-none-any\.whl", listing)
    assert re.search(r"usr/share/pendant/wheels/numpy-[^ ]+cp311[^ ]+aarch64[^ ]*\.whl", listing)
    assert "usr/share/pendant/models/silero-vad/silero_vad_16k_op15.onnx" in listing
    assert "whisper-base" not in listing


# --------------------------------------------------------------------------- rpi-image-gen


def _layer_yaml(path: Path) -> tuple[dict[str, str], dict]:
    text = path.read_text()
    meta_block = text.split("# METABEGIN", 1)[1].split("# METAEND", 1)[0]
    meta: dict[str, str] = {}
    for line in meta_block.splitlines():
        m = re.match(r"#\s*(X-Env-[\w-]+):\s*(.*)", line)
        if m:
            meta[m.group(1)] = m.group(2)
    return meta, yaml.safe_load(text)


def test_rpi_image_gen_layer_is_valid_and_complete() -> None:
    root = IMAGE / "rpi-image-gen"
    meta, layer = _layer_yaml(root / "layer" / "pendant.yaml")
    assert meta["X-Env-Layer-Name"] == "pendant"
    assert meta["X-Env-VarPrefix"] == "pendant"
    packages = layer["mmdebstrap"]["packages"]
    assert "python3-picamera2" in packages
    hooks = "\n".join(layer["mmdebstrap"]["customize-hooks"])
    assert "$IGconf_pendant_deb" in hooks
    for ref in re.findall(r"\$\{DIRECTORY\}/\.\./([\w./-]+)", hooks):
        assert (root / ref).is_file(), ref
    # The default .deb path names the file `make deb` writes.
    version = build_deb.version()
    assert meta["X-Env-Var-deb"].endswith(f"/out/pendant_{version}_all.deb")
    for config in (root / "config").glob("*.yaml"):
        data = yaml.safe_load(config.read_text())
        assert data["layer"]["app"] == "pendant"
        assert data["device"]["layer"] in {"zero2w", "pi5"}


# --------------------------------------------------------------------------- flash


def fake_machine(tmp_path: Path, removable: str, mountpoints: list, size: int = 8 << 30,
                 name: str = "sdx") -> tuple[Path, Path]:  # fmt: skip
    sys_root = tmp_path / "sys"
    (sys_root / "block" / name / "device").mkdir(parents=True)
    (sys_root / "block" / name / "removable").write_text(removable + "\n")
    lsblk = tmp_path / "lsblk.json"
    lsblk.write_text(json.dumps({"blockdevices": [{
        "name": name, "path": f"/dev/{name}", "size": size, "type": "disk",
        "rm": removable == "1", "mountpoints": [None],
        "children": [{"name": f"{name}1", "path": f"/dev/{name}1", "size": size // 2,
                      "type": "part", "mountpoints": mountpoints}],
    }]}))  # fmt: skip
    return sys_root, lsblk


@pytest.fixture
def small_image(tmp_path: Path) -> Path:
    img = tmp_path / "pendant.img"
    with img.open("wb") as f:
        f.truncate(2 << 30)
    return img


def run_flash(small_image: Path, sys_root: Path, lsblk: Path, device: str = "/dev/sdx",
              capsys: pytest.CaptureFixture[str] | None = None) -> int:  # fmt: skip
    return flash.main([device, "--image", str(small_image), "--dry-run",
                       "--sys-root", str(sys_root), "--lsblk-json", str(lsblk)])  # fmt: skip


def test_flash_accepts_a_removable_unmounted_card(
    tmp_path: Path, small_image: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sys_root, lsblk = fake_machine(tmp_path, "1", [None])
    assert run_flash(small_image, sys_root, lsblk) == 0
    assert "removable, not mounted" in capsys.readouterr().out


def test_flash_refuses_a_fixed_disk(
    tmp_path: Path, small_image: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sys_root, lsblk = fake_machine(tmp_path, "0", [None])
    assert run_flash(small_image, sys_root, lsblk) == 2
    err = capsys.readouterr().err.strip()
    assert err == "flash: error: /dev/sdx is not a removable disk: refusing to overwrite it"


def test_flash_refuses_a_mounted_card(
    tmp_path: Path, small_image: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sys_root, lsblk = fake_machine(tmp_path, "1", ["/media/me/boot"])
    assert run_flash(small_image, sys_root, lsblk) == 2
    assert "is mounted (/media/me/boot): unmount it first" in capsys.readouterr().err


def test_flash_refuses_a_partition_and_a_small_card(
    tmp_path: Path, small_image: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sys_root, lsblk = fake_machine(tmp_path, "1", [None], size=1 << 30)
    assert run_flash(small_image, sys_root, lsblk, device="/dev/sdx1") == 2
    assert "not a whole disk" in capsys.readouterr().err
    assert run_flash(small_image, sys_root, lsblk) == 2
    assert "use a bigger card" in capsys.readouterr().err


def test_flash_takes_a_builtin_sd_slot(tmp_path: Path, small_image: Path) -> None:
    sys_root, lsblk = fake_machine(tmp_path, "0", [None], name="mmcblk0")
    (sys_root / "block/mmcblk0/device/type").write_text("SD\n")
    assert run_flash(small_image, sys_root, lsblk, device="/dev/mmcblk0") == 0


# --------------------------------------------------------------------------- first boot


def load_firstboot(root: Path):
    path = IMAGE / "rootfs/usr/lib/pendant-image/firstboot"
    spec = importlib.util.spec_from_loader("firstboot", loader=None)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    import os

    os.environ["PENDANT_ROOT"] = str(root)
    try:
        exec(compile(path.read_text(), str(path), "exec"), module.__dict__)
    finally:
        del os.environ["PENDANT_ROOT"]
    return module


def test_firstboot_applies_setup_and_removes_secrets(tmp_path: Path) -> None:
    boot = tmp_path / "boot/firmware"
    boot.mkdir(parents=True)
    (tmp_path / "usr/share/zoneinfo/Europe").mkdir(parents=True)
    (tmp_path / "usr/share/zoneinfo/Europe/London").write_text("TZif")
    (tmp_path / "etc/pendant").mkdir(parents=True)
    (tmp_path / "run").mkdir()
    (boot / "setup.toml").write_text(
        'timezone = "Europe/London"\nhostname = "kitchen-pendant"\n[wifi]\nssid = "Home"\n'
        'password = "correct horse battery"\ncountry = "gb"\n'
    )
    (boot / "authorized_keys").write_text("ssh-ed25519 AAAAkey me@laptop\n# comment\n")
    fb = load_firstboot(tmp_path)
    fb.apply_setup()
    fb.SSH_KEYS.mkdir(parents=True)
    (fb.SSH_KEYS / "ssh_host_ed25519_key").write_text("already made")
    fb.apply_ssh()
    left = (boot / "setup.toml").read_text()
    assert "correct horse" not in left and "password" not in left.split("#")[0]
    assert 'ssid = "Home"' in left
    wpa = tmp_path / "etc/wpa_supplicant/wpa_supplicant-wlan0.conf"
    assert oct(wpa.stat().st_mode & 0o777) == "0o600"
    assert "country=GB" in wpa.read_text() and "correct horse" not in wpa.read_text()
    # wpa_passphrase's PSK for this SSID and passphrase (IEEE 802.11i PBKDF2-SHA1).
    assert "psk=" in wpa.read_text() and 'ssid="Home"' in wpa.read_text()
    assert (tmp_path / "etc/pendant/hostname").read_text() == "kitchen-pendant\n"
    assert str((tmp_path / "etc/pendant/localtime").readlink()).endswith("Europe/London")
    assert not (boot / "authorized_keys").exists()
    assert fb.SSH_KEYS.joinpath("authorized_keys.pendant").read_text() == (
        "ssh-ed25519 AAAAkey me@laptop\n"
    )
    assert fb.errors == []


def test_firstboot_reports_bad_setup_and_still_removes_secrets(tmp_path: Path) -> None:
    boot = tmp_path / "boot/firmware"
    boot.mkdir(parents=True)
    (tmp_path / "run").mkdir()
    (boot / "setup.toml").write_text('[wifi]\nssid = "Home"\npassword = "abc"\ncountry = "GB"\n')
    fb = load_firstboot(tmp_path)
    fb.apply_setup()
    assert fb.errors == ["setup.toml: wifi.password must be 8 to 63 characters"]
    assert "abc" not in (boot / "setup.toml").read_text()


@pytest.mark.parametrize(("section", "key", "value"), [
    ("wifi", "ssid", 'Home"\n\tkey_mgmt=NONE\n#'),
    ("wifi", "password", "correct horse\nbattery"),
    ("home_broker", "host", "10.0.0.2\ntopic # both 0"),
    ("home_broker", "user", "ha\ttopic # both 0"),
    ("home_broker", "password", "a secret\ntopic # both 0"),
])  # fmt: skip
def test_firstboot_refuses_control_characters(
    tmp_path: Path, section: str, key: str, value: str
) -> None:
    """Proves setup.toml cannot add lines to wpa_supplicant.conf or the home broker's settings:
    a value with a line break (or any control character) is reported in one line naming it,
    without the value, nothing is written, and the secrets still leave the card."""
    boot = tmp_path / "boot/firmware"
    boot.mkdir(parents=True)
    (tmp_path / "run").mkdir()
    tables = {
        "wifi": {"ssid": "Home", "password": "correct horse battery", "country": "GB"},
        "home_broker": {"host": "10.0.0.2", "user": "ha", "password": "a secret"},
    }
    table = {**tables[section], key: value}
    # JSON's string escapes are TOML's (\n, \t, \", \uXXXX).
    text = f"[{section}]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in table.items())
    assert tomllib.loads(text)[section][key] == value
    (boot / "setup.toml").write_text(text)
    fb = load_firstboot(tmp_path)
    fb.VENV_PY = Path(sys.executable)  # the home broker is set by this checkout's provisioning
    fb.apply_setup()
    assert fb.errors == [
        f"setup.toml: {section}.{key} must not contain control characters such as line breaks"
    ]
    assert not fb.WPA.exists()
    assert not list(tmp_path.glob("etc/pendant/pendant.d/*"))
    assert "secret" not in (boot / "setup.toml").read_text()
    assert "correct horse" not in (boot / "setup.toml").read_text()


@pytest.mark.parametrize(("extra", "want"), [
    ('cafile = "home-ca.crt"\n', {"cafile": "{boot}/home-ca.crt", "port": 8883, "tls": True}),
    ("", {"port": 8883, "tls": True}),  # no cafile: the system store, the link's default
    ("insecure = true\n", {"port": 1883, "tls": False}),
])  # fmt: skip
def test_firstboot_bridges_over_tls_unless_setup_says_insecure(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: str, want: list[str]
) -> None:
    """Issue 14 item 15: the home broker is reached over TLS (its CA from the card, else the
    system store); plaintext only with `insecure = true`, and then said on the console."""
    boot = tmp_path / "boot/firmware"
    boot.mkdir(parents=True)
    (tmp_path / "run").mkdir()
    (boot / "home-ca.crt").write_text("-----BEGIN CERTIFICATE-----\n")
    (boot / "setup.toml").write_text(
        '[home_broker]\nhost = "10.0.0.2"\nuser = "ha"\npassword = "a secret"\n' + extra
    )
    fb = load_firstboot(tmp_path)
    fb.VENV_PY = Path(sys.executable)  # the home broker is set by this checkout's provisioning
    fb.apply_setup()
    assert fb.errors == []
    link = tomllib.loads((tmp_path / "etc/pendant/pendant.d/home-broker.toml").read_text())["link"]
    expected = {"host": "10.0.0.2", "username": "ha", **want}
    if "cafile" in expected:
        expected["cafile"] = str(expected["cafile"]).format(boot=boot)
    assert link == expected
    assert not list(tmp_path.glob("etc/mosquitto/pendant/bridge.d/*"))
    plaintext = "insecure" in extra
    assert ("plaintext" in capsys.readouterr().out) is plaintext


def test_firstboot_setup_toml_parses_as_documented() -> None:
    readme = (IMAGE / "README.md").read_text()
    block = readme.split("```toml\n", 1)[1].split("```", 1)[0]
    setup = tomllib.loads(block)
    assert {"wifi", "home_broker", "timezone"} <= set(setup)


# --------------------------------------------------------------------------- the card's config

TEMPLATE = IMAGE / "rootfs/boot/firmware/pendant.toml"


def uncommented(text: str) -> str:
    """The template with every setting switched on: its `#[table]` and `#key = ...` lines lose
    their '#'; the explanations ('# ...') stay comments."""
    return re.sub(r"(?m)^#(?=[\[a-z_])", "", text)


@pytest.mark.parametrize("board", BOARDS)
def test_the_card_template_is_on_the_boot_partition(board: str) -> None:
    # The customize hook copies the overlay into the root; /boot/firmware becomes the FAT.
    files = image_build.overlay_files(image_build.load_board(board))
    assert files["boot/firmware/pendant.toml"] == TEMPLATE


def as_device(root: Path, card: Path) -> Path:
    """The device's config (the shipped defaults) with `card` where first boot puts it."""
    from pendant.core.config import CARD_DROP_IN

    device = root / "etc/pendant.toml"
    (root / "etc/pendant.d").mkdir(parents=True)
    shutil.copyfile(DEVICE_DEFAULTS, device)
    shutil.copyfile(card, root / "etc/pendant.d" / CARD_DROP_IN)
    return device


def test_the_card_template_as_shipped_merges_to_exactly_the_device_defaults(
    tmp_path: Path,
) -> None:
    from pendant.core.config import check_card, load_config, merged_toml

    assert tomllib.loads(TEMPLATE.read_text()) == {}
    device = as_device(tmp_path, TEMPLATE)
    assert merged_toml(device) == tomllib.loads(DEVICE_DEFAULTS.read_text())
    assert load_config(device) == load_config(DEVICE_DEFAULTS)
    assert check_card(TEMPLATE, DEVICE_DEFAULTS) == []


def test_the_card_template_uncommented_validates_and_sets_what_it_shows(tmp_path: Path) -> None:
    from pendant.core.config import check_card, load_config

    text = uncommented(TEMPLATE.read_text())
    assert text != TEMPLATE.read_text()
    settings = tomllib.loads(text)
    assert {"home", "listen", "link"} <= set(settings)
    assert {"areas", "devices", "floors", "sentences"} <= set(settings["home"])
    card = tmp_path / "pendant.toml"
    card.write_text(text)
    assert check_card(card, DEVICE_DEFAULTS) == []
    loaded = load_config(as_device(tmp_path, card))
    assert "Living Room" in loaded.home.areas and loaded.home.default_area == "Living Room"
    assert [d.name for d in loaded.home.devices] == ["Kitchen Lights", "Garage Door"]
    assert loaded.link.host == "homeassistant.local" and loaded.link.phones_apart
    assert loaded.audio.source == "mic" and loaded.models.cache_dir == "/usr/share/pendant/models"


def test_the_boot_tests_card_is_what_a_wearer_writes_and_the_merge_does_the_rest(
    tmp_path: Path,
) -> None:
    """The boot test (QEMU, not run here) relies on the merge for the device's sockets,
    outbox and models: its card holds the home and the test's simulated inputs, nothing more."""
    from pendant.core.config import check_card, load_config

    card = tmp_path / "pendant.toml"
    card.write_text(boot_test.test_config("/run/pendant-test/command.wav"))
    settings = tomllib.loads(card.read_text())
    assert set(settings) == {"home", "audio", "body", "eyes"}
    assert check_card(card, DEVICE_DEFAULTS) == []
    loaded = load_config(as_device(tmp_path, card))
    assert loaded.audio.source == "wav" and loaded.audio.gap_ms == 30_000
    assert loaded.audio.files[0] == "/run/pendant-test/command.wav"
    assert loaded.body.pin_factory == "mock" and loaded.eyes.camera == "files"
    assert loaded.bus.socket == loaded.link.socket == "/run/mosquitto/pendant.sock"
    assert loaded.link.outbox_path == "/var/lib/pendant/outbox.sqlite"
    assert loaded.models.cache_dir == "/usr/share/pendant/models"


def card_root(root: Path) -> Path:
    """A scratch root after the package's install: the device config with its id."""
    (root / "boot/firmware").mkdir(parents=True)
    config = root / "etc/pendant/pendant.toml"
    config.parent.mkdir(parents=True)
    config.write_text('device_id = "pendant-1a2b3c"\n' + DEVICE_DEFAULTS.read_text())
    return config


def test_firstboot_merges_the_cards_config_over_the_devices(tmp_path: Path) -> None:
    """Issue 15 item 5: the card's pendant.toml is merged over the device's config, and an
    edited card replaces what the card said before, never the device's own settings."""
    from pendant.core.config import load_config

    config = card_root(tmp_path)
    card = tmp_path / "boot/firmware/pendant.toml"
    card.write_text('[home]\nareas = ["Kitchen"]\n\n[listen]\nmode = "press_to_talk"\n')
    fb = load_firstboot(tmp_path)
    fb.VENV_PY = Path(sys.executable)  # this checkout's pendant checks the card
    fb.apply_config()
    assert fb.errors == []
    assert fb.CARD_CONFIG.read_text() == card.read_text()
    # Services read it as their own users: the folder made under UMask=0077 is still open.
    assert oct(fb.CARD_CONFIG.parent.stat().st_mode & 0o777) == "0o755"
    assert oct(fb.CARD_CONFIG.stat().st_mode & 0o777) == "0o644"
    loaded = load_config(config)
    assert loaded.home.areas == ["Kitchen"] and loaded.listen.mode == "press_to_talk"
    assert loaded.device_id == "pendant-1a2b3c" and loaded.audio.source == "mic"
    assert loaded.link.socket == "/run/mosquitto/pendant.sock"
    assert loaded.models.cache_dir == "/usr/share/pendant/models"
    assert config.read_text().endswith(DEVICE_DEFAULTS.read_text())  # the device's, untouched

    card.write_text('[home]\nareas = ["Hall"]\n')  # edited: [listen] is gone
    fb.apply_config()
    loaded = load_config(config)
    assert loaded.home.areas == ["Hall"] and loaded.listen.mode == "conversation"
    assert fb.errors == []


def test_firstboot_refuses_a_bad_card_in_one_line_a_problem_and_keeps_the_last(
    tmp_path: Path,
) -> None:
    from pendant.core.config import load_config

    config = card_root(tmp_path)
    card = tmp_path / "boot/firmware/pendant.toml"
    card.write_text('[home]\nareas = ["Kitchen"]\n')
    fb = load_firstboot(tmp_path)
    fb.VENV_PY = Path(sys.executable)
    fb.apply_config()
    card.write_text('[home]\naras = ["Hall"]\n[audio]\nsource = "tape"\n')
    fb.apply_config()
    assert [e.split(",")[0] for e in fb.errors] == [
        "pendant.toml not applied: home.aras: unknown key",
        "pendant.toml not applied: audio.source: Input should be 'mic' or 'wav'",
    ]
    assert load_config(config).home.areas == ["Kitchen"]
    card.write_text('[home]\nareas = ["Kitchen"\n')
    fb.errors.clear()
    fb.apply_config()
    assert fb.errors == [f"pendant.toml not applied: {card}:2:19: not valid TOML: Unclosed array"]


def test_firstboot_refuses_a_card_that_renames_a_provisioned_pendant(tmp_path: Path) -> None:
    """pendant-setup refuses a new id once the certificates name the old one, and the bus and
    every service with it: the card is refused before it gets that far."""
    card_root(tmp_path)
    (tmp_path / "etc/pendant/device_id").write_text("pendant-1a2b3c\n")
    card = tmp_path / "boot/firmware/pendant.toml"
    card.write_text('device_id = "kitchen"\n')
    fb = load_firstboot(tmp_path)
    fb.VENV_PY = Path(sys.executable)
    fb.apply_config()
    assert fb.errors == [
        "pendant.toml not applied: device_id: this pendant is 'pendant-1a2b3c' (its "
        "certificates and its broker's rules name it): remove device_id or set it to that"
    ]
    assert not fb.CARD_CONFIG.exists()
    card.write_text('device_id = "pendant-1a2b3c"\n')
    fb.errors.clear()
    fb.apply_config()
    assert fb.errors == [] and fb.CARD_CONFIG.exists()


def test_firstboot_applies_the_untouched_template_without_starting_the_venv(
    tmp_path: Path,
) -> None:
    from pendant.core.config import load_config

    config = card_root(tmp_path)
    before = load_config(config)
    shutil.copyfile(TEMPLATE, tmp_path / "boot/firmware/pendant.toml")
    fb = load_firstboot(tmp_path)
    fb.VENV_PY = tmp_path / "no-python"  # a check would fail: the template needs none
    fb.apply_config()
    assert fb.errors == []
    assert fb.CARD_CONFIG.read_text() == TEMPLATE.read_text()
    assert load_config(config) == before


# --------------------------------------------------------------------------- pendant-setup

SETUP = REPO / "packaging" / "pendant-setup"


def setup_root(root: Path, config: str | None = None) -> Path:
    """A scratch root as the package leaves it: the default config, and `config` (if given)
    already installed as /etc/pendant/pendant.toml. Returns that config's path."""
    default = root / "usr/share/pendant/device-pendant.toml"
    default.parent.mkdir(parents=True)
    shutil.copyfile(DEVICE_DEFAULTS, default)
    target = root / "etc/pendant/pendant.toml"
    if config is not None:
        target.parent.mkdir(parents=True)
        target.write_text(config)
    return target


def run_setup(root: Path, max_file_bytes: int | None = None) -> subprocess.CompletedProcess[str]:
    """packaging/pendant-setup on `root`; with `max_file_bytes`, every write past that size
    fails (RLIMIT_FSIZE): what a power cut or a full card does in the middle of a write."""
    import os
    import resource

    def limit() -> None:
        if max_file_bytes is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (max_file_bytes, max_file_bytes))

    env = {**os.environ, "PENDANT_ROOT": str(root)}
    return subprocess.run(
        [sys.executable, str(SETUP)], env=env, capture_output=True, text=True, timeout=120,
        preexec_fn=limit, check=False,
    )  # fmt: skip


def assert_one_line_error(done: subprocess.CompletedProcess[str], *words: str) -> None:
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.startswith("pendant-setup: error: ") and done.stderr.count("\n") == 1
    for word in words:
        assert word in done.stderr


def test_setup_adds_the_device_id_and_a_write_cut_short_keeps_the_old_config(
    tmp_path: Path,
) -> None:
    """Proves first boot never leaves a broken config (issue 14 item 22): when writing the
    config with its device id fails halfway, the config is exactly what it was, nothing
    half-written is left beside it, and the next boot finishes the job."""
    # Larger than anything provisioning writes, so only the config's own write hits the limit.
    padding = "".join(f"# padding line {i:05d} {'.' * 60}\n" for i in range(2000))
    original = padding + DEVICE_DEFAULTS.read_text()
    config = setup_root(tmp_path, original)

    done = run_setup(tmp_path, max_file_bytes=len(original.encode()) + 8)
    assert_one_line_error(done)
    assert config.read_text() == original
    assert sorted(p.name for p in config.parent.iterdir() if p.is_file()) == [
        "broker.json", "device_id", "pendant.toml",
    ]  # fmt: skip

    done = run_setup(tmp_path)
    assert done.returncode == 0, done.stderr
    device_id = (tmp_path / "etc/pendant/device_id").read_text().strip()
    assert config.read_text() == f'device_id = "{device_id}"\n' + original
    assert oct(config.stat().st_mode & 0o777) == "0o644"
    assert not list(config.parent.glob(".pendant.toml.*"))


def test_setup_installs_the_default_config_whole_or_not_at_all(tmp_path: Path) -> None:
    """Proves the first copy of the default config is atomic too: cut short, it leaves no
    config (the next boot copies it again), never the first part of one."""
    config = setup_root(tmp_path)
    done = run_setup(tmp_path, max_file_bytes=100)
    assert_one_line_error(done)
    assert not config.exists()

    done = run_setup(tmp_path)
    assert done.returncode == 0, done.stderr
    default = DEVICE_DEFAULTS.read_text()
    assert tomllib.loads(config.read_text())["device_id"].startswith("pendant-")
    assert config.read_text().endswith(default)
    assert oct(config.stat().st_mode & 0o777) == "0o644"


def test_setup_provisions_the_device_id_the_card_names(tmp_path: Path) -> None:
    """The card's pendant.toml is a drop-in (pendant.d/sd-card.toml): its device_id is the one
    provisioned, and the device's config is not given another."""
    config = setup_root(tmp_path)
    (config.parent / "pendant.d").mkdir(parents=True)
    (config.parent / "pendant.d/sd-card.toml").write_text('device_id = "pendant-kitchen"\n')
    done = run_setup(tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "etc/pendant/device_id").read_text() == "pendant-kitchen\n"
    assert config.read_text() == DEVICE_DEFAULTS.read_text()
    assert "pendant-kitchen provisioned" in done.stdout


@pytest.mark.parametrize("value", ["5", "true", '["pendant-a"]', "{ x = 1 }"])
def test_setup_refuses_a_device_id_that_is_not_a_string(tmp_path: Path, value: str) -> None:
    """Proves a device_id of the wrong type is a one-line error naming it, not a traceback,
    and the config is left as it was."""
    text = f"device_id = {value}\n" + DEVICE_DEFAULTS.read_text()
    config = setup_root(tmp_path, text)
    done = run_setup(tmp_path)
    assert_one_line_error(done, "device_id")
    assert config.read_text() == text


# --------------------------------------------------------------------------- the phone's name


def _openssl_text(cert: Path) -> str:
    return subprocess.run(
        ["openssl", "x509", "-in", str(cert), "-noout", "-text"],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip


def _san(cert: Path) -> set[str]:
    """The certificate's subjectAltName entries, as `openssl x509 -text` prints them."""
    text = _openssl_text(cert)
    line = text.split("X509v3 Subject Alternative Name:", 1)[1].strip().splitlines()[0]
    return {item.strip() for item in line.split(",")}


def test_the_image_answers_mdns_for_its_host_name() -> None:
    """The phone opens `<host name>.local`: systemd-resolved answers for it only when mDNS is
    on both globally (Debian 13 turns it off: the drop-in turns it on) and on each link (the
    .network files), and it is the only responder (no avahi-daemon contending for port 5353)."""
    for board in BOARDS:
        desc = image_build.load_board(board)
        assert "systemd-resolved" in desc["packages"], board
        assert "systemd-resolved.service" in image_build.units_to_enable(desc), board
        assert "avahi-daemon" not in desc["packages"], board
        files = image_build.overlay_files(desc)
        drop_in = files["etc/systemd/resolved.conf.d/pendant.conf"].read_text()
        assert re.search(r"^\[Resolve\]\nMulticastDNS=yes$", drop_in, re.M), board
        networks = [p for rel, p in files.items() if rel.startswith("etc/systemd/network/")]
        assert networks, board
        for network in networks:
            assert re.search(r"^MulticastDNS=yes$", network.read_text(), re.M), network
    # The image's own name, until setup.toml names another: the one the docs give the phone
    # (not `<device id>.local`, which nothing answers for).
    assert image_build.setup_files(image_build.load_board("zero2w"))["etc/hostname"] == (
        "pendant\n"
    )
    readme = (REPO / "README.md").read_text()
    assert "https://pendant.local:8443/pair" in readme
    assert "<device id>.local:8443" not in readme


@pytest.mark.skipif(shutil.which("mosquitto_passwd") is None, reason="apt install mosquitto")
def test_the_certificate_names_the_host_name_the_card_sets(tmp_path: Path) -> None:
    """First boot as the image does it: /etc/hostname links to /etc/pendant/hostname
    ("pendant"), pendant-setup provisions, then a card's setup.toml names the pendant
    "kitchen-pendant" (firstboot writes it) and the next pendant-setup issues a new CA and
    server certificate for the new name, without the old one; a run with nothing changed
    leaves them alone."""
    etc = tmp_path / "etc"
    (etc / "pendant").mkdir(parents=True)
    (etc / "hostname").symlink_to("/etc/pendant/hostname")  # absolute, as the image makes it
    (etc / "pendant/hostname").write_text("pendant\n")
    setup_root(tmp_path)
    done = run_setup(tmp_path)
    assert done.returncode == 0, done.stderr
    conf = tmp_path / "etc/mosquitto/pendant"
    device_id = (etc / "pendant/device_id").read_text().strip()
    names = _san(conf / "server.crt")
    assert {"DNS:pendant", "DNS:pendant.local", f"DNS:{device_id}.local"} <= names
    first_ca = (conf / "ca.crt").read_bytes()

    boot = tmp_path / "boot/firmware"
    boot.mkdir(parents=True)
    (boot / "setup.toml").write_text('hostname = "kitchen-pendant"\n')
    firstboot = load_firstboot(tmp_path)
    firstboot.apply_setup()
    assert firstboot.errors == []
    done = run_setup(tmp_path)
    assert done.returncode == 0, done.stderr
    names = _san(conf / "server.crt")
    assert {"DNS:kitchen-pendant", "DNS:kitchen-pendant.local", "DNS:localhost",
            "IP Address:127.0.0.1", f"DNS:{device_id}"} <= names  # fmt: skip
    assert not {"DNS:pendant", "DNS:pendant.local"} & names
    ca = (conf / "ca.crt").read_bytes()
    assert ca != first_ca  # the old CA's key is gone: a new name needs a new CA
    assert "DNS:kitchen-pendant.local" in _openssl_text(conf / "ca.crt")  # its constraints
    verify = subprocess.run(
        ["openssl", "verify", "-CAfile", str(conf / "ca.crt"), str(conf / "server.crt")],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert verify.returncode == 0, verify.stdout + verify.stderr

    done = run_setup(tmp_path)
    assert done.returncode == 0, done.stderr
    assert (conf / "ca.crt").read_bytes() == ca


def test_a_guest_that_said_done_and_shuts_down_quietly_is_not_stopped() -> None:
    # The hook stops its heartbeat before "done"; the power-off after it may be quiet a while.
    beat = f'echo "[ 480.1] {boot_test.HEARTBEAT} 480.1"'
    proc = subprocess.Popen(["sh", "-c", f'echo "{boot_test.MARK} hook started"; {beat}; '
                             f'echo "{boot_test.MARK} done 481.0"; sleep 7'],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)  # fmt: skip
    chunks, times = boot_test.follow(proc, timeout=60, silence_s=20.0, stopped_s=1.0)
    assert "done" in times and "stopped" not in times and "silent" not in times
    assert chunks[-1] == f"{boot_test.MARK} done 481.0"
