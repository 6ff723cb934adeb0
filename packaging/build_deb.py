"""Build the pendant's `Architecture: all` Debian package from packaging/pendant.toml.

    python packaging/build_deb.py [--out DIR] [--models NAME ...] [--wheels-cache DIR]

Steps, each shown with its time: every target's wheels as the lock pins them (uv.lock: the
file pip would pick on the target, downloaded once into ~/.cache/pendant/wheels and checked by
the lock's sha256), the pendant's wheel (built from this checkout with the commit's date, so
one commit gives one package), a hashed requirements list a target and build-info.json (the
lock's sha256, every wheel's), the models copied from the model cache and re-verified by
sha256, the files the description lists, the maintainer scripts, then `dpkg-deb --build`.
Installing the package needs no network: its postinst builds /opt/pendant/venv with
`pip install --no-index --require-hashes` from the bundled wheels.
Errors are one line naming what to fix, exit code 2.
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
import urllib.request
from pathlib import Path

import lock  # packaging/lock.py, beside this script

REPO = Path(__file__).resolve().parents[1]
DESCRIPTION = REPO / "packaging" / "pendant.toml"
DEFAULT_OUT = REPO / "image" / "out"
MODELS_CACHE = Path(os.environ.get("PENDANT_MODELS_CACHE", "~/.cache/pendant/models"))
WHEELS_CACHE = Path("~/.cache/pendant/wheels")


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


def _git_epoch() -> str:
    """The commit's time: the pendant's wheel gets it as every file's date, so two builds of
    one commit give the same wheel, byte for byte."""
    proc = subprocess.run(["git", "-C", str(REPO), "log", "-1", "--format=%ct"],
                          capture_output=True, text=True, check=False)  # fmt: skip
    return proc.stdout.strip() if proc.returncode == 0 and proc.stdout.strip() else "315532800"


# What the pendant's wheel is built from. Copied, not built in place: setuptools reuses the
# checkout's `build/lib`, and a module moved or deleted since it was made would ship again.
WHEEL_SOURCES = ("pyproject.toml", "README.md", "device/pendant")


def build_own_wheel(dest: Path) -> Path:
    """The pendant's wheel, from this checkout's sources, with the lock's build backend."""
    env = {**os.environ, "SOURCE_DATE_EPOCH": _git_epoch()}
    with tempfile.TemporaryDirectory(prefix="pendant-wheel-") as tmp:
        source = Path(tmp)
        for name in WHEEL_SOURCES:
            if (REPO / name).is_dir():
                shutil.copytree(REPO / name, source / name,
                                ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))  # fmt: skip
            else:
                shutil.copy2(REPO / name, source / name)
        run([lock.uv_command(), "build", "--wheel", "--quiet", "--out-dir", str(dest), str(source)],
            "building the pendant wheel", env=env)  # fmt: skip
    own = sorted(dest.glob("pendant-*.whl"))
    if not own:
        raise BuildError("uv build left no pendant-*.whl")
    return own[-1]


def fetch_wheel(wheel: lock.Wheel, cache: Path) -> Path:
    """The locked file, from the cache or PyPI, checked against the lock's sha256."""
    path = cache / wheel.sha256[:2] / wheel.filename
    if path.is_file() and sha256(path) == wheel.sha256:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".part")
    print(f"    {wheel.filename} ({wheel.size / 1e6:.1f} MB)", flush=True)
    try:
        with urllib.request.urlopen(wheel.url, timeout=120) as response, partial.open("wb") as f:
            shutil.copyfileobj(response, f, 1 << 20)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        message = f"downloading {wheel.filename} failed ({exc}): check the network"
        raise BuildError(message) from None
    if sha256(partial) != wheel.sha256:
        partial.unlink()
        raise BuildError(f"{wheel.filename} does not match the lock's sha256: not installing it")
    partial.replace(path)
    return path


def build_wheels(desc: dict, dest: Path, cache: Path) -> dict[str, list[lock.Wheel]]:
    """The pendant's wheel and each target's locked wheels in `dest`; the wheels by target."""
    dest.mkdir(parents=True, exist_ok=True)
    extras = desc["wheels"].get("extras", [])
    chosen: dict[str, list[lock.Wheel]] = {}
    try:
        for target in lock.targets(desc):
            chosen[target.name] = lock.wheels(target, extras)
    except lock.LockError as exc:
        raise BuildError(str(exc)) from None
    unique = {w.filename: w for ws in chosen.values() for w in ws}
    total = sum(w.size for w in unique.values())
    print(f"    {len(unique)} locked wheels, {total / 1e6:.0f} MB", flush=True)
    for wheel in sorted(unique.values(), key=lambda w: w.filename):
        shutil.copyfile(fetch_wheel(wheel, cache), dest / wheel.filename)
    return chosen


