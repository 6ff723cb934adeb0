"""The eyes' reader process (`pendant.eyes.reader`, `pendant.eyes.worker`): it reads a frame
handed over a pipe, exits when let go, and a reader that dies, hangs or fails costs one capture
a one-line error, not the next capture. The service around it is test_eyes_service.py's."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import numpy as np
import pytest

from pendant.core.config import Config, ModelsConfig
from pendant.core.errors import ModelError
from pendant.eyes.reader import Reader, ReaderError
from tests.support.eyes_support import eyes_config, normalise, render_text

TIMEOUT_S = 60.0


@pytest.fixture(scope="module")
def config() -> Config:
    return eyes_config()


def _with(config: Config, **eyes: object) -> Config:
    return config.model_copy(update={"eyes": config.eyes.model_copy(update=eyes)})


def _label() -> np.ndarray:
    return np.asarray(render_text(["Keep refrigerated"])).copy()


def _run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(asyncio.wait_for(coro, TIMEOUT_S))


def _open_for_writing(pid: int) -> list[str]:
    """The regular files process `pid` holds open for writing."""
    found = []
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        if fd.name in ("1", "2"):  # stderr, and stdout made a copy of it
            continue
        target = os.readlink(fd)
        flags = int(Path(f"/proc/{pid}/fdinfo/{fd.name}").read_text().split()[3], 8)
        if target.startswith("/") and Path(target).is_file() and flags & (os.O_WRONLY | os.O_RDWR):
            found.append(target)
    return found


def test_reader_reads_a_frame_from_a_pipe_and_exits_when_let_go(config: Config) -> None:
    async def scenario() -> None:
        reader = Reader(_with(config, linger_s=0))
        seen = await reader.look(_label(), "read_this", None)
        assert normalise(seen.scene.text) == "keep refrigerated"
        assert seen.intents[0].name == "ReadText"
        child = reader._child
        assert child is not None and child.alive
        pid = child.pid
        # The frame went in through stdin, a pipe; the reader has no file open for writing
        # (its stderr aside: the service's, the journal under systemd).
        assert os.readlink(f"/proc/{pid}/fd/0").startswith("pipe:")
        assert _open_for_writing(pid) == []
        # With no linger it is let go at once, and exits by itself (stdin closed).
        while child.alive:
            await asyncio.sleep(0.05)
        assert child.proc.returncode == 0 and reader.pid is None
        await reader.close()

    _run(scenario())


def test_reader_lingers_for_the_next_frame_then_goes(config: Config) -> None:
    async def scenario() -> None:
        reader = Reader(_with(config, linger_s=3600))
        await reader.look(_label(), "read_this", None)
        first = reader.pid
        seen = await reader.look(_label(), "capture", None)
        assert reader.pid == first and reader.started == 1
        assert normalise(seen.scene.text) == "keep refrigerated"
        await reader.close()
        assert reader.pid is None
        assert not Path(f"/proc/{first}").exists() or "Z" in _state(first)

    _run(scenario())


def _state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def test_reader_killed_mid_capture_is_one_error_and_the_next_capture_works(
    config: Config,
) -> None:
    async def scenario() -> None:
        reader = Reader(config)
        await reader.start()  # as the service does while the camera takes the frame
        pid = reader.pid
        assert pid is not None
        # Stopped, it cannot answer before it is killed, however slow this machine is.
        os.kill(pid, signal.SIGSTOP)
        look = asyncio.create_task(reader.look(_label(), "read_this", None))
        while not reader.reading:
            await asyncio.sleep(0.01)
        os.kill(pid, signal.SIGKILL)
        with pytest.raises(ReaderError) as err:
            await look
        assert str(err.value) == (
            "eyes: the reader stopped (killed by SIGKILL) before the scene was read"
        )
        seen = await reader.look(_label(), "read_this", None)
        assert normalise(seen.scene.text) == "keep refrigerated" and reader.started == 2
        await reader.close()

    _run(scenario())


def test_a_reader_that_hangs_is_killed_after_the_timeout(config: Config) -> None:
    hang = (sys.executable, "-c", "import time; time.sleep(600)")

    async def scenario() -> None:
        reader = Reader(_with(config, read_timeout_s=0.5), command=hang)
        await reader.start()
        child = reader._child
        assert child is not None
        with pytest.raises(ReaderError) as err:
            await reader.look(_label(), "capture", None)
        assert str(err.value) == (
            "eyes: no scene within 0.5 s (eyes.read_timeout_s): the reader was stopped"
        )
        assert child.proc.returncode == -signal.SIGKILL and reader.pid is None
        await reader.close()

    _run(scenario())


def test_a_model_that_will_not_load_is_one_line(tmp_path: Path) -> None:
    empty = Config(models=ModelsConfig(cache_dir=str(tmp_path)))
    with pytest.raises(ModelError) as err:
        Reader(empty).warm_up()
    assert "\n" not in str(err.value) and "is not in" in str(err.value)

    async def scenario() -> None:
        reader = Reader(empty)
        with pytest.raises(ModelError) as err:
            await reader.look(_label(), "capture", None)
        assert "\n" not in str(err.value) and "is not in" in str(err.value)
        await reader.close()

    _run(scenario())


def test_warm_up_names_each_step_and_the_detector(config: Config) -> None:
    steps: list[str] = []
    reader = Reader(config)
    reader.warm_up(steps.append)
    assert steps == [
        "warming up the face guard",
        "warming up the text reader",
        "warming up the detector",
    ]
    assert reader.detector is not None and reader.detector.endswith("Detector")
    assert reader.pid is None  # the warm-up's reader is gone again


def _answering(reply: str) -> tuple[str, ...]:
    """A reader that loads nothing, takes one frame and answers `reply` (a line, or bytes
    without end when it is "endless")."""
    script = f"""
