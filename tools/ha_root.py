"""A real Home Assistant for the tests, from a Debian trixie root and a lock with hashes.

Home Assistant 2025.12 and later need Python 3.13.2 or newer; the pendant (and this machine)
run 3.11. Debian trixie ships 3.13, so `build` makes an amd64 trixie root with mmdebstrap (as
`make image` makes the device's roots, from the same mirror) and a venv in it at /opt/ha from
`tests/ha/requirements.txt`, every file checked against its sha256. Nothing is fetched when
Home Assistant runs: it starts with `--skip-pip`, and the lock holds what the integrations the
tests load need.

    python tools/ha_root.py build [--root .cache/ha-root]   # about 2 minutes, 1.3 GB
    python tools/ha_root.py lock                              # a new Home Assistant: see below

`lock` reads the pinned Home Assistant wheel's own manifests (bootstrap's default integrations
plus the ones `tests/ha/configuration.yaml` names, closed over their dependencies), writes
`tests/ha/requirements.in` and compiles it with uv against Home Assistant's own
package_constraints.txt. Both steps need root (mmdebstrap, chroot) and print their progress.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
HA_DIR = REPO / "tests" / "ha"
LOCK = HA_DIR / "requirements.txt"
IN = HA_DIR / "requirements.in"
DEFAULT_ROOT = REPO / ".cache" / "ha-root"
SUITE = "trixie"
PYTHON = "3.13.5"  # trixie's
# Compilers and headers: five pins of Home Assistant's have no wheel for 3.13 (lru-dict, pyric,
# pyturbojpeg, pymicro-vad, pyspeex-noise).
PACKAGES = ["python3", "python3-venv", "python3-dev", "gcc", "g++", "libc6-dev", "ca-certificates"]
# Integrations the tests load beyond bootstrap's defaults (tests/ha/configuration.yaml).
EXTRA_INTEGRATIONS = {
    "mqtt",
    "conversation",
    "assist_pipeline",
    "template",
    "blueprint",
    "api",
    "websocket_api",
    "config",
    "onboarding",
    "input_boolean",
    "light",
    "event",
    "intent",
    "http",
    "auth",
    "switch",
    "sensor",
    "binary_sensor",
    "button",
}
# Never loaded here: the Supervisor, error reporting and Nabu Casa's cloud.
NOT_LOADED = {"hassio", "sentry", "cloud"}
BUILD_BACKENDS = ("setuptools", "wheel", "pybind11")


def say(msg: str) -> None:
    print(f"ha-root: {msg}", file=sys.stderr, flush=True)


def fail(msg: str) -> None:
    print(f"ha-root: error: {msg}", file=sys.stderr)
    raise SystemExit(2)


def mirror() -> str:
    common = tomllib.loads((REPO / "image" / "boards" / "common.toml").read_text())
    return str(common["mirror"])


def stamp(root: Path) -> Path:
    return root / ".pendant-ha-root"


def wanted_stamp() -> str:
    """What a root built now would be: the suite, its packages and the lock's hash."""
    digest = hashlib.sha256(LOCK.read_bytes()).hexdigest()
    return f"{SUITE} {' '.join(PACKAGES)} {digest}\n"


def is_current(root: Path) -> bool:
    return stamp(root).is_file() and stamp(root).read_text() == wanted_stamp()


