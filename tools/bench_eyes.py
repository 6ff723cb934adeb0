"""The eyes service's memory and "read this" latency, as systemd runs it (`make bench`).

`pendant service eyes` on a real bus, asked for captures of a bundled label image:

- eyes_capture_pss_mb_idle: the service's PSS, ready and after a capture once its reader has
  gone (what the eyes hold between requests), alone on the machine (make bench's pss_mb_eyes_*
  are with the other services, tools/bench_services.py);
- eyes_capture_pss_mb_peak: the highest PSS of the service and its reader together during a
  capture, sampled every SAMPLE_S from /proc/<pid>/smaps_rollup; _reader_peak: the reader's
  own (its process tree less the service) at its highest sample;
- eyes_capture_ms_cold / _warm: from the capture command's publish to the scene's arrival
  (median of CAPTURES), with a reader started for each capture (`eyes.linger_s = 0`) and
  with the reader kept from the capture before (the default linger).
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiomqtt

from pendant.app.local_broker import LocalBroker
from pendant.core.config import EyesConfig
from pendant.core.events import Command
from pendant.core.procmem import ProcMemError, memory, tree_memory

REPO = Path(__file__).resolve().parents[1]
DEMO_CONFIG = REPO / "examples" / "pendant.toml"
IMAGE = REPO / "device" / "pendant" / "data" / "eyes" / "oat-milk.png"
CAPTURES = 3
SAMPLE_S = 0.01
SETTLE_S = 1.0
TIMEOUT_S = 120.0


def family_pss_mb(pid: int) -> float:
    """PSS of `pid` and its reader (0 once the service is gone)."""
    try:
        return tree_memory(pid).pss_kb / 1024
    except ProcMemError:
        return 0.0


def reader_pss_mb(pid: int) -> float:
    """PSS of the reader of the service `pid` (0 when none runs, or the service is gone)."""
    try:
        return (tree_memory(pid).pss_kb - memory(pid).pss_kb) / 1024
    except ProcMemError:
        return 0.0


def family_uss_mb(pid: int) -> float:
    """USS of `pid` and its reader (0 once the service is gone)."""
    try:
        return tree_memory(pid).uss_kb / 1024
    except ProcMemError:
        return 0.0


def _config(path: Path, broker: LocalBroker, linger_s: float | None) -> Path:
    models = os.environ.get("PENDANT_MODELS_CACHE")
    lines = [
        "[eyes]",
        f'files = ["{IMAGE}"]',
        # Older trees had no reader to keep: the figures are then the service's own.
        *([f"linger_s = {linger_s}"] if linger_s is not None else []),
        "[eyes.detector]",
        'type = "cpu"',
        "[bus]",
        f'socket = "{broker.socket_path}"',
        'username = "pendant"',
        f'password_file = "{broker.password_file("pendant")}"',
        *([f'[models]\ncache_dir = "{models}"'] if models else []),
    ]
    path.write_text(DEMO_CONFIG.read_text() + "\n" + "\n".join(lines) + "\n")
    return path


async def _session(
    broker: LocalBroker, config: Path, captures: int, prepared: Path
) -> dict[str, list[float]]:
    """One service run: idle PSS, then `captures` captures (latency and peak PSS of each), the
    models read from `prepared` as the device's eyes read them."""
    out: dict[str, list[float]] = {
        "idle": [], "idle_uss": [], "peak": [], "reader_peak": [], "ms": [],
    }  # fmt: skip
    scenes: asyncio.Queue[float] = asyncio.Queue()
    ready = asyncio.Event()
    async with aiomqtt.Client(
        str(broker.socket_path), 1883, transport="unix",
        username="intruder", password=broker.password("intruder"),
    ) as client:  # fmt: skip
        await client.subscribe("pendant-bus/#", qos=1)

        async def watch() -> None:
            async for message in client.messages:
                kind = json.loads(bytes(message.payload)).get("type")  # type: ignore[arg-type]
                if kind == "camera":
                    ready.set()
                elif kind == "scene":
                    scenes.put_nowait(time.perf_counter())

        watcher = asyncio.create_task(watch())
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "pendant", "--config", str(config), "service", "eyes",
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
            env={**os.environ, "CACHE_DIRECTORY": str(prepared)},
        )  # fmt: skip
        try:
            async with asyncio.timeout(TIMEOUT_S):
                await ready.wait()
            await asyncio.sleep(SETTLE_S)
            out["idle"].append(family_pss_mb(proc.pid))
            out["idle_uss"].append(family_uss_mb(proc.pid))
            for _ in range(captures):
                peak = reader_peak = 0.0
                command = Command(device_id="pendant-demo", name="capture")
                t0 = time.perf_counter()
                await client.publish("pendant-bus/cmd/capture", command.to_json(), qos=1)
                while scenes.empty():
                    peak = max(peak, family_pss_mb(proc.pid))
                    reader_peak = max(reader_peak, reader_pss_mb(proc.pid))
                    if proc.returncode is not None:
                        raise RuntimeError("the eyes service stopped during a capture")
                    if time.perf_counter() - t0 > TIMEOUT_S:
                        raise TimeoutError("no scene from the eyes")
                    await asyncio.sleep(SAMPLE_S)
                out["ms"].append((scenes.get_nowait() - t0) * 1000)
                out["peak"].append(peak)
                out["reader_peak"].append(reader_peak)
                await asyncio.sleep(SETTLE_S)
            out["idle"].append(family_pss_mb(proc.pid))
            out["idle_uss"].append(family_uss_mb(proc.pid))
        finally:
            proc.terminate()
            await proc.wait()
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
    return out