import json, sys
inp, out = sys.stdin.buffer, sys.stdout.buffer
inp.readline()
out.write(b'{{"ready": "none"}}\\n'); out.flush()
header = json.loads(inp.readline())
inp.read(header["height"] * header["width"] * 3)
reply = {reply!r}
if reply == "endless":
    while True:
        out.write(b"x" * 65536)
out.write(reply.encode() + b"\\n"); out.flush()
inp.read()
"""
    return (sys.executable, "-c", script)


SIGHT = {"face_count": 0, "text": "", "confidence": 0.0, "labels": []}


@pytest.mark.parametrize(
    ("reply", "why"),
    [
        ("not json", "Expecting value"),
        ("[1, 2]", "not a JSON object"),
        ('{"no": "sight"}', "'sight'"),
        ('{"sight": []}', "not a sight"),
        # A reader names no device, request or session: the eyes do.
        (json.dumps({"sight": SIGHT | {"device_id": "pendant-other"}}), "not a sight"),
        (json.dumps({"sight": SIGHT | {"face_count": -1}}), "face_count -1 is not 0 to 100"),
        (json.dumps({"sight": SIGHT | {"face_count": True}}), "face_count True"),
        (json.dumps({"sight": SIGHT | {"text": "x" * 501}}), "at most 500 characters"),
        (json.dumps({"sight": SIGHT | {"confidence": 2}}), "confidence 2 is not 0 to 1"),
        (json.dumps({"sight": SIGHT | {"labels": [["cup", 0.5]] * 21}}), "at most 20"),
        (json.dumps({"sight": SIGHT | {"labels": [["cup"]]}}), "not [name, score]"),
        (json.dumps({"sight": SIGHT | {"labels": [["x" * 101, 0.5]]}}), "not [name, score]"),
        ("endless", "longer than 1048576 bytes"),
    ],
)
def test_a_reader_that_answers_no_scene_is_one_error_and_stopped(
    config: Config, reply: str, why: str
) -> None:
    """Review M1/L1: a garbled answer (a bug, a version mix-up, a reader gone wrong) crashed the
    eyes service, and any number of intents would have been published. Now it is one line,
    the reader is killed, and the eyes publish no more than one look makes."""

    async def scenario() -> None:
        reader = Reader(config, command=_answering(reply))
        with pytest.raises(ReaderError, match="eyes: the reader's answer is not a scene") as err:
            await reader.look(_label(), "capture", None)
        assert why in str(err.value) and "\n" not in str(err.value)
        assert reader.pid is None
        await reader.close()

    _run(scenario())


def test_a_readers_sight_becomes_this_devices_events_for_this_request(config: Config) -> None:
    sight = SIGHT | {"text": "Oat milk", "confidence": 0.9}

    async def scenario() -> None:
        reader = Reader(config, command=_answering(json.dumps({"sight": sight})))
        seen = await reader.look(_label(), "read_this", "0123456789abcdef0123456789abcdef")
        assert seen.scene.device_id == config.device_id and seen.scene.trigger == "read_this"
        assert (
            seen.scene.session_id == "0123456789abcdef0123456789abcdef"
            and seen.scene.text == "Oat milk"
        )
        (intent,) = seen.intents
        assert intent.name == "ReadText" and intent.session_id == "0123456789abcdef0123456789abcdef"
        await reader.close()

    _run(scenario())


def test_the_reader_of_a_capture_loads_neither_pydantic_nor_opencv(config: Config) -> None:
    """Its config comes as plain attributes, its answer goes as a Sight and OCR's geometry is
    numpy's: pydantic's 14 MB and OpenCV's 27 stay out of the capture's peak."""

    async def scenario() -> None:
        reader = Reader(config)
        seen = await reader.look(_label(), "read_this", None)
        assert normalise(seen.scene.text) == "keep refrigerated"
        assert reader.pid is not None
        maps = Path(f"/proc/{reader.pid}/maps").read_text()
        assert "onnxruntime" in maps
        assert "pydantic" not in maps and "cv2" not in maps
        await reader.close()

    _run(scenario())


def test_the_reader_gets_neither_the_bus_login_nor_systemds_socket(
    config: Config, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Review L1: the reader runs in the eyes' sandbox but needs none of the service's ways
    out: the bus password (systemd's credentials folder) and the notify socket."""
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "notify"))
    dump = tmp_path / "env.json"
    script = f"import json, os; open({str(dump)!r}, 'w').write(json.dumps(dict(os.environ)))"

    async def scenario() -> None:
        reader = Reader(config, command=(sys.executable, "-c", script))
        await reader.start()
        for _ in range(200):
            if dump.exists() and dump.stat().st_size:
                break
            await asyncio.sleep(0.02)
        await reader.close()

    _run(scenario())
    seen = json.loads(dump.read_text())
    assert "CREDENTIALS_DIRECTORY" not in seen and "NOTIFY_SOCKET" not in seen
    assert seen["PATH"] == os.environ["PATH"]
