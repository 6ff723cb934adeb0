"""onnxruntime sessions as the pendant runs them: small memory before speed.

onnxruntime's defaults suit a server: a CPU arena that keeps its high-water mark for good and
memory patterns planned per input shape. On a 512 MB Pi Zero 2 W the eyes' three models at
640x480 would hold about 370 MB that way; without the arena and the patterns they peak far
lower, for a few per cent of speed (`make bench` shows both figures).

A model loaded again and again (the eyes' reader loads each for every frame) can be kept
*prepared* (`prepare`, which `pendant prepare` runs): onnxruntime optimises its graph for this
machine once and saves the result, and later loads (`session(..., prepared=DIR)`) read that and
skip the optimising. The saved graph holds this CPU's choices (fused operators, memory
layouts), so it is kept per machine, never shipped. Only `prepare` writes: a process that holds
frames loads a copy or, without one, the model itself, and never writes a file.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.metadata
import logging
import os
import platform
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from pendant.core.errors import ModelError
from pendant.core.state import sync_directory, sync_file

log = logging.getLogger(__name__)

PREPARED_FORMAT = 1
"""Part of every copy's name: raised when the way copies are made changes (the options that
shape the graph), so old copies are made again rather than read."""


def session(
    model: Path | bytes,
    name: str,
    threads: int = 1,
    *,
    prepared: Path | None = None,
    build: Callable[[Path], bytes] | None = None,
) -> Any:
    """An InferenceSession on the CPU; ModelError (one line) if onnxruntime refuses it.

    One thread by default (the eyes choose theirs: `pendant.eyes.model_threads`). A pool's
    threads sleep between pieces of work instead of spinning: on a battery, a spinning thread
    burns a core for nothing (x86, "read this" on two threads: 15 % more CPU spinning).

    `prepared`: a directory that may hold this model's copy prepared for this machine
    (`prepare`): loaded from there when it does, else the model itself, the slow way (said once
    in the log); never written here. `build`: makes the model's bytes from the path, only when
    they are needed (the face guard's weights live in a Python literal).
    """
    if prepared is not None and isinstance(model, Path):
        copy = prepared_path(model, prepared, build)
        if copy.is_file():
            try:
                return _load(copy, name, _options(threads, optimise=False))
            except ModelError:
                log.warning(
                    "%s: its prepared copy %s would not load: loaded the slow way", name, copy
                )
        else:
            _slow_once(name, prepared)
    source = build(model) if build is not None and isinstance(model, Path) else model
    return _load(source, name, _options(threads))


@functools.cache
def _slow_once(name: str, directory: Path) -> None:
    log.info("%s: no copy prepared for this board in %s: loaded the slow way", name, directory)


def prepare(
    model: Path, name: str, directory: Path, build: Callable[[Path], bytes] | None = None
) -> Path | None:
    """`model` optimised for this machine and kept in `directory` (`pendant prepare`): the
    copy, made now unless a good one is there. None, said in one warning line, when it cannot
    be kept (a full or read-only card, a power cut): the model then loads the slow way. A
    model that does not load at all is a ModelError (one line)."""
    path = prepared_path(model, directory, build)
    if path.is_file():
        try:
            _load(path, name, _options(1, optimise=False))
            return path
        except ModelError:
            log.warning("%s: its prepared copy %s would not load: making it again", name, path)
    source = build(model) if build is not None else model
    options = _options(1)
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    try:
        directory.mkdir(parents=True, exist_ok=True)
        options.optimized_model_filepath = str(partial)
        _load(source, name, options)
        # On the card before its name is: a power cut then leaves no half copy under it.
        sync_file(partial)
        os.replace(partial, path)
        sync_directory(directory)
    except (ModelError, OSError) as exc:
        with contextlib.suppress(OSError):
            partial.unlink(missing_ok=True)
        _load(source, name, _options(1))  # the model itself: a ModelError if it is broken
        log.warning("%s: not kept prepared in %s: %s", name, directory, _first_line(exc))
        return None
    # Housekeeping: never a reason for the model not to load.
    with contextlib.suppress(OSError, ValueError, OverflowError):
        _forget_others(directory, _stem(model), path)
    return path


def _options(threads: int, optimise: bool = True) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.enable_cpu_mem_arena = False
    options.enable_mem_pattern = False
    options.intra_op_num_threads = threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if not optimise:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return options


def _load(model: Path | bytes, name: str, options: Any) -> Any:
    import onnxruntime as ort

    if isinstance(model, bytes):
        # onnxruntime's Python session keeps bytes it was given for as long as it lives (9 MB for
        # hama's model, 17 for the voice encoder's): it is given a file in memory instead.
        try:
            with _in_memory(model, name) as path:
                loaded = _load(path, name, options)
        except ModelError:
            raise
        except OSError as exc:  # no memory for it (ENOMEM, EMFILE)
            raise ModelError(f"{name}: cannot hold it in memory to load it: {exc}") from None
        # A fallback would load the model again from that path, closed by now.
        loaded.disable_fallback()
        return loaded
    try:
        return ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own untyped errors
        raise ModelError(f"{name}: onnxruntime cannot load it: {exc}") from None


@contextlib.contextmanager
def _in_memory(data: bytes, name: str) -> Iterator[Path]:
    """`data` as a file that lives in memory only (memfd), by a path this process can open."""
    fd = os.memfd_create(re.sub(r"[^\w.-]", "_", name)[:200], os.MFD_CLOEXEC)
    try:
        with os.fdopen(os.dup(fd), "wb") as f:
            f.write(data)
        yield Path(f"/proc/self/fd/{fd}")
    finally:
        os.close(fd)


def prepared_path(model: Path, directory: Path, build: Callable[[Path], bytes] | None) -> Path:
    """Where `model`'s prepared copy lives: named by the model (its file, and the manifest
    entry it was verified against), the code that builds its bytes (if any), onnxruntime's
    version, this machine's CPU and PREPARED_FORMAT, so that a change to any of them (an
    update, the card moved to another Pi) prepares it again. ModelError if the model is
    missing."""
    try:
        parts = [_identity(model), _verified(model)]
        if build is not None:
            parts.append(_identity(Path(build.__code__.co_filename)))
    except OSError as exc:
        raise ModelError(f"{model}: cannot read it: {exc.strerror or exc}") from None
    parts += [_runtime(), platform.machine(), _cpu(), str(PREPARED_FORMAT)]
    digest = hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]
    return directory / f"{_stem(model)}-{digest}.onnx"


def _stem(model: Path) -> str:
    """The model's folder and name (`ppocr-v6-det`): one prepared copy per model."""
    return f"{model.parent.name}-{model.stem}"


