"""Invariant 1 and the network boundary, checked on real processes.

The ears service runs under strace on real recordings while subscribers listen on `#` of both
brokers: no file is opened for writing that could hold audio, no socket but AF_UNIX is opened,
no unix socket is reached but the bus's and systemd's notify socket (a unix socket can be a way
to the network: issue 14 item 12), and no run of the audio's bytes appears on any topic or in
the service's output; with escalate off, and on (Whisper in the recogniser's process), and with
the wearer's voice enrolled and every utterance checked (no number of the voiceprint leaves,
and the voices file is only read). The
same audit is pointed at deliberately leaky processes first, to show it would catch a leak.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import aiomqtt
import numpy as np
import pytest

from pendant.app.local_broker import LocalBroker
from pendant.core.errors import ModelError
from pendant.core.model_cache import model_path
from pendant.ears.audio.wav import read_audio
from pendant.ears.speaker.check import load_encoder
from pendant.ears.speaker.store import VoiceStore, centroid
from tests.conftest import DEMO_CONFIG, demo_config, speech_files
from tests.support.audit import audio_windows, leaks, read_strace, strace_prefix

TIMEOUT_S = 120


@contextlib.contextmanager
def notify_socket(path: Path) -> Iterator[socket.socket]:
    """Plays systemd's part: $NOTIFY_SOCKET, as under the unit (Type=notify)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.bind(str(path))
        s.setblocking(False)
        yield s


def notified(s: socket.socket) -> list[bytes]:
    out = []
    with contextlib.suppress(BlockingIOError):
        while True:
            out.append(s.recv(4096))
    return out


def check_unix_peers(log: Path, bus: LocalBroker, notify: Path, who: str) -> None:
    """The service reached the bus and systemd's socket, and no other unix socket."""
    reached = read_strace(log).other_unix
    assert str(bus.socket_path) in reached, "the trace must see the bus connect at all"
    assert str(notify) in reached, "the trace must see the notify datagrams at all"
    others = read_strace(log, allowed_unix=[bus.socket_path, notify]).other_unix
    assert others == [], f"the {who} reached unix sockets besides the bus: {others}"


def files_to_hear() -> list[Path]:
    wanted = {"cancel all timers", "set a timer for 5 minutes", "oov_2"}
    return [f for f in speech_files("main") if f.stem in wanted]


def config_file(
    tmp_path: Path, bus: LocalBroker, home: LocalBroker, wavs: list[Path], extra: str = ""
) -> Path:
    path = tmp_path / "pendant.toml"
    files = ", ".join(f'"{w}"' for w in wavs)
    path.write_text(
        DEMO_CONFIG.read_text()
        + f'\n[audio]\nsource = "wav"\nfiles = [{files}]\nrealtime = false\n'
        + f'\n[bus]\nsocket = "{bus.socket_path}"\nusername = "pendant"\n'
        + f'password_file = "{bus.password_file("pendant")}"\n'
        + f'\n[link]\nhost = "127.0.0.1"\nport = {home.port}\nusername = "link"\n'
        + f'password_file = "{home.password_file("link")}"\n'
        + f'outbox_path = "{tmp_path / "outbox.sqlite"}"\n'
        + extra
    )
    return path


# Asking a bigger model: the ears' recogniser process also loads Whisper and writes down what
# the closed set rejects (oov_2, looking for an "ask" phrase); the target is never reached.
ESCALATE = (
    '\n[escalate]\nenabled = true\ntarget = "openai"\nurl = "http://127.0.0.1:9/v1"\nmodel = "m"\n'
)


def escalate_extra(on: bool) -> str:
    if not on:
        return ""
    pytest.importorskip("faster_whisper", reason="faster-whisper is not installed")
    try:
        model_path(demo_config(), "whisper-base")
    except ModelError as exc:
        pytest.skip(str(exc))
    return ESCALATE


