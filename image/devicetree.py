"""The pendant's device trees for Debian's kernel: a board's tree with the I2S mic card and the
camera in it.

    python image/devicetree.py BASE.dtb OUT.dtb [--fragment image/dts/i2s-mic.dtsi ...]

Debian's raspi-firmware ships no overlays, so `dtoverlay=adau7002-simple` or `imx219` does
nothing on the Debian image. Instead the build decompiles the board's tree, compiles it again
with the fragments included (their `&{/path}` references reach the board's nodes) and
config.txt names the result with `device_tree=` for that board only. Errors are one line
naming what to fix.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent
DTS = HERE / "dts"
MIC = DTS / "i2s-mic.dtsi"
CAMERA = DTS / "imx219-camera.dtsi"
FRAGMENTS = (MIC,)
"""What a board's description names in `device_tree_fragments` when it says nothing: the
mic (the camera's fragment needs 6.12's pin names: the zero2w-camera board names both)."""


class DeviceTreeError(Exception):
    """The tree cannot be made; the message names what to fix."""


def _dtc(*args: str) -> str:
    if shutil.which("dtc") is None:
        raise DeviceTreeError("dtc is missing: apt install device-tree-compiler")
    done = subprocess.run(["dtc", *args], capture_output=True, text=True, check=False)
    if done.returncode:
        # Its warnings come by the dozen (the board trees' own); the first error is the news:
        # "Error: FILE:LINE syntax error" or "FILE:LINE: ERROR (check): /node: what is wrong".
        lines = done.stderr.strip().splitlines() or ["(no message)"]
        first = next((ln for ln in lines if ln.startswith("Error") or ": ERROR (" in ln), lines[-1])
        if ": ERROR (" in first:
            first = first.split(": ERROR (", 1)[1].split("): ", 1)[-1]
        raise DeviceTreeError(f"dtc: {first.removeprefix('Error: ')}")
    return done.stdout


def with_fragment(base: Path, out: Path, fragments: Path | Sequence[Path] = FRAGMENTS) -> Path:
    """Writes `out`: the tree in `base` with `fragments` (one or several) compiled into it."""
    if not base.is_file():
        raise DeviceTreeError(f"{base} does not exist: is the board's .dtb name right?")
    fragments = [fragments] if isinstance(fragments, Path) else list(fragments)
    for fragment in fragments:
        if not fragment.is_file():
            raise DeviceTreeError(f"{fragment} does not exist")
    with tempfile.TemporaryDirectory(prefix="pendant-dt-") as tmp:
        board = Path(tmp) / "board.dts"
        board.write_text(_dtc("-q", "-I", "dtb", "-O", "dts", str(base)))
        top = Path(tmp) / "pendant.dts"
        top.write_text(
            f'/include/ "{board}"\n' + "".join(f'/include/ "{f.resolve()}"\n' for f in fragments)
        )
        out.parent.mkdir(parents=True, exist_ok=True)
        _dtc("-I", "dts", "-O", "dtb", "-o", str(out), str(top))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("base", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--fragment", type=Path, action="append", help="default: the mic")
    args = p.parse_args(argv)
    try:
        with_fragment(args.base, args.out, args.fragment or FRAGMENTS)
    except DeviceTreeError as exc:
        print(f"devicetree: {exc}", file=sys.stderr)
        return 2
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
