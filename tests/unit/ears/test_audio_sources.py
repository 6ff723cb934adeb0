"""One contract for every audio backend; backends whose hardware is absent are skipped, so the
same test runs on a Pi with a microphone."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from pendant.core.config import AudioConfig
from pendant.core.errors import BackendUnavailable
from pendant.ears.audio import RATE_HZ, Chunk, create_source
from tests.conftest import speech_files

CHUNKS = 20


def _config(source: str) -> AudioConfig:
    if source == "wav":
        return AudioConfig(source="wav", files=[str(speech_files("main")[0])], realtime=True)
    try:
        import sounddevice

        if not any(d["max_input_channels"] > 0 for d in sounddevice.query_devices()):
            pytest.skip("no microphone on this machine")
    except (ImportError, OSError) as exc:
        pytest.skip(f"PortAudio is not usable here: {exc}")
    return AudioConfig(source="mic")


@pytest.mark.parametrize("backend", ["wav", "mic"])
def test_source_contract(backend: str) -> None:
    config = _config(backend)
    source = create_source(config)

    async def take() -> list[Chunk]:
        got = []
        async for chunk in source.chunks():
            got.append(chunk)
            if len(got) == CHUNKS:
                break
        return got

    try:
        chunks = asyncio.run(asyncio.wait_for(take(), 10))
    finally:
        source.close()
        source.close()  # idempotent
    assert len(chunks) == CHUNKS
    for chunk in chunks:
        assert chunk.samples.dtype == np.int16
        assert chunk.samples.shape == (RATE_HZ * config.chunk_ms // 1000,)
    stamps = [c.end_ms for c in chunks]
    assert stamps == sorted(stamps)


def test_a_missing_microphone_is_one_clear_error() -> None:
    source = create_source(AudioConfig(source="mic", device="no such microphone"))

    async def first() -> None:
        async for _ in source.chunks():
            break

    with pytest.raises(BackendUnavailable, match=r"audio\.device") as err:
        asyncio.run(asyncio.wait_for(first(), 10))
    assert "\n" not in str(err.value)
