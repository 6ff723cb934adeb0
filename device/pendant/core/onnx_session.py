"""onnxruntime sessions as the pendant runs them: small memory before speed.

onnxruntime's defaults suit a server: a CPU arena that keeps its high-water mark for good and
memory patterns planned per input shape. On a 512 MB Pi Zero 2 W the eyes' three models at
640x480 would hold about 370 MB that way; without the arena and the patterns they peak far
lower, for a few per cent of speed (`make bench` shows both figures).

A model loaded again and again (the eyes' reader loads each for every frame) can be kept
*prepared*: onnxruntime optimises its graph for this machine on the first load and saves the
result, and later loads read that and skip the optimising. The saved graph holds this CPU's
choices (fused operators, memory layouts), so it is kept per machine, never shipped.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import logging
import os
import platform
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pendant.core.errors import ModelError

log = logging.getLogger(__name__)


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

    `prepared`: a directory where a model given as a path is kept optimised for this machine
    after its first load (see the module's docstring); a copy that will not load is made
    again, and a directory that cannot be written only costs the time it would have saved.
    `build`: makes the model's bytes from the path, only when they are needed (the face
    guard's weights live in a Python literal).
    """
    if prepared is not None and isinstance(model, Path):
        return _prepared_session(model, name, threads, prepared, build)
    source = build(model) if build is not None and isinstance(model, Path) else model
    return _load(source, name, _options(threads))


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

    try:
        source = model if isinstance(model, bytes) else str(model)
        return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own untyped errors
        raise ModelError(f"{name}: onnxruntime cannot load it: {exc}") from None


def prepared_path(model: Path, directory: Path, build: Callable[[Path], bytes] | None) -> Path:
    """Where `model`'s prepared copy lives: named by the model file, the code that builds its
    bytes (if any), onnxruntime's version and this machine's CPU, so that a change to any of
    them (an update, the card moved to another Pi) prepares it again."""
    parts = [_identity(model), _runtime(), platform.machine(), _cpu()]
    if build is not None:
        parts.append(_identity(Path(build.__code__.co_filename)))
    digest = hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]
    return directory / f"{_stem(model)}-{digest}.onnx"


def _stem(model: Path) -> str:
    """The model's folder and name (`ppocr-v6-det`): one prepared copy per model."""
    return f"{model.parent.name}-{model.stem}"


def _runtime() -> str:
    """onnxruntime's version, read without importing it (seconds on a Zero 2 W)."""
    try:
        return importlib.metadata.version("onnxruntime")
    except importlib.metadata.PackageNotFoundError:
        import onnxruntime as ort

        return str(ort.__version__)


def _identity(path: Path) -> str:
    stat = path.stat()
    return f"{path.resolve()} {stat.st_size} {stat.st_mtime_ns}"


def _cpu() -> str:
    """This machine's CPU as onnxruntime's optimisations see it: the first processor's model
    and features from /proc/cpuinfo (x86's "model name" and "flags"; ARM's "CPU part" and
    "Features"), and from /sys the ARM core's id and the board's model, which a unit with
    ProcSubset=pid (the eyes') still sees when /proc/cpuinfo is hidden from it."""
    parts = []
    with contextlib.suppress(OSError):
        first = Path("/proc/cpuinfo").read_text(errors="replace").split("\n\n", 1)[0]
        keys = ("model name", "flags", "cpu part", "features")
        parts += [s for s in first.splitlines() if s.split(":", 1)[0].strip().lower() in keys]
    for path in (
        "/sys/devices/system/cpu/cpu0/regs/identification/midr_el1",
        "/sys/firmware/devicetree/base/model",
    ):
        with contextlib.suppress(OSError):
            parts.append(Path(path).read_text(errors="replace").strip("\x00\n"))
    return "\n".join(parts)


def _prepared_session(
    model: Path,
    name: str,
    threads: int,
    directory: Path,
    build: Callable[[Path], bytes] | None,
) -> Any:
    try:
        path = prepared_path(model, directory, build)
    except OSError as exc:  # the model itself is missing: say so as an unprepared load would
        raise ModelError(f"{name}: cannot read it: {exc.strerror or exc}") from None
    if path.is_file():
        try:
            return _load(path, name, _options(threads, optimise=False))
        except ModelError:
            log.warning("%s: its prepared copy %s would not load; preparing it again", name, path)
    source = build(model) if build is not None else model
    options = _options(threads)
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        log.warning("%s: not kept prepared (%s): %s", name, directory, exc.strerror or exc)
        return _load(source, name, options)
    if not os.access(directory, os.W_OK):
        # Where another unit prepares the copies and this one only reads them (the eyes: see
        # pendant-eyes-prepare.service): a missing copy is loaded the slow way.
        log.info("%s: no copy prepared for this board in %s: loaded the slow way", name, directory)
        return _load(source, name, options)
    options.optimized_model_filepath = str(partial)
    try:
        loaded = _load(source, name, options)
        os.replace(partial, path)
    except (ModelError, OSError) as exc:
        with contextlib.suppress(OSError):
            partial.unlink(missing_ok=True)
        # A full or read-only card fails the save, not the model: load it without keeping it.
        loaded = _load(source, name, _options(threads))
        log.warning("%s: not kept prepared (%s): %s", name, directory, _first_line(exc))
        return loaded
    _forget_others(directory, _stem(model), path)
    return loaded


def _forget_others(directory: Path, stem: str, kept: Path) -> None:
    """Older copies of the model (another onnxruntime, another CPU), and halves of copies
    whose writer died (a power cut): each would hold tens of MB of the card for nothing."""
    copy = re.compile(rf"{re.escape(stem)}-[0-9a-f]{{16}}\.onnx")
    partial = re.compile(rf"\.{re.escape(stem)}-[0-9a-f]{{16}}\.onnx\.(\d+)")
    for other in directory.iterdir():
        half = partial.fullmatch(other.name)
        if (other != kept and copy.fullmatch(other.name)) or (half and _gone(int(half[1]))):
            with contextlib.suppress(OSError):
                other.unlink()


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # alive, another user's
        return False
    return False


def _first_line(exc: BaseException) -> str:
    text = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return text.splitlines()[0] if text else type(exc).__name__
