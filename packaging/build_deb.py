"""Build the pendant's `Architecture: all` Debian package from packaging/pendant.toml.

    python packaging/build_deb.py [--out DIR] [--models NAME ...] [--wheels-cache DIR]

Steps, each shown with its time: the pendant's wheel (built from this checkout), every
dependency's wheel for aarch64 / CPython 3.11 (`pip download --only-binary=:all:`), the models
copied from the model cache and re-verified by sha256, the files the description lists, the
maintainer scripts, then `dpkg-deb --build`. Installing the package needs no network: its
postinst builds /opt/pendant/venv with `pip install --no-index` from the bundled wheels.
Errors are one line naming what to fix, exit code 2.
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DESCRIPTION = REPO / "packaging" / "pendant.toml"
DEFAULT_OUT = REPO / "image" / "out"
MODELS_CACHE = Path(os.environ.get("PENDANT_MODELS_CACHE", "~/.cache/pendant/models"))


class BuildError(Exception):
    """The build cannot go on; the message names what to fix."""


def step(message: str) -> float:
    print(f"==> {message}", flush=True)
    return time.monotonic()


def done(started: float, detail: str = "") -> None:
    print(f"    done in {time.monotonic() - started:.1f} s{(': ' + detail) if detail else ''}",
          flush=True)  # fmt: skip


def version() -> str:
    text = (REPO / "device" / "pendant" / "__init__.py").read_text()
    m = re.search(r'^__version__ = "([^"]+)"', text, re.M)
    if m is None:
        raise BuildError("device/pendant/__init__.py has no __version__")
    return m.group(1)


def run(cmd: list[str], what: str, env: dict[str, str] | None = None) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        lines = [ln for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip()]
        errors = [ln for ln in lines if "ERROR" in ln or "error" in ln.lower()]
        raise BuildError(f"{what} failed: {(errors or lines or ['no output'])[-1].strip()}")


def load_description(path: Path = DESCRIPTION) -> dict:
    try:
        return tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise BuildError(f"{path}: {exc}") from None


def for_target(requirements: list[str], python: str) -> list[str]:
    """The requirements whose markers hold on the target (pip download would judge them
    by the Python running it, not by --python-version)."""
    try:
        from packaging.requirements import Requirement
    except ImportError:
        from pip._vendor.packaging.requirements import Requirement
    env = {"python_version": python, "platform_machine": "aarch64", "sys_platform": "linux"}
    kept = []
    for text in requirements:
        req = Requirement(text)
        if req.marker is None or req.marker.evaluate(env):
            kept.append(text.split(";")[0].strip())
    return kept


def build_wheels(desc: dict, dest: Path, cache: Path | None) -> list[str]:
    """The pendant's wheel and its dependencies' for the target; returns the file names."""
    w = desc["wheels"]
    dest.mkdir(parents=True, exist_ok=True)
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q",
         "-w", str(dest), str(REPO)], "building the pendant wheel")  # fmt: skip
    own = sorted(dest.glob("pendant-*.whl"))
    if not own:
        raise BuildError("pip wheel left no pendant-*.whl")
    extras = ",".join(w.get("extras", []))
    target = f"{own[-1]}[{extras}]" if extras else str(own[-1])
    for python in w["python_versions"]:
        cmd = [sys.executable, "-m", "pip", "download", "-q", "--only-binary=:all:",
               "--python-version", python, "--implementation", w["implementation"],
               "-d", str(cache or dest)]  # fmt: skip
        for platform in w["platforms"]:
            cmd += ["--platform", platform]
        what = f"pip download of the aarch64 wheels for Python {python} (check network, PyPI)"
        run([*cmd, target, *for_target(w.get("requirements", []), python)], what)
    if cache is not None:
        for whl in cache.glob("*.whl"):
            if not whl.name.startswith("pendant-"):
                shutil.copy2(whl, dest / whl.name)
    # Only binary wheels for the target or pure ones; anything else would not install there.
    bad = [p.name for p in dest.glob("*.whl")
           if not re.search(r"-(none-any|[^-]*aarch64[^-]*)\.whl$", p.name)]  # fmt: skip
    if bad:
        raise BuildError(f"not an aarch64 or pure wheel: {', '.join(bad)}")
    return sorted(p.name for p in dest.glob("*.whl"))


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def manifest() -> dict:
    sys.path.insert(0, str(REPO / "device"))
    from pendant.models import load_manifest  # the manifest shipped in this checkout

    return load_manifest()


def copy_models(names: list[str], cache: Path, dest: Path) -> int:
    """Copy each model's files, checking every one against the manifest's sha256."""
    manifest_ = manifest()
    total = 0
    for name in names:
        if name not in manifest_:
            raise BuildError(f"unknown model {name!r}: known are {', '.join(sorted(manifest_))}")
        for f in manifest_[name].files:
            src = cache / name / f.name
            if not src.is_file():
                raise BuildError(
                    f"model {name!r} is not in {cache}: run `make models` "
                    f"(or `python -m pendant.models fetch {name}`)"
                )
            if sha256(src) != f.sha256:
                raise BuildError(f"{src} does not match its pinned sha256: fetch it again")
            out = dest / name / f.name
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, out)
            out.chmod(0o644)
            total += f.size
    return total


def copy_files(desc: dict, root: Path) -> int:
    count = 0
    for entry in desc.get("files", []):
        target = root / entry["dest"]
        target.mkdir(parents=True, exist_ok=True)
        for pattern in entry["src"]:
            matches = sorted(glob.glob(str(REPO / pattern)))
            if not matches:
                raise BuildError(f"packaging/pendant.toml: {pattern!r} matches no file")
            for src in matches:
                out = target / Path(src).name
                shutil.copyfile(src, out)
                out.chmod(entry.get("mode", 0o644))
                count += 1
    return count


POSTINST = """#!/bin/sh
# Builds /opt/pendant/venv from the wheels in this package, offline.
set -e
VENV=/opt/pendant/venv
if [ "$1" = configure ]; then
    systemd-sysusers pendant.conf
    systemd-tmpfiles --create pendant.conf || true
    # Only the bundled wheels: no pip settings of whoever runs the install.
    for var in $(env | grep -o '^PIP_[A-Z_]*'); do unset "$var"; done
    rm -rf "$VENV"
    # System site packages: on Raspberry Pi OS the camera stack (python3-picamera2, libcamera's
    # bindings) comes from apt; the bundled wheels still take precedence over apt's modules.
    python3 -m venv --system-site-packages "$VENV"
    PIP_CONFIG_FILE=/dev/null "$VENV/bin/python" -m pip install --quiet --no-index \\
        --no-cache-dir --disable-pip-version-check \\
        --find-links @WHEELS@ @REQUIREMENT@
    if [ ! -e /etc/pendant/pendant.toml ]; then
        install -D -m 0644 /usr/share/pendant/device-pendant.toml /etc/pendant/pendant.toml
    fi
    if command -v deb-systemd-helper >/dev/null; then
        deb-systemd-helper enable pendant-setup.service pendant.target >/dev/null || true
    else
        systemctl --quiet enable pendant-setup.service pendant.target || true
    fi
    if [ -d /run/systemd/system ]; then
        systemctl daemon-reload || true
    fi
