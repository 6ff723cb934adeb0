"""Run WAV files through the whole pendant, as `pendant listen` does, and collect what a
subscriber on the home broker receives, attributed to the file each intent was spoken in."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt

from pendant.config import Config
from pendant.ears.audio.wav import WavSource
from pendant.listen import simulated
from pendant.local_broker import LocalBroker
from pendant.runner import Pendant

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


async def _run(
    config: Config, files: Sequence[Path], bus: LocalBroker, home: LocalBroker
) -> Received:
    cfg = simulated(config, bus, home, realtime=False)
    # Files played faster than real time speak faster than anyone can: the gate's rate per
    # type is not what these runs measure (tests/test_gate_content.py does).
    cfg = cfg.model_copy(update={"link": cfg.link.model_copy(update={"gate_burst": 10_000})})
    source = WavSource(cfg.audio, files)
    pendant = Pendant(cfg, source=source, parts=("ears", "link"))
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
        t = (body["speech_end_ms"] - source.started_ms) / 1000
        index = min(range(len(spans)), key=lambda i: abs(t - min(max(t, spans[i][0]), spans[i][1])))
        got.intents.setdefault(index, []).append(body)
    return got


def run_files(
    config: Config, files: Sequence[Path], brokers: tuple[LocalBroker, LocalBroker]
) -> Received:
    bus, home = brokers
    return asyncio.run(asyncio.wait_for(_run(config, files, bus, home), RUN_TIMEOUT_S))


def slot_values(intent: dict[str, Any]) -> dict[str, Any]:
    return {s["name"]: s["value"] for s in intent.get("slots", [])}
