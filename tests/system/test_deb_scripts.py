"""The .deb's maintainer scripts (packaging/build_deb.py's POSTINST), run by sh with the
commands they call stubbed: what they ask of systemd on an install and on an upgrade."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

sys.path.insert(0, str(REPO / "packaging"))
# packaging/ holds scripts, not a package
import build_deb

STUB = """#!/bin/sh
echo "$(basename "$0") $*" >> "{log}"
"""
# The venv's python: asked for its tag, then to install the listed wheels.
PYTHON = """#!/bin/sh
case "$*" in
  *version_info*) echo cp311 ;;
  *) echo "venv-python $*" >> "{log}" ;;
esac
"""
# python3 -m venv DIR: makes DIR/bin/python.
PYTHON3 = """#!/bin/sh
echo "python3 $*" >> "{log}"
mkdir -p "$4/bin"
cat > "$4/bin/python" <<'END'
{python}
END
chmod +x "$4/bin/python"
"""


def run_postinst(tmp_path: Path, *args: str, systemd: bool = True) -> list[str]:
    """POSTINST with its absolute paths moved under `tmp_path` and every command it runs a
    stub that logs its arguments; the log's lines."""
    log = tmp_path / "calls.log"
    log.touch()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("systemd-sysusers", "systemd-tmpfiles", "systemctl", "deb-systemd-helper"):
        (bin_dir / name).write_text(STUB.format(log=log))
    python = PYTHON.format(log=log)
    (bin_dir / "python3").write_text(PYTHON3.format(log=log, python=python))
    for stub in bin_dir.iterdir():
        stub.chmod(0o755)
    share = tmp_path / "usr/share/pendant"
    (share / "requirements").mkdir(parents=True)
    (share / "requirements/cp311.txt").write_text("pendant==0 --hash=sha256:00\n")
    (share / "device-pendant.toml").write_text("")
    run = tmp_path / "run/systemd/system"
    if systemd:
        run.mkdir(parents=True)
    script = (
        build_deb.POSTINST.replace("/opt/pendant/venv", str(tmp_path / "venv"))
        .replace("/etc/pendant", str(tmp_path / "etc/pendant"))
        .replace("/usr/share/pendant", str(share))
        .replace("/run/systemd/system", str(run))
        .replace("@WHEELS@", str(tmp_path / "wheels"))
        .replace("@REQUIREMENTS@", str(share / "requirements"))
    )
    assert "/opt/" not in script and " /etc/" not in script  # nothing outside tmp_path
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(tmp_path)}
    proc = subprocess.run(
        ["sh", "-c", script, "postinst", *args], env=env, capture_output=True, text=True,
        check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return log.read_text().splitlines()


def test_an_upgrade_restarts_what_runs_after_preparing_the_models_again(tmp_path: Path) -> None:
    calls = run_postinst(tmp_path, "configure", "0.9.0")
    restarts = [c for c in calls if c.startswith("systemctl try-restart")]
    assert restarts == ["systemctl try-restart pendant-eyes-prepare.service pendant.target"]
    # After the venv is rebuilt and systemd has re-read the units.
    assert calls.index(restarts[0]) > max(
        calls.index(c) for c in calls if c.startswith(("venv-python", "systemctl daemon-reload"))
    )


def test_a_first_install_starts_nothing(tmp_path: Path) -> None:
    calls = run_postinst(tmp_path, "configure", "")
    assert any(c.startswith("venv-python") and "--require-hashes" in c for c in calls)
    assert not [c for c in calls if "restart" in c or c.startswith("systemctl start")]


def test_without_systemd_running_an_upgrade_asks_nothing_of_it(tmp_path: Path) -> None:
    # An image being built in a chroot: the units are enabled, nothing is (re)started.
    calls = run_postinst(tmp_path, "configure", "0.9.0", systemd=False)
    assert not [c for c in calls if c.startswith("systemctl") and "enable" not in c]


def test_the_units_it_restarts_are_the_packages() -> None:
    line = next(x for x in build_deb.POSTINST.splitlines() if "try-restart" in x)
    units = [w for w in line.split() if w.endswith((".service", ".target"))]
    assert units and all((REPO / "services" / unit).is_file() for unit in units), units