def host_ca_bundle() -> Path:
    """The certificates this host trusts (a proxy's own CA included), for pip in the root."""
    for var in ("PIP_CERT", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE"):
        if os.environ.get(var) and Path(os.environ[var]).is_file():
            return Path(os.environ[var])
    return Path("/etc/ssl/certs/ca-certificates.crt")


def lock_entries(text: str) -> dict[str, str]:
    """name → its block (the pin and its hashes) in a `uv pip compile --generate-hashes` file."""
    blocks = re.split(r"\n(?=[A-Za-z0-9])", text)
    out: dict[str, str] = {}
    for block in blocks:
        m = re.match(r"([A-Za-z0-9_.\-]+)==", block)
        if m:
            out[m.group(1).lower().replace("_", "-")] = block.strip() + "\n"
    return out


def chroot(root: Path, script: str, env: dict[str, str] | None = None) -> None:
    """Runs `script` with sh in the root, with a clean environment (the host's pip settings,
    find-links and indexes, must not reach the root's pip)."""
    base = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root", "LANG": "C.UTF-8"}
    subprocess.run(
        ["chroot", str(root), "sh", "-ec", script], env={**base, **(env or {})}, check=True
    )


def build(root: Path) -> None:
    if os.geteuid() != 0:
        fail("building the Home Assistant root needs root (mmdebstrap, chroot): run it with sudo")
    if shutil.which("mmdebstrap") is None:
        fail("mmdebstrap is missing: apt install mmdebstrap")
    if is_current(root):
        say(f"{root} is current")
        return
    if root.exists():
        say(f"{root} is from another lock: building it again")
        shutil.rmtree(root)
    partial = root.with_name(root.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.parent.mkdir(parents=True, exist_ok=True)
    say(f"[1/3] Debian {SUITE} amd64 with mmdebstrap (about 30 s)")
    subprocess.run(
        [
            "mmdebstrap",
            "--mode=root",
            "--variant=apt",
            f"--include={','.join(PACKAGES)}",
            SUITE,
            str(partial),
            mirror(),
        ],
        check=True,
        env={k: v for k, v in os.environ.items() if not k.startswith("PIP_")},
    )
    say("[2/3] the build backends, by hash")
    tmp = partial / "tmp"
    shutil.copy(LOCK, tmp / "ha.lock")
    shutil.copy(host_ca_bundle(), tmp / "host-ca.crt")
    entries = lock_entries(LOCK.read_text())
    (tmp / "build.lock").write_text("".join(entries[n] for n in BUILD_BACKENDS))
    pip = "/opt/ha/bin/pip install --disable-pip-version-check --progress-bar off --no-deps"
    pip += " --require-hashes"
    env = {"PIP_CERT": "/tmp/host-ca.crt", "SSL_CERT_FILE": "/tmp/host-ca.crt"}
    chroot(partial, f"python3 -m venv /opt/ha && {pip} -q -r /tmp/build.lock", env)
    say(f"[3/3] Home Assistant and {len(entries)} packages, by hash (about a minute)")
    # No build isolation: what builds the sdists is the hash-checked backends above.
    quiet = "grep -E '^(Successfully|  Building)' || true"
    chroot(partial, f"{pip} --no-build-isolation -r /tmp/ha.lock | {quiet}", env)
    chroot(partial, "/opt/ha/bin/python -c 'import homeassistant.const as c; print(c.__version__)'")
    for f in ("ha.lock", "build.lock", "host-ca.crt"):
        (tmp / f).unlink()
    stamp(partial).write_text(wanted_stamp())
    partial.rename(root)
    say(f"ready: {root}")


def integrations(wheel: Path) -> tuple[str, set[str]]:
    """(Home Assistant's version, the requirements of what the tests load)."""
    with zipfile.ZipFile(wheel) as z:
        boot = z.read("homeassistant/bootstrap.py").decode()
        service = z.read("homeassistant/helpers/service.py").decode()
        const = z.read("homeassistant/const.py").decode()
        manifests = {}
        for name in z.namelist():
            if re.fullmatch(r"homeassistant/components/[^/]+/manifest\.json", name):
                m = json.loads(z.read(name))
                manifests[m["domain"]] = m
        constraints = z.read("homeassistant/package_constraints.txt").decode()
    (HA_DIR / "constraints.txt").write_text(constraints)

    def named_set(var: str) -> set[str]:
        m = re.search(var + r" = \{(.*?)\n\}", boot, re.S)
        assert m, var
        return set(re.findall(r'"([a-z_]+)"', m.group(1)))

    domains = EXTRA_INTEGRATIONS | {
        d
        for var in (
            "CORE_INTEGRATIONS",
            "LOGGING_AND_HTTP_DEPS_INTEGRATIONS",
            "FRONTEND_INTEGRATIONS",
            "DEFAULT_INTEGRATIONS",
        )
        for d in named_set(var)
    }
    # Listing services (the frontend's first screen) imports these base components.
    base = re.search(r"def _base_components.*?import \((.*?)\)", service, re.S)
    assert base, "helpers/service.py: no _base_components"
    domains |= set(re.findall(r"([a-z_]+),", base.group(1)))
    todo, seen = sorted(domains - NOT_LOADED), set()
    while todo:
        d = todo.pop()
        if d in seen or d not in manifests:
            continue
        seen.add(d)
        todo += manifests[d].get("dependencies", [])
    reqs = {r for d in seen for r in manifests[d].get("requirements", [])}
    major = re.search(r"MAJOR_VERSION: Final = (\d+)", const)
    minor = re.search(r"MINOR_VERSION: Final = (\d+)", const)
    patch = re.search(r'PATCH_VERSION: Final = "([^"]+)"', const)
    assert major and minor and patch
    return f"{major.group(1)}.{minor.group(1)}.{patch.group(1)}", reqs


def lock(version: str) -> None:
    uv = REPO / ".tools" / "bin" / "uv"
    if not uv.exists():
        fail("uv is missing: run `make setup` first")
    with tempfile.TemporaryDirectory() as tmp:
        say(f"fetching homeassistant=={version}")
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "-q",
                "--no-deps",
                "--only-binary=:all:",
                f"--python-version={PYTHON}",
                "-d",
                tmp,
                f"homeassistant=={version}",
            ],
            check=True,
        )
        [wheel] = Path(tmp).glob("homeassistant-*.whl")
        got, reqs = integrations(wheel)
    IN.write_text(
        "# Written by `python tools/ha_root.py lock`: Home Assistant and what the integrations\n"
        "# the tests load require (their manifests), plus the sdists' build backends.\n"
        + "".join(f"{r}\n" for r in sorted({f"homeassistant=={got}", *reqs, *BUILD_BACKENDS}))
    )
    say(f"compiling {IN.relative_to(REPO)} for Python {PYTHON}")
    subprocess.run(
        [
            str(uv),
            "pip",
            "compile",
            str(IN),
            "-c",
            str(HA_DIR / "constraints.txt"),
            "--python-version",
            PYTHON,
            "--python-platform",
            "x86_64-manylinux_2_36",
            "--generate-hashes",
            "--no-header",
            "--quiet",
            "-o",
            str(LOCK),
        ],
        check=True,
    )
    say(f"wrote {LOCK.relative_to(REPO)}: {len(lock_entries(LOCK.read_text()))} packages")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="the trixie root with Home Assistant from the lock")
    b.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    lk = sub.add_parser("lock", help="write tests/ha/requirements.{in,txt} for a release")
    lk.add_argument("--version", default="2026.2.3", help="the newest release for Python 3.13")
    args = p.parse_args(argv)
    try:
        if args.cmd == "build":
            build(args.root)
        else:
            lock(args.version)
    except subprocess.CalledProcessError as e:
        fail(f"{' '.join(map(str, e.cmd[:3]))} … failed (exit {e.returncode}): see above")
    return 0


if __name__ == "__main__":
    sys.exit(main())