def test_the_audit_catches_a_leaky_process(tmp_path: Path) -> None:
    wav = files_to_hear()[0]
    leaky = textwrap.dedent(
        f"""
        import socket
        from pendant.ears.audio.wav import read_audio
        audio = read_audio({str(wav)!r})
        open({str(tmp_path / "copy.raw")!r}, "wb").write(audio.tobytes())
        print(audio.tobytes()[1000:3000].hex())
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM).close()
        """
    )
    log = tmp_path / "strace.log"
    done = subprocess.run(
        [*strace_prefix(log), sys.executable, "-c", leaky],
        capture_output=True,
        timeout=TIMEOUT_S,
    )
    assert done.returncode == 0, done.stderr
    audit = read_strace(log)
    assert str(tmp_path / "copy.raw") in audit.writes
    assert any("AF_INET" in s for s in audit.ip_sockets)
    raw = (tmp_path / "copy.raw").read_bytes()
    assert leaks(raw, audio_windows(read_audio(wav)))


def test_the_audit_catches_a_process_that_talks_to_another_unix_socket(tmp_path: Path) -> None:
    """Issue 14 item 12: a unix socket is a way out too (resolved's varlink socket makes DNS
    queries), so the audit names every one a process reaches but the bus and systemd's."""
    bus, resolver, journal = tmp_path / "bus.sock", tmp_path / "resolve.sock", tmp_path / "j.sock"
    notify = tmp_path / "notify.sock"
    servers = []
    for path, kind in ((bus, socket.SOCK_STREAM), (resolver, socket.SOCK_STREAM),
                       (notify, socket.SOCK_DGRAM), (journal, socket.SOCK_DGRAM)):  # fmt: skip
        server = socket.socket(socket.AF_UNIX, kind)
        server.bind(str(path))
        if kind == socket.SOCK_STREAM:
            server.listen()
        servers.append(server)
    leaky = textwrap.dedent(
        f"""
        import socket
        for path in ({str(bus)!r}, {str(resolver)!r}):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(path)
            s.close()
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.sendto(b"READY=1", {str(notify)!r})
            s.sendto(b"MESSAGE=hello", {str(journal)!r})
        try:  # absent: reaches nothing, so it is not reported
            socket.socket(socket.AF_UNIX).connect({str(tmp_path / "absent.sock")!r})
        except OSError:
            pass
        """
    )
    log = tmp_path / "strace.log"
    try:
        done = subprocess.run(
            [*strace_prefix(log), sys.executable, "-c", leaky],
            capture_output=True,
            timeout=TIMEOUT_S,
        )
    finally:
        for server in servers:
            server.close()
    assert done.returncode == 0, done.stderr
    audit = read_strace(log, allowed_unix=[bus, notify])
    assert audit.other_unix == [str(resolver), str(journal)]
    assert audit.ip_sockets == [] and audit.writes == []
    assert read_strace(log, allowed_unix=[bus, notify, resolver, journal]).other_unix == []


def enrolled_voice(state: Path) -> list[float]:
    """The wearer (speech-en/main's speaker) enrolled in the ears' state directory `state`, by
    the real encoder; their voiceprint as the voices file holds it."""
    pytest.importorskip("pendant.ears.speaker.encoder", reason="no voice encoder module")
    try:
        encoder, _ = load_encoder(demo_config())
    except ModelError as exc:
        pytest.skip(str(exc))
    said = {"set a timer for 3 hours and 10 minutes", "is the Front Door locked",
            "activate Mood Lighting", "what is the Outdoor Humidity"}  # fmt: skip
    embeddings = [encoder.embed(read_audio(f)) for f in speech_files("main") if f.stem in said]
    store = VoiceStore(state)
    store.add("Wearer", centroid([e for e in embeddings if e is not None]), len(embeddings))
    return json.loads(store.path.read_text())["voices"][0]["embedding"]


def voiceprint_marks(voiceprint: list[float]) -> list[bytes]:
    """What a leak of the voiceprint would carry: its numbers as the file writes them, as
    float32 and float64 bytes."""
    marks = [json.dumps(x).encode() for x in voiceprint if len(json.dumps(x)) >= 8]
    vector = np.asarray(voiceprint)
    for dtype in ("<f4", "<f8"):
        raw = vector.astype(dtype).tobytes()
        marks += [raw[i : i + 16] for i in range(0, len(raw), 256)]
    return marks


