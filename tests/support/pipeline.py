"""Run WAV files through the whole pendant, as `pendant listen` does, and collect what a
subscriber on the home broker receives, attributed to the file each intent was spoken in."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt

from pendant.app.local_broker import LocalBroker
from pendant.app.one_process import Pendant
from pendant.app.replay import simulated
from pendant.core.config import Config
from pendant.core.events import Button
from pendant.ears.audio import RATE_HZ, Chunk
from pendant.ears.audio.wav import WavSource

RUN_TIMEOUT_S = 600


@dataclass
class Received:
    intents: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    """File index → intents attributed to it."""
    messages: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    """Every (topic, payload) the subscriber saw, in order."""
    link_dropped: int = 0

    def for_file(self, index: int) -> list[dict[str, Any]]:
        return self.intents.get(index, [])


class HeldWavSource(WavSource):
    """The files as said holding the button: the ears get a press where each file starts
    and a release `RELEASE_S` into the silence after it, as the body would send them, in
    step with the audio however fast it is played."""

    RELEASE_S = 0.3

    def __init__(self, config: Config, files: Sequence[Path], pendant: Pendant | None = None):
        super().__init__(config.audio, files)
        self.device_id = config.device_id
        self.pendant = pendant

    async def chunks(self) -> AsyncIterator[Chunk]:
        spans, played, file, held = self.spans_s, 0, 0, False
        async for chunk in super().chunks():
            now_s = played / RATE_HZ
            played += len(chunk.samples)
            ears = self.pendant.ears.ears if self.pendant is not None else None
            if ears is not None and not held and file < len(spans) and now_s >= spans[file][0]:
                await ears.on_button(Button(device_id=self.device_id, action="press"))
                held = True
            yield chunk
            if ears is not None and held and now_s >= spans[file][1] + self.RELEASE_S:
                await ears.on_button(Button(device_id=self.device_id, action="release"))
                held, file = False, file + 1


async def _run(
    config: Config,
    files: Sequence[Path],
    bus: LocalBroker,
    home: LocalBroker,
    held: bool = False,
) -> Received:
    cfg = simulated(config, bus, home, realtime=False)
    # Files played faster than real time speak faster than anyone can: the gate's rate per
    # type is not what these runs measure (tests/unit/link/test_gate_content.py does).
    cfg = cfg.model_copy(update={"link": cfg.link.model_copy(update={"gate_burst": 10_000})})
    source = HeldWavSource(cfg, files) if held else WavSource(cfg.audio, files)
    pendant = Pendant(cfg, source=source, parts=("ears", "link"))
    if isinstance(source, HeldWavSource):
        source.pendant = pendant
    got = Received()
    async with aiomqtt.Client(
        "127.0.0.1", home.port or 0, username="viewer", password=home.password("viewer")
    ) as viewer:
        await viewer.subscribe("#", qos=1)

        async def collect() -> None:
            async for message in viewer.messages:
                payload = bytes(message.payload)  # type: ignore[arg-type]
                try:
                    body = json.loads(payload)
                except ValueError:
                    body = {"raw": payload.decode(errors="replace")}
                got.messages.append((str(message.topic), body))

        task = asyncio.create_task(collect())
        await pendant.run()
        expected = sum(pendant.link.published.values())
        for _ in range(250):
            own = [m for t, m in got.messages if t.startswith(pendant.link.base_topic + "/")]
            if len([m for m in own if "type" in m]) >= expected:
                break
            await asyncio.sleep(0.02)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    got.link_dropped = sum(pendant.link.gate.dropped.values())
    assert source.started_ms is not None
    spans = source.spans_s
    for topic, body in got.messages:
        if not topic.startswith(f"{pendant.link.base_topic}/intent/"):
            continue
        t = source.stream_s(body["speech_end_ms"])
        index = min(range(len(spans)), key=lambda i: abs(t - min(max(t, spans[i][0]), spans[i][1])))
        got.intents.setdefault(index, []).append(body)
    return got


def run_files(
    config: Config,
    files: Sequence[Path],
    brokers: tuple[LocalBroker, LocalBroker],
    held: bool = False,
) -> Received:
    """`held`: each file said holding the button (`HeldWavSource`), else in conversation
    mode."""
    bus, home = brokers
    run = _run(config, files, bus, home, held)
    return asyncio.run(asyncio.wait_for(run, RUN_TIMEOUT_S))


def slot_values(intent: dict[str, Any]) -> dict[str, Any]:
    return {s["name"]: s["value"] for s in intent.get("slots", [])}
