from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile

from pendant.core.config import AudioConfig
from pendant.core.errors import AudioFormatError
from pendant.ears.audio import RATE_HZ, dbfs
from pendant.ears.audio import wav as wav_module
from pendant.ears.audio.convert import StreamConverter, convert
from pendant.ears.audio.wav import WavSource, read_audio


def tone(rate_hz: int, seconds: float, freq_hz: float = 440.0) -> np.ndarray:
    t = np.arange(int(rate_hz * seconds)) / rate_hz
    return 0.5 * np.sin(2 * np.pi * freq_hz * t)


def dominant_hz(samples: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(samples.astype(np.float64)))
    return float(np.argmax(spectrum) * RATE_HZ / len(samples))


@pytest.mark.parametrize(
    ("rate_hz", "channels", "subtype"),
    [
        (48_000, 2, "PCM_32"),  # what an I2S MEMS mic delivers
        (44_100, 2, "PCM_16"),
        (22_050, 1, "PCM_U8"),
        (8_000, 1, "PCM_16"),
        (16_000, 1, "FLOAT"),
        (32_000, 1, "PCM_24"),
    ],
)
def test_any_common_wav_becomes_16k_mono_int16(
    tmp_path: Path, rate_hz: int, channels: int, subtype: str
) -> None:
    x = tone(rate_hz, 1.0)
    data = np.stack([x] * channels, axis=1) if channels > 1 else x
    path = tmp_path / "in.wav"
    soundfile.write(path, data, rate_hz, subtype=subtype)
    out = read_audio(path)
    assert out.dtype == np.int16
    assert out.ndim == 1
    assert abs(len(out) - RATE_HZ) <= 16
    assert abs(dominant_hz(out) - 440.0) < 5
    assert -10 < dbfs(out) < -6  # a 0.5-amplitude sine is about -9 dBFS


def test_i2s_int32_stereo_stream_matches_whole_buffer_conversion() -> None:
    x = (tone(48_000, 1.0) * 2**31).astype(np.int32)
    stereo = np.stack([x, x], axis=1)
    conv = StreamConverter(48_000)
    streamed = np.concatenate([conv.push(stereo[i : i + 1440]) for i in range(0, len(x), 1440)])
    whole = convert(stereo, 48_000)
    assert abs(dominant_hz(streamed) - 440.0) < 5
    # The stream resampler holds back a few ms of look-ahead; nothing more is lost.
    assert 0 <= len(whole) - len(streamed) < RATE_HZ * 0.03


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"", "not a readable audio file"), (b"RIFF\x00\x00\x00\x00WAVEjunk", "not a readable")],
)
def test_unusable_file_gets_a_clear_error(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "bad.wav"
    path.write_bytes(content)
    with pytest.raises(AudioFormatError, match=re.escape(message)) as err:
        read_audio(path)
    assert str(path) in str(err.value)


def test_missing_and_empty_files(tmp_path: Path) -> None:
    with pytest.raises(AudioFormatError, match="no such file"):
        read_audio(tmp_path / "absent.wav")
    empty = tmp_path / "empty.wav"
    soundfile.write(empty, np.zeros(0), 16_000, subtype="PCM_16")
    with pytest.raises(AudioFormatError, match="holds no audio"):
        read_audio(empty)


def test_wav_source_plays_files_then_gaps_in_order(tmp_path: Path) -> None:
    paths = []
    for i, freq in enumerate((300.0, 1200.0)):
        p = tmp_path / f"{i}.wav"
        soundfile.write(p, tone(16_000, 0.6, freq), 16_000, subtype="PCM_16")
        paths.append(p)
    config = AudioConfig(realtime=False, gap_ms=300, chunk_ms=30)
    source = WavSource(config, paths)

    async def collect() -> list:
        return [c async for c in source.chunks()]

    chunks = asyncio.run(asyncio.wait_for(collect(), 30))
    assert all(len(c.samples) == 480 for c in chunks)
    stamps = [c.end_ms for c in chunks]
    assert stamps == sorted(stamps)
    audio = np.concatenate([c.samples for c in chunks])
    assert abs(dominant_hz(audio[:9600]) - 300) < 10
    assert np.all(audio[9700:14000] == 0)  # the gap after the first file
    assert abs(dominant_hz(audio[14400:24000]) - 1200) < 10


def test_played_fast_chunks_bear_the_time_they_are_heard_and_map_back_to_the_files(
    tmp_path: Path,
) -> None:
    """Played faster than real time, a file's end is not minutes ahead of the clock (the link
    refuses a speech end after its intent): each chunk bears the wall-clock time it was played,
    and `stream_s` finds where in the files a stamp was."""
    p = tmp_path / "long.wav"
    soundfile.write(p, tone(16_000, 30.0), 16_000, subtype="PCM_16")
    source = WavSource(AudioConfig(realtime=False, gap_ms=0, chunk_ms=30), [p])

    async def collect() -> list:
        return [c async for c in source.chunks()]

    before = time.time_ns() // 1_000_000
    chunks = asyncio.run(asyncio.wait_for(collect(), 30))
    after = time.time_ns() // 1_000_000
    assert len(chunks) == 1000
    stamps = [c.end_ms for c in chunks]
    assert len(set(stamps)) == len(stamps) == 1000  # a chunk a millisecond at most
    # 30 s of audio, a second or so of playing: none ahead of the clock (but for the last
    # few chunks of a block, a millisecond each).
    assert before <= stamps[0] and stamps[-1] <= after + 3
    # As the link sends it, rounded down to 10 ms: found within 5 chunks (150 ms).
    for k in (0, 500, 999):
        assert source.stream_s(stamps[k] // 10 * 10) == pytest.approx((k + 1) * 0.03, abs=0.16)
    assert source.stream_s(before - 100) == 0.0


def test_wav_source_decodes_one_file_at_a_time(tmp_path: Path, monkeypatch) -> None:
    """A long playlist is never all in RAM (a 400-file config once got the ears OOM-killed),
    yet a bad file among them still fails at start-up."""
    paths = []
    for i in range(4):
        p = tmp_path / f"{i}.wav"
        soundfile.write(p, tone(16_000, 0.3, 440.0), 16_000, subtype="PCM_16")
        paths.append(p)
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF nonsense")
    with pytest.raises(AudioFormatError, match=r"broken\.wav: not a readable audio file"):
        WavSource(AudioConfig(realtime=False), [*paths, broken])

    decoded: list[str] = []
    real = wav_module.read_audio
    monkeypatch.setattr(wav_module, "read_audio", lambda p: decoded.append(Path(p).name) or real(p))
    source = WavSource(AudioConfig(realtime=False, gap_ms=100, chunk_ms=30), paths)
    assert decoded == []
    # Where each file lies in the stream is known from the headers alone.
    assert source.spans_s[1] == pytest.approx((0.4, 0.7))

    async def first_chunks() -> None:
        stream = source.chunks()
        for _ in range(3):
            await anext(stream)
        await stream.aclose()

    asyncio.run(first_chunks())
    assert decoded == ["0.wav"]


def test_wav_source_needs_files() -> None:
    with pytest.raises(AudioFormatError, match=r"audio\.files is empty"):
        WavSource(AudioConfig(), [])