fi
exit 0
"""

PRERM = """#!/bin/sh
set -e
if [ "$1" = remove ] && [ -d /run/systemd/system ]; then
    systemctl stop pendant.target || true
fi
exit 0
"""

POSTRM = """#!/bin/sh
set -e
case "$1" in
    remove) rm -rf /opt/pendant/venv ;;
    purge)
        rm -rf /opt/pendant
        if command -v deb-systemd-helper >/dev/null; then
            deb-systemd-helper purge pendant-setup.service pendant.target >/dev/null || true
        fi
        ;;
esac
exit 0
"""


def control(desc: dict, ver: str, installed_kb: int) -> str:
    p = desc["package"]
    long = "\n".join(f" {ln}" if ln.strip() else " ." for ln in p["long_description"].strip()
                     .splitlines())  # fmt: skip
    fields = {
        "Package": p["name"],
        "Version": ver,
        "Architecture": "all",
        "Maintainer": p["maintainer"],
        "Section": p["section"],
        "Priority": p["priority"],
        "Installed-Size": str(installed_kb),
        "Depends": ", ".join(p["depends"]),
        "Recommends": ", ".join(p.get("recommends", [])),
        "Homepage": p["homepage"],
    }
    head = "".join(f"{k}: {v}\n" for k, v in fields.items() if v)
    return f"{head}Description: {p['description']}\n{long}\n"


def build(out: Path, models: list[str] | None, wheels_cache: Path | None) -> Path:
    desc = load_description()
    ver = version()
    name = desc["package"]["name"]
    if shutil.which("dpkg-deb") is None:
        raise BuildError("dpkg-deb is not installed: apt install dpkg")
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="pendant-deb-") as tmp:
        root = Path(tmp) / "root"
        t = step(f"wheels for aarch64 / CPython {', '.join(desc['wheels']['python_versions'])}")
        wheels = build_wheels(desc, root / desc["wheels"]["dest"], wheels_cache)
        done(t, f"{len(wheels)} wheels")

        excluded = desc["models"].get("exclude", [])
        chosen = models or [m for m in sorted(manifest()) if m not in excluded]
        t = step(f"models {', '.join(chosen) or '(none)'}, verified by sha256")
        size = copy_models(chosen, MODELS_CACHE.expanduser(), root / desc["models"]["dest"])
        done(t, f"{size / 1e6:.1f} MB")

        t = step("units, users, directories, broker templates")
        done(t, f"{copy_files(desc, root)} files")

        extras = ",".join(desc["wheels"].get("extras", []))
        requirement = f"{name}[{extras}]=={ver}" if extras else f"{name}=={ver}"
        also = desc["wheels"].get("requirements", [])
        requirement = " ".join(shlex.quote(r) for r in [requirement, *also])
        debian = root / "DEBIAN"
        debian.mkdir()
        scripts = {
            "postinst": POSTINST.replace("@WHEELS@", "/" + desc["wheels"]["dest"])
            .replace("@REQUIREMENT@", requirement),
            "prerm": PRERM,
            "postrm": POSTRM,
        }
        for script, text in scripts.items():
            (debian / script).write_text(text)
            (debian / script).chmod(0o755)
        installed = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
        # The venv postinst makes is about three times the wheels it comes from.
        (debian / "control").write_text(control(desc, ver, (installed * 4) // 1024))

        deb = out / f"{name}_{ver}_all.deb"
        t = step(f"dpkg-deb --build -> {deb}")
        run(["dpkg-deb", "--root-owner-group", "-Zgzip", "-z1", "--build", str(root), str(deb)],
            "dpkg-deb")  # fmt: skip
        done(t, f"{deb.stat().st_size / 1e6:.1f} MB")
    return deb


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="build_deb.py", description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output directory")
    p.add_argument("--models", nargs="*", help="models to bundle (default: the description's)")
    p.add_argument("--wheels-cache", type=Path, help="keep downloaded wheels here between builds")
    args = p.parse_args(argv)
    started = time.monotonic()
    try:
        deb = build(args.out, args.models, args.wheels_cache)
    except BuildError as exc:
        print(f"build_deb: error: {exc}", file=sys.stderr)
        return 2
    print(f"{deb} ({time.monotonic() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
