"""Write the pendant image to an SD card, refusing any disk that could be the wrong one.

    python image/flash.py --image image/out/pendant-zero2w.img /dev/sdX [--yes]

Refused, with one line saying why: a path that is not a whole disk, a disk the kernel does
not call removable (an SD slot, `mmcblk*` with an SD card, counts as removable), a disk with
anything mounted (itself or a partition), a disk smaller than the image. Then it asks for the
device name to be typed again (unless --yes), writes with a progress line, and syncs.
`--sys-root` and `--lsblk-json` let the tests play a machine's sysfs and lsblk.
"""

from __future__ import annotations

import argparse
import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

CHUNK = 4 << 20


class FlashError(Exception):
    """The card is not written; the message says why."""


def lsblk(device: str, json_file: Path | None) -> dict:
    if json_file is not None:
        data = json.loads(json_file.read_text())
    else:
        proc = subprocess.run(
            ["lsblk", "--json", "--bytes", "-o", "NAME,PATH,SIZE,TYPE,RM,MOUNTPOINTS", device],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if proc.returncode != 0:
            raise FlashError(f"lsblk {device}: {proc.stderr.strip() or 'failed'}")
        data = json.loads(proc.stdout)
    for dev in data.get("blockdevices", []):
        if dev.get("path") == device or f"/dev/{dev.get('name')}" == device:
            return dev
    raise FlashError(f"{device}: lsblk does not know it")


def mounted(dev: dict) -> list[str]:
    points = [m for m in (dev.get("mountpoints") or [dev.get("mountpoint")]) if m]
    for child in dev.get("children", []) or []:
        points += mounted(child)
    return points


def removable(sys_root: Path, name: str) -> bool:
    block = sys_root / "block" / name
    if (block / "removable").read_text().strip() == "1":
        return True
    # A built-in SD slot says removable=0; its card is an SD card all the same.
    dev_type = block / "device" / "type"
    return name.startswith("mmcblk") and dev_type.exists() and dev_type.read_text().strip() == "SD"


def check(device: str, image: Path, sys_root: Path, lsblk_json: Path | None) -> int:
    """The disk's size in bytes, if it may be written; FlashError otherwise."""
    if not device.startswith("/dev/"):
        raise FlashError(f"{device}: name the card's device, e.g. /dev/sdX or /dev/mmcblk0")
    name = device.removeprefix("/dev/")
    if lsblk_json is None:
        try:
            if not stat.S_ISBLK(os.stat(device).st_mode):
                raise FlashError(f"{device} is not a block device")
        except FileNotFoundError:
            raise FlashError(f"{device} does not exist: is the card in?") from None
    if not (sys_root / "block" / name).is_dir():
        raise FlashError(f"{device} is not a whole disk (a partition?): name the disk itself")
    if not removable(sys_root, name):
        raise FlashError(f"{device} is not a removable disk: refusing to overwrite it")
    dev = lsblk(device, lsblk_json)
    points = mounted(dev)
    if points:
        raise FlashError(f"{device} is mounted ({', '.join(points)}): unmount it first")
    size = int(dev.get("size") or 0)
    if size < image.stat().st_size:
        raise FlashError(
            f"{device} holds {size / 1e9:.1f} GB, the image needs "
            f"{image.stat().st_size / 1e9:.1f} GB: use a bigger card"
        )
    return size


def write(image: Path, device: str) -> None:
    total = image.stat().st_size
    done = 0
    started = time.monotonic()
    with image.open("rb") as src, open(device, "r+b", buffering=0) as dst:
        while block := src.read(CHUNK):
            dst.write(block)
            done += len(block)
            rate = done / max(time.monotonic() - started, 1e-3) / 1e6
            print(f"\r  {done * 100 // total:3d} %  {done >> 20} / {total >> 20} MiB  "
                  f"{rate:.1f} MB/s", end="", flush=True)  # fmt: skip
        print("\n  syncing ...", flush=True)
        os.fsync(dst.fileno())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="image/flash.py", description=__doc__.splitlines()[0])
    p.add_argument("device", help="the SD card, e.g. /dev/sdX")
    p.add_argument("--image", type=Path, required=True)
    p.add_argument("--yes", action="store_true", help="do not ask for the device name again")
    p.add_argument("--dry-run", action="store_true", help="check only")
    p.add_argument("--sys-root", type=Path, default=Path("/sys"), help=argparse.SUPPRESS)
    p.add_argument("--lsblk-json", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    try:
        if not args.image.is_file():
            raise FlashError(f"{args.image} does not exist: run `make image` first")
        size = check(args.device, args.image, args.sys_root, args.lsblk_json)
        print(f"{args.device}: removable, not mounted, {size / 1e9:.1f} GB")
        if args.dry_run:
            return 0
        if not args.yes:
            answer = input(f"Everything on {args.device} will be lost. Type its name again: ")
            if answer.strip() != args.device:
                raise FlashError("the names differ: nothing written")
        write(args.image, args.device)
    except FlashError as exc:
        print(f"flash: error: {exc}", file=sys.stderr)
        return 2
    except (OSError, ValueError) as exc:
        print(f"flash: error: {exc}", file=sys.stderr)
        return 2
    print(f"{args.image.name} written to {args.device}: put the card in the pendant")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
