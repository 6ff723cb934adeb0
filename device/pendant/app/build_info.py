"""What this install is: the lock it came from and the versions that decide what it understands.

Two installs of one lock are one product; `pendant --version --verbose` and `pendant doctor`
print the lock's sha256 so a report names it. On the device the .deb's build-info.json holds
it (written by packaging/build_deb.py from the lock the wheels came from); in a checkout it is
the sha256 of the uv.lock beside the package.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
from dataclasses import dataclass
from pathlib import Path

from pendant import __version__

INSTALLED = Path("/usr/share/pendant/build-info.json")
CHECKOUT_LOCK = Path(__file__).resolve().parents[3] / "uv.lock"
MANIFEST = Path(__file__).resolve().parents[1] / "data" / "models.toml"
# What turns speech into intents: a change in any of these changes what the pendant does.
DECIDING = ("pocketsphinx", "onnxruntime", "hassil", "home-assistant-intents", "numpy",
            "opencv-python-headless", "webrtcvad-wheels")  # fmt: skip


@dataclass(frozen=True)
class BuildInfo:
    """The facts `collect` gathers: the version, the lock's sha256, the deciding packages' versions
    (None: not installed) and the model manifest's sha256 (None: missing)."""

    version: str
    lock_sha256: str | None
    lock_source: str  # where the digest was read: the package's build-info or the checkout
    packages: dict[str, str | None]
    manifest_sha256: str | None

    def lines(self) -> list[str]:
        """For people: one fact a line."""
        lock = self.lock_sha256 or "unknown (neither build-info.json nor uv.lock found)"
        out = [f"pendant {self.version}", f"{'lock':<23} sha256 {lock} ({self.lock_source})"]
        for name, version in self.packages.items():
            out.append(f"{name:<23} {version or 'not installed'}")
        out.append(f"{'model manifest':<23} sha256 {self.manifest_sha256 or 'missing'}")
        return out


def _sha256(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def _installed_lock(path: Path) -> str | None:
    try:
        value = json.loads(path.read_text()).get("lock_sha256")
    except (OSError, ValueError, AttributeError):
        return None
    return value if isinstance(value, str) else None


def _version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def collect(installed: Path = INSTALLED, checkout_lock: Path = CHECKOUT_LOCK) -> BuildInfo:
    """The build facts of the running install (the package's first, else the checkout's)."""
    digest, source = _installed_lock(installed), str(installed)
    if digest is None:
        digest, source = _sha256(checkout_lock), str(checkout_lock)
    packages = {name: _version(name) for name in DECIDING}
    return BuildInfo(__version__, digest, source, packages, _sha256(MANIFEST))