async def eyes_capture_figures() -> dict[str, float]:
    """eyes_capture_pss_mb_*, eyes_capture_ms_cold and _warm (see the module)."""
    has_linger = "linger_s" in EyesConfig.model_fields
    with (
        tempfile.TemporaryDirectory(prefix="pendant-bench-") as tmp,
        LocalBroker(users=("pendant", "intruder")) as broker,
    ):
        # A reader started for each capture, and let go at once.
        cold_config = _config(Path(tmp) / "cold.toml", broker, 0 if has_linger else None)
        # As on the device, where pendant-eyes-prepare.service runs before the eyes start.
        prepared = Path(tmp) / "prepared"
        # A preparation that failed would measure the slow loads: said, not hidden.
        done = subprocess.run(
            [sys.executable, "-m", "pendant", "--config", str(cold_config), "prepare"],
            env={**os.environ, "CACHE_DIRECTORY": str(prepared)}, capture_output=True,
            text=True, check=False,
        )  # fmt: skip
        if done.returncode:
            why = (done.stderr.strip().splitlines() or ["no message"])[-1]
            raise SystemExit(f"bench_eyes: `pendant prepare` failed: {why}")
        cold = await _session(broker, cold_config, CAPTURES, prepared)
        # The default linger: the first capture starts the reader that the others find.
        warm_config = _config(Path(tmp) / "warm.toml", broker, None)
        warm = await _session(broker, warm_config, CAPTURES + 1, prepared)
    return {
        # After the cold run's captures: the reader has exited, the service holds no model.
        "eyes_capture_pss_mb_idle": round(cold["idle"][-1], 1),
        "eyes_capture_pss_mb_at_ready": round(cold["idle"][0], 1),
        "eyes_capture_uss_mb_idle": round(cold["idle_uss"][-1], 1),
        # SETTLE_S after the warm run's last capture: the service and its lingering reader.
        "eyes_capture_pss_mb_lingering": round(warm["idle"][-1], 1),
        "eyes_capture_pss_mb_peak": round(max(cold["peak"] + warm["peak"]), 1),
        "eyes_capture_pss_mb_reader_peak": round(max(cold["reader_peak"] + warm["reader_peak"]), 1),
        "eyes_capture_ms_cold": round(statistics.median(cold["ms"]), 1),
        "eyes_capture_ms_warm": round(statistics.median(warm["ms"][1:]), 1),
    }


if __name__ == "__main__":
    print(json.dumps(asyncio.run(eyes_capture_figures()), indent=1))