@pytest.mark.parametrize("variant", ["escalate-off", "escalate-on", "speaker"], ids=str)
def test_ears_write_no_audio_and_open_no_ip_socket(
    tmp_path: Path, brokers: tuple[LocalBroker, LocalBroker], variant: str
) -> None:
    """With `speaker`, the wearer is enrolled and every utterance checked: nor does any of
    the voiceprint leave, nor the ears write anything (the voices file is only read)."""
    bus, home = brokers
    wavs = files_to_hear()
    extra = escalate_extra(variant == "escalate-on")
    notify_path = tmp_path / "notify.sock"
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "NOTIFY_SOCKET": str(notify_path)}
    marks: list[bytes] = []
    if variant == "speaker":
        state = tmp_path / "ears-state"
        voiceprint = enrolled_voice(state)
        marks = voiceprint_marks(voiceprint)
        # The marks do catch the voiceprint, as the file writes it and as raw floats.
        assert leaks(json.dumps(voiceprint).encode(), marks)
        assert leaks(b"x" + np.asarray(voiceprint, "<f4").tobytes(), marks)
        env["STATE_DIRECTORY"] = str(state)
        # The threshold of tests/system/test_only_the_wearer.py (the calibrated one refuses
        # most of this noisy real speaker's commands, and the audit needs some to go out).
        extra += '\n[speaker]\ncheck = "always"\nthreshold = 0.65\n'
        voices_before = (state / "voices.json").read_bytes()
    config = config_file(tmp_path, bus, home, wavs, extra)
    windows = [w for wav in wavs for w in audio_windows(read_audio(wav))]

    async def run() -> tuple[list[bytes], bytes, bytes, int]:
        payloads: list[bytes] = []
        async with (
            aiomqtt.Client(
                str(bus.socket_path),
                1883,
                transport="unix",
                username="intruder",
                password=bus.password("intruder"),
            ) as bus_spy,
            aiomqtt.Client(
                "127.0.0.1", home.port or 0, username="viewer", password=home.password("viewer")
            ) as home_spy,
        ):
            await bus_spy.subscribe("#")
            await home_spy.subscribe("#")

            async def collect(client: aiomqtt.Client) -> None:
                async for message in client.messages:
                    payloads.append(str(message.topic).encode() + b" " + bytes(message.payload))  # type: ignore[arg-type]

            spies = [asyncio.create_task(collect(c)) for c in (bus_spy, home_spy)]
            link = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "pendant", "--config", str(config), "service", "link",
                env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
            )  # fmt: skip
            ears = await asyncio.create_subprocess_exec(
                *strace_prefix(tmp_path / "ears.strace"),
                sys.executable, "-m", "pendant", "--config", str(config), "service", "ears",
                env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            out, err = await ears.communicate()
            for _ in range(100):  # until the link has passed the intents on
                if sum(p.startswith(b"pendant/pendant-demo/intent/") for p in payloads) >= 2:
                    break
                await asyncio.sleep(0.05)
            if link.returncode is None:
                link.terminate()
            await link.wait()
            for spy in spies:
                spy.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await spy
            return payloads, out, err, ears.returncode or 0

    with notify_socket(notify_path) as notify:
        payloads, out, err, code = asyncio.run(asyncio.wait_for(run(), TIMEOUT_S))
        assert any(b"READY=1" in m for m in notified(notify))
    assert code == 0, err.decode(errors="replace")[-2000:]
    intents = [p for p in payloads if p.startswith(b"pendant/pendant-demo/intent/")]
    assert len(intents) >= 2, "the audit must watch a run that did its work"
    audit = read_strace(tmp_path / "ears.strace")
    assert audit.ip_sockets == [], "the ears opened a network socket"
    assert audit.writes == [], "the ears opened files for writing"
    check_unix_peers(tmp_path / "ears.strace", bus, notify_path, "ears")
    for payload in payloads:
        assert not leaks(payload, windows), f"audio bytes on the bus: {payload[:80]!r}"
    assert not leaks(out + err, windows), "audio bytes in the service's output"
    assert np.all([len(p) < 8192 + 200 for p in payloads])
    if variant == "speaker":
        assert any(b"/voices " in p and b'"in_force":true' in p for p in payloads)
        for payload in payloads:
            assert not leaks(payload, marks), f"voiceprint on the bus: {payload[:80]!r}"
        assert not leaks(out + err, marks), "voiceprint in the service's output"
        assert (state / "voices.json").read_bytes() == voices_before
        assert stat.S_IMODE((state / "voices.json").stat().st_mode) == 0o600


def test_eyes_write_no_frames_and_open_no_ip_socket(
    tmp_path: Path, brokers: tuple[LocalBroker, LocalBroker]
) -> None:
    """The eyes under strace, asked to read a photo with a face: only a face count leaves."""
    skimage_data = pytest.importorskip("skimage.data", reason="scikit-image (dev extra) absent")
    from PIL import Image

    from pendant.core.events import Command
    from pendant.eyes.images import fit, load_image

    bus, home = brokers
    photo = tmp_path / "astronaut.png"
    Image.fromarray(skimage_data.astronaut()).save(photo)
    frame = fit(load_image(photo), 640, 480)
    windows = [w for w in audio_windows(frame.ravel().view(np.int16)) if len(set(w)) > 8]
    config = config_file(tmp_path, bus, home, [])
    config.write_text(config.read_text() + f'\n[eyes]\nfiles = ["{photo}"]\n')
    notify_path = tmp_path / "notify.sock"
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "NOTIFY_SOCKET": str(notify_path)}

    output = (tmp_path / "eyes.out").open("wb")

    async def run() -> list[bytes]:
        payloads: list[bytes] = []
        async with aiomqtt.Client(
            str(bus.socket_path),
            1883,
            transport="unix",
            username="intruder",
            password=bus.password("intruder"),
        ) as bus_spy:
            await bus_spy.subscribe("#")

            async def collect() -> None:
                async for message in bus_spy.messages:
                    payloads.append(str(message.topic).encode() + b" " + bytes(message.payload))  # type: ignore[arg-type]

            spy = asyncio.create_task(collect())
            # Its output to a file, not a pipe nobody drains until the end: a full pipe would
            # block its logging, and with it the service.
            eyes = await asyncio.create_subprocess_exec(
                *strace_prefix(tmp_path / "eyes.strace"),
                sys.executable, "-m", "pendant", "--config", str(config), "service", "eyes",
                env=env, stdout=output, stderr=output,
            )  # fmt: skip
            # Ready once it announces its camera state on the bus.
            while not any(p.startswith(b"pendant-bus/camera ") for p in payloads):
                if eyes.returncode is not None:
                    break
                await asyncio.sleep(0.05)
            assert eyes.returncode is None, (tmp_path / "eyes.out").read_text()[-2000:]
            capture = Command(device_id="pendant-demo", name="capture")
            await bus_spy.publish("pendant-bus/cmd/capture", capture.to_json(), qos=1)
            while not any(p.startswith(b"pendant-bus/scene ") for p in payloads):
                await asyncio.sleep(0.05)
            # SIGTERM to the service itself: strace would only detach from it.
            children = Path(f"/proc/{eyes.pid}/task/{eyes.pid}/children").read_text().split()
            for child in children:
                os.kill(int(child), signal.SIGTERM)
            await eyes.wait()
            spy.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await spy
            return payloads

    with output, notify_socket(notify_path) as notify:
        payloads = asyncio.run(asyncio.wait_for(run(), TIMEOUT_S))
        assert any(b"READY=1" in m for m in notified(notify))
    out = (tmp_path / "eyes.out").read_bytes()
    scene = next(p for p in payloads if p.startswith(b"pendant-bus/scene "))
    assert b'"face_count":1' in scene, scene
    audit = read_strace(tmp_path / "eyes.strace")
    assert audit.ip_sockets == [], "the eyes opened a network socket"
    assert audit.writes == [], "the eyes opened files for writing"
    check_unix_peers(tmp_path / "eyes.strace", bus, notify_path, "eyes")
    for payload in payloads:
        assert not leaks(payload, windows), f"frame bytes on the bus: {payload[:80]!r}"
    assert not leaks(out, windows), "frame bytes in the service's output"