def _identity(path: Path) -> str:
    stat = path.stat()
    return f"{path.resolve()} {stat.st_size} {stat.st_mtime_ns}"


def _verified(model: Path) -> str:
    """The manifest entry the model's folder was verified against (`pendant.setup.
    fetch_models` writes it beside the files, with their sha256s pinned there), if any."""
    try:
        return (model.parent / ".verified.json").read_text(errors="replace")
    except OSError:
        return ""


@functools.cache
def _runtime() -> str:
    """onnxruntime's version, read without importing it (seconds on a Zero 2 W)."""
    try:
        return importlib.metadata.version("onnxruntime")
    except importlib.metadata.PackageNotFoundError:
        import onnxruntime as ort

        return str(ort.__version__)


@functools.cache
def _cpu() -> str:
    """This machine's CPU as onnxruntime's optimisations see it. From /sys where it says (the
    ARM core's id, the board's model): the same in every unit, where /proc/cpuinfo is hidden
    from some (ProcSubset=pid); else the first processor's model and features from
    /proc/cpuinfo (x86's "model name" and "flags")."""
    parts = []
    for path in (
        "/sys/devices/system/cpu/cpu0/regs/identification/midr_el1",
        "/sys/firmware/devicetree/base/model",
    ):
        with contextlib.suppress(OSError):
            parts.append(Path(path).read_text(errors="replace").strip("\x00\n"))
    if parts:
        return "\n".join(parts)
    with contextlib.suppress(OSError):
        first = Path("/proc/cpuinfo").read_text(errors="replace").split("\n\n", 1)[0]
        keys = ("model name", "flags", "cpu part", "features")
        parts += [s for s in first.splitlines() if s.split(":", 1)[0].strip().lower() in keys]
    return "\n".join(parts)


def _forget_others(directory: Path, stem: str, kept: Path) -> None:
    """Older copies of the model (another onnxruntime, another CPU), and halves of copies
    whose writer died (a power cut): each would hold tens of MB of the card for nothing."""
    copy = re.compile(rf"{re.escape(stem)}-[0-9a-f]{{16}}\.onnx")
    partial = re.compile(rf"\.{re.escape(stem)}-[0-9a-f]{{16}}\.onnx\.(\d+)")
    booted = time.time() - time.clock_gettime(time.CLOCK_BOOTTIME)
    for other in directory.iterdir():
        half = partial.fullmatch(other.name)
        stale = half is not None and (
            other.stat().st_mtime < booted or _gone(int(half[1]))  # pids repeat across boots
        )
        if stale or (other != kept and copy.fullmatch(other.name)):
            with contextlib.suppress(OSError):
                other.unlink()


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):
        return True
    except OSError:  # alive, another user's
        return False
    return False


def _first_line(exc: BaseException) -> str:
    text = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return text.splitlines()[0] if text else type(exc).__name__