def requirements_text(wheels: list[lock.Wheel], own: Path, version: str) -> str:
    """A target's install list: every wheel pinned by name, version and sha256."""
    lines = [f"pendant=={version} --hash=sha256:{sha256(own)}"]
    lines += [f"{w.package}=={w.version} --hash=sha256:{w.sha256}" for w in wheels]
    return "\n".join(lines) + "\n"


def build_info(desc: dict, chosen: dict[str, list[lock.Wheel]], own: Path, ver: str) -> dict:
    """What `pendant --version --verbose` reads on the device: the lock and the wheels."""
    return {
        "version": ver,
        "lock_sha256": lock.digest(),
        "pendant_wheel": {"file": own.name, "sha256": sha256(own)},
        "targets": {
            t.name: {"python": t.python, "machine": t.machine,
                     "wheels": {w.filename: w.sha256 for w in chosen[t.name]}}
            for t in lock.targets(desc)
        },
    }  # fmt: skip


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def manifest() -> dict:
    sys.path.insert(0, str(REPO / "device"))
    from pendant.core.model_cache import load_manifest  # the manifest shipped in this checkout

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
                    f"(or `python -m pendant.setup.fetch_models fetch {name}`)"
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
    # The list built for this Python from the lock: every wheel pinned by its sha256.
    PYTAG=$("$VENV/bin/python" -c 'import sys; print("cp%d%d" % sys.version_info[:2])')
    LIST=@REQUIREMENTS@/$PYTAG.txt
    if [ ! -f "$LIST" ]; then
        echo "pendant: error: no wheels for $PYTAG: add it to packaging/pendant.toml's targets" >&2
        exit 1
    fi
    PIP_CONFIG_FILE=/dev/null "$VENV/bin/python" -m pip install --quiet --no-index \\
        --no-cache-dir --disable-pip-version-check --no-deps --require-hashes \\
        --find-links @WHEELS@ -r "$LIST"
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
        # An upgrade ($2, the version before): the running services hold the old code, with
        # their venv rebuilt under them, and the eyes' models were prepared for the old
        # onnxruntime. Whatever was running runs again, the models prepared first (the eyes
        # start after it); nothing is started that was not.
        if [ -n "$2" ]; then
            systemctl try-restart pendant-eyes-prepare.service pendant.target || true
        fi
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
        t = step(
            "wheels from the lock for "
            + ", ".join(f"{x.name} (CPython {x.python}, {x.machine})" for x in lock.targets(desc))
        )
        wheel_dir = root / desc["wheels"]["dest"]
        chosen = build_wheels(desc, wheel_dir, (wheels_cache or WHEELS_CACHE).expanduser())
        own = build_own_wheel(wheel_dir)
        share = root / "usr/share/pendant"
        (share / "requirements").mkdir(parents=True)
        for target in lock.targets(desc):
            py = "cp" + target.python.replace(".", "")
            text = requirements_text(chosen[target.name], own, ver)
            (share / "requirements" / f"{py}.txt").write_text(text)
        info = build_info(desc, chosen, own, ver)
        (share / "build-info.json").write_text(json.dumps(info, indent=1, sort_keys=True) + "\n")
        done(t, f"{len(list(wheel_dir.glob('*.whl')))} wheels, lock {info['lock_sha256'][:12]}")

        excluded = desc["models"].get("exclude", [])
        bundled = models or [m for m in sorted(manifest()) if m not in excluded]
        t = step(f"models {', '.join(bundled) or '(none)'}, verified by sha256")
        size = copy_models(bundled, MODELS_CACHE.expanduser(), root / desc["models"]["dest"])
        done(t, f"{size / 1e6:.1f} MB")

        t = step("units, users, directories, broker templates")
        done(t, f"{copy_files(desc, root)} files")
        # `pendant doctor`, `sudo pendant pair` as the README writes them: the venv's command
        # on PATH (the link dangles until postinst has built the venv).
        (root / "usr/bin").mkdir(parents=True, exist_ok=True)
        (root / "usr/bin/pendant").symlink_to("/opt/pendant/venv/bin/pendant")

        debian = root / "DEBIAN"
        debian.mkdir()
        scripts = {
            "postinst": POSTINST.replace("@WHEELS@", "/" + desc["wheels"]["dest"]).replace(
                "@REQUIREMENTS@", "/usr/share/pendant/requirements"
            ),
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
