"""One lock, with hashes, for every environment we test or ship.

uv.lock pins every package and file: the venv `make` builds here (x86_64, CPython 3.11), the
Zero 2 W image (aarch64, bookworm's 3.11) and the Pi 5 image (aarch64, trixie's 3.13). These
tests hold that the lock agrees with pyproject.toml, that it has an installable file for every
package each target needs, that the venv running them is the lock, and that the .deb built
from one commit is the same twice and installs offline from its hashed lists.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
from packaging.markers import Marker
from packaging.specifiers import SpecifierSet
from packaging.tags import parse_tag
from packaging.utils import parse_wheel_filename

from tests.conftest import REPO

sys.path.insert(0, str(REPO / "packaging"))
# packaging/ holds scripts, not a package
import build_deb
import lock

DESCRIPTION = build_deb.load_description()
DEVICE_TARGETS = list(lock.targets(DESCRIPTION))
# The venv of `make run`, `make test` and CI: Debian bookworm's glibc on x86_64.
DEV = lock.Target("dev-x86_64", "3.11", "x86_64", "2.36")
# Built from source by `uv sync` (none of their releases has a wheel); dev-only.
SDIST_ONLY_DEV = {"rhasspy-hermes"}


def _uv(*args: str, project: Path = REPO) -> subprocess.CompletedProcess[str]:
    try:
        uv = lock.uv_command()
    except lock.LockError as exc:
        pytest.skip(str(exc))
    cmd = [uv, *args, "--project", str(project)]
    env = {**os.environ, "UV_PYTHON_DOWNLOADS": "never"}
    return subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)


def test_lock_agrees_with_pyproject() -> None:
    proc = _uv("lock", "--check", "--offline")  # a lock that agrees needs no index to say so
    assert proc.returncode == 0, proc.stderr


def test_a_dependency_missing_from_the_lock_is_caught(tmp_path: Path) -> None:
    for name in ("pyproject.toml", "uv.lock", "README.md", "device/pendant/__init__.py"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(REPO / name, tmp_path / name)
    pyproject = tmp_path / "pyproject.toml"
    # A bound the locked numpy still meets: the lock must still be redone, or it would record
    # requirements that are not the project's.
    pyproject.write_text(pyproject.read_text().replace('"numpy>=1.24"', '"numpy>=1.25"'))
    # With the index (PyPI, as `make setup` needs anyway): offline, uv cannot re-resolve to
    # tell drift from a missing cache.
    proc = _uv("lock", "--check", project=tmp_path)
    assert proc.returncode != 0
    assert "needs to be updated" in proc.stderr


def test_an_install_refuses_a_file_that_is_not_the_locked_one(tmp_path: Path) -> None:
    """`make` installs with `uv sync --locked`: a file whose sha256 is not the lock's is refused
    (here a one-package project whose lock has one hash digit changed)."""
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "probe"\nversion = "0"\nrequires-python = ">=3.11"\n'
        'dependencies = ["colorzero==2.0"]\n'
    )
    assert _uv("lock", project=tmp_path).returncode == 0
    locked = (tmp_path / "uv.lock").read_text()
    entry = locked[locked.index("colorzero-2.0-py2.py3-none-any.whl") :]
    digest = entry[entry.index("sha256:") + 7 :][:64]
    forged = ("1" if digest[0] != "1" else "2") + digest[1:]
    (tmp_path / "uv.lock").write_text(locked.replace(digest, forged))
    proc = _uv("sync", "--frozen", "--no-install-project", project=tmp_path)
    assert proc.returncode != 0
    assert "Hash mismatch" in proc.stderr and forged in proc.stderr


def test_lock_supports_every_target() -> None:
    data = tomllib.loads((REPO / "uv.lock").read_text())
    for target in [*DEVICE_TARGETS, DEV]:
        env = target.markers()
        assert any(Marker(m).evaluate(env) for m in data["supported-markers"]), target.name
        assert SpecifierSet(data["requires-python"]).contains(target.python), target.name


@pytest.mark.parametrize("target", DEVICE_TARGETS, ids=lambda t: t.name)
def test_every_device_package_has_a_locked_wheel(target: lock.Target) -> None:
    wheels = lock.wheels(target, DESCRIPTION["wheels"]["extras"])
    accepted = set(target.tags())
    names = {w.package for w in wheels}
    for wheel in wheels:
        _, _, _, tags = parse_wheel_filename(wheel.filename)
        assert tags & accepted, f"{wheel.filename} does not install on {target.name}"
        assert len(wheel.sha256) == 64
    assert {"numpy", "onnxruntime", "pocketsphinx", "hassil", "home-assistant-intents",
            "sounddevice", "opencv-python-headless"} <= names  # fmt: skip
    # gpiozero's pin backend exists for CPython <= 3.12 only (see pyproject.toml).
    assert ("lgpio" in names) == (target.python == "3.11")
    # Dev and test tools never reach the device.
    assert not names & {"pytest", "ruff", "rhasspy-hermes", "scikit-image", "faster-whisper"}


def test_the_dev_venv_is_covered_by_wheels_or_known_sdists() -> None:
    files = tomllib.loads((REPO / "uv.lock").read_text())["package"]
    by_name = {(p["name"], p.get("version", "")): p for p in files}
    sdist_only = set()
    for name, version in lock.requirements(DEV, [], dev=True):
        entry = by_name[(name, version)]
        if lock.best_wheel(DEV, name, version, entry) is None:
            assert "sdist" in entry, f"{name}=={version}: no wheel and no sdist in the lock"
            sdist_only.add(name)
    assert sdist_only == SDIST_ONLY_DEV


def test_this_venv_is_the_lock() -> None:
    """`make` installs from the lock and nothing else: every locked version is what runs."""
    drift = []
    for name, version in lock.requirements(DEV, [], dev=True):
        try:
            installed = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            installed = None
        if installed != version:
            drift.append(f"{name}: locked {version}, installed {installed}")
    assert not drift, "; ".join(drift)


def test_the_home_assistant_lock_pins_every_package_by_hash() -> None:
    """tests/ha/requirements.txt (tools/ha_root.py, for `make test-ha`): every package pinned
    with `==` and at least one sha256, each pin of requirements.in among them, and what
    tools/ha_root.py builds before the rest (the sdists' build backends) in it too."""
    sys.path.insert(0, str(REPO / "tools"))
    import ha_root

    text = ha_root.LOCK.read_text()
    entries = ha_root.lock_entries(text)
    assert len(entries) > 100
    pins = [ln for ln in text.splitlines() if ln and not ln[0].isspace() and ln[0] != "#"]
    assert len(pins) == len(entries), "a requirement that is not `name==version`"
    for name, block in entries.items():
        assert "--hash=sha256:" in block, name
    wanted = [ln for ln in ha_root.IN.read_text().splitlines() if ln and ln[0] != "#"]
    for req in wanted:
        name, _, version = req.partition("==")
        key = name.lower().replace("_", "-")
        assert key in entries, req
        assert not version or entries[key].lower().startswith(f"{key}=={version}"), req
    assert set(ha_root.BUILD_BACKENDS) <= entries.keys()


def test_target_tags_follow_pip_order() -> None:
    zero = DEVICE_TARGETS[0]
    tags = zero.tags()
    assert tags[0] == next(iter(parse_tag("cp311-cp311-manylinux_2_36_aarch64")))
    assert next(iter(parse_tag("py3-none-any"))) in tags
    assert next(iter(parse_tag("cp311-cp311-manylinux_2_37_aarch64"))) not in tags
    assert next(iter(parse_tag("cp311-cp311-manylinux2014_aarch64"))) in tags
    assert next(iter(parse_tag("cp313-cp313-manylinux2014_aarch64"))) not in tags


# --------------------------------------------------------------------------- the .deb


def _contents(deb: Path, into: Path) -> dict[str, str]:
    subprocess.run(["dpkg-deb", "-x", str(deb), str(into)], check=True)
    share = into / "usr/share/pendant"
    out = {p.name: build_deb.sha256(p) for p in (share / "wheels").glob("*.whl")}
    for p in (share / "requirements").glob("*.txt"):
        out[f"requirements/{p.name}"] = p.read_text()
    out["build-info.json"] = (share / "build-info.json").read_text()
    return out


@pytest.fixture(scope="module")
def two_debs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    if shutil.which("dpkg-deb") is None:
        pytest.skip("dpkg-deb is not installed (apt install dpkg)")
    if not (build_deb.MODELS_CACHE.expanduser() / "silero-vad").is_dir():
        pytest.skip("silero-vad is not fetched: make models")
    built = []
    for n in (1, 2):
        out = tmp_path_factory.mktemp(f"deb{n}")
        try:
            built.append(build_deb.build(out, ["silero-vad"], None))
        except build_deb.BuildError as exc:
            pytest.fail(f"make deb failed: {exc}")
    return built[0], built[1]


def test_deb_built_twice_from_one_commit_is_the_same(
    two_debs: tuple[Path, Path], tmp_path: Path
) -> None:
    first = _contents(two_debs[0], tmp_path / "a")
    second = _contents(two_debs[1], tmp_path / "b")
    assert first == second
    info = json.loads(first["build-info.json"])
    assert info["lock_sha256"] == lock.digest()
    for target in DEVICE_TARGETS:
        listed = info["targets"][target.name]["wheels"]
        assert listed == {w.filename: w.sha256 for w in lock.wheels(
            target, DESCRIPTION["wheels"]["extras"])}  # fmt: skip
        assert all(first[name] == digest for name, digest in listed.items())


def test_the_pendants_wheel_holds_the_package_as_it_is_now(
    two_debs: tuple[Path, Path], tmp_path: Path
) -> None:
    """Built from a copy of the sources: a `build/lib` left in the checkout from before a
    module moved (setuptools reuses it) must not ship the old module beside the new."""
    _contents(two_debs[0], tmp_path)
    (wheel,) = (tmp_path / "usr/share/pendant/wheels").glob("pendant-*.whl")
    with zipfile.ZipFile(wheel) as z:
        modules = {n for n in z.namelist() if n.endswith(".py")}
    shipped = {m.removeprefix("pendant/") for m in modules if m.startswith("pendant/")}
    here = {str(p.relative_to(build_deb.REPO / "device/pendant"))
            for p in (build_deb.REPO / "device/pendant").rglob("*.py")}  # fmt: skip
    assert shipped == here


@pytest.mark.parametrize("target", DEVICE_TARGETS, ids=lambda t: t.name)
def test_deb_installs_offline_from_its_hashed_list(
    two_debs: tuple[Path, Path], tmp_path: Path, target: lock.Target
) -> None:
    """What postinst runs on the device, asked of pip for the target's Python and platform."""
    root = tmp_path / "root"
    _contents(two_debs[0], root)
    share = root / "usr/share/pendant"
    listed = share / "requirements" / f"cp{target.python.replace('.', '')}.txt"
    platforms = [arg for p in target.platforms() for arg in ("--platform", p)]
    report = tmp_path / "report.json"
    cmd = [sys.executable, "-m", "pip", "--isolated", "install", "--dry-run", "--quiet",
           "--no-index", "--no-deps", "--require-hashes", "--find-links", str(share / "wheels"),
           "-r", str(listed), "--only-binary=:all:", *platforms, "--python-version",
           target.python, "--implementation", "cp", "--target", str(tmp_path / "t"),
           "--report", str(report)]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, env={"PIP_CONFIG_FILE": "/dev/null"},
                          check=False)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    installed = {i["metadata"]["name"].lower() for i in json.loads(report.read_text())["install"]}
    assert "pendant" in installed and "numpy" in installed
    assert len(installed) == len(listed.read_text().splitlines())
