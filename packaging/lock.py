"""The lock (`uv.lock`) read for one target: which file of each locked package it installs.

One lock serves every environment we test or ship. `make deb` asks it which wheels the Zero 2 W
image (bookworm, CPython 3.11) and the Pi 5 image (trixie, CPython 3.13) install, and a test
asks the same of every target, so a package without a wheel for one of them fails there and
not on somebody's SD card. uv decides which packages a target needs (`uv export` keeps the
markers); this module only picks, for each, the file pip would pick on the target.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.tags import Tag, compatible_tags, cpython_tags
from packaging.utils import canonicalize_name, parse_wheel_filename

REPO = Path(__file__).resolve().parents[1]
LOCK = REPO / "uv.lock"

# manylinux's legacy names, still used by some wheels, for the glibc they stand for.
_LEGACY = {(2, 17): "manylinux2014", (2, 12): "manylinux2010", (2, 5): "manylinux1"}


class LockError(Exception):
    """The lock cannot answer; the message names what to fix."""


@dataclass(frozen=True)
class Target:
    """One place the pendant's Python packages are installed."""

    name: str
    python: str  # "3.11"
    machine: str  # "aarch64" or "x86_64"
    glibc: str  # the oldest glibc the target has, e.g. "2.36" on bookworm

    def markers(self) -> dict[str, str]:
        """The environment markers of CPython `python` on Linux `machine`."""
        return {
            "implementation_name": "cpython",
            "implementation_version": f"{self.python}.0",
            "os_name": "posix",
            "platform_machine": self.machine,
            "platform_python_implementation": "CPython",
            "platform_release": "",
            "platform_system": "Linux",
            "platform_version": "",
            "python_full_version": f"{self.python}.0",
            "python_version": self.python,
            "sys_platform": "linux",
        }

    def platforms(self) -> list[str]:
        """Platform tags the target accepts, the most specific first (as pip orders them)."""
        major, minor = (int(p) for p in self.glibc.split("."))
        out = []
        for m in range(minor, 4, -1):
            out.append(f"manylinux_{major}_{m}_{self.machine}")
            if (major, m) in _LEGACY:
                out.append(f"{_LEGACY[major, m]}_{self.machine}")
        return [*out, f"linux_{self.machine}"]

    def tags(self) -> list[Tag]:
        """Every wheel tag the target installs, best first."""
        version = tuple(int(p) for p in self.python.split("."))
        plats = self.platforms()
        return [
            *cpython_tags(version, platforms=plats),
            *compatible_tags(version, f"cp{version[0]}{version[1]}", plats),
        ]


@dataclass(frozen=True)
class Wheel:
    """One locked file: what the target downloads and installs, checked by its sha256."""

    package: str
    version: str
    filename: str
    url: str
    sha256: str
    size: int


def uv_command() -> str:
    """The uv that `make` bootstraps (.tools/), else $UV, else one on PATH."""
    for candidate in (os.environ.get("UV"), str(REPO / ".tools" / "bin" / "uv")):
        if candidate and Path(candidate).is_file():
            return candidate
    found = shutil.which("uv")
    if found is None:
        raise LockError("uv is not installed: run `make setup` (it installs the locked uv)")
    return found


def digest(path: Path = LOCK) -> str:
    """The lock's sha256: names one set of pinned files."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as exc:
        raise LockError(f"cannot read the lock {path}: {exc.strerror}") from None


def requirements(target: Target, extras: list[str], dev: bool = False) -> list[tuple[str, str]]:
    """(name, version) of every locked package `target` installs with these extras."""
    cmd = [uv_command(), "export", "--frozen", "--no-emit-project", "--format",
           "requirements-txt", "--no-hashes", "--no-header", "--no-annotate",
           "--project", str(REPO)]  # fmt: skip
    cmd += [arg for extra in extras for arg in ("--extra", extra)]
    if not dev:
        cmd.append("--no-dev")
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise LockError(f"uv export failed: {last}")
    env = target.markers()
    kept = []
    for line in proc.stdout.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", "-")):
            continue
        req = Requirement(line)
        if req.marker is not None and not Marker(str(req.marker)).evaluate(env):
            continue
        (spec,) = req.specifier
        kept.append((canonicalize_name(req.name), spec.version))
    return sorted(kept)


def _locked_files(lock: Path) -> dict[tuple[str, str], dict]:
    try:
        data = tomllib.loads(lock.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise LockError(f"{lock}: {exc}") from None
    packages = data.get("package", [])
    return {(canonicalize_name(p["name"]), p.get("version", "")): p for p in packages}


def _as_wheel(name: str, version: str, entry: dict) -> Wheel:
    filename = entry["url"].rsplit("/", 1)[-1]
    algo, _, value = entry["hash"].partition(":")
    if algo != "sha256":
        raise LockError(f"{filename}: the lock has a {algo} hash, not sha256")
    return Wheel(name, version, filename, entry["url"], value, int(entry.get("size", 0)))


def best_wheel(target: Target, name: str, version: str, entry: dict) -> Wheel | None:
    """The wheel pip would pick on `target` among the locked ones, or None."""
    rank = {tag: i for i, tag in enumerate(target.tags())}
    best: tuple[int, dict] | None = None
    for wheel in entry.get("wheels", []):
        _, _, _, tags = parse_wheel_filename(wheel["url"].rsplit("/", 1)[-1])
        score = min((rank[t] for t in tags if t in rank), default=None)
        if score is not None and (best is None or score < best[0]):
            best = (score, wheel)
    return None if best is None else _as_wheel(name, version, best[1])


def wheels(target: Target, extras: list[str], lock: Path = LOCK) -> list[Wheel]:
    """The wheel of every package `target` installs; LockError names any that has none."""
    files = _locked_files(lock)
    chosen, missing = [], []
    for name, version in requirements(target, extras):
        entry = files.get((name, version))
        wheel = None if entry is None else best_wheel(target, name, version, entry)
        if wheel is None:
            missing.append(f"{name}=={version}")
        else:
            chosen.append(wheel)
    if missing:
        raise LockError(
            f"no locked wheel for {target.name} (CPython {target.python}, {target.machine}, "
            f"glibc {target.glibc}): {', '.join(missing)}; pick versions that ship one, then "
            f"`make lock`"
        )
    return chosen


def targets(description: dict) -> Iterator[Target]:
    """The targets packaging/pendant.toml names."""
    for t in description["targets"]:
        yield Target(t["name"], t["python"], t["machine"], t["glibc"])
