"""`pendant service body` as systemd runs it: a real process on a real mosquitto, this test
playing systemd's part on a notify socket (see test_service_processes.py, whose helpers it
uses). Mock pins and a simulated battery stand in for the Pi's."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from pendant.app.local_broker import LocalBroker
from tests.system.test_service_processes import (
    EVENT_TIMEOUT_S,
    EXIT_TIMEOUT_S,
    READY_TIMEOUT_S,
    NotifySocket,
    cancel,
    start_service,
    toml_str,
    watch_bus,
)


@pytest.fixture
def broker() -> Iterator[LocalBroker]:
    with LocalBroker(users=("pendant", "intruder")) as b:
        yield b


@pytest.fixture
def notify_sock() -> Iterator[NotifySocket]:
    # Short: unix socket paths are limited to 108 bytes.
    with tempfile.TemporaryDirectory(prefix="pn-") as d:
        ns = NotifySocket(Path(d) / "notify")
        try:
            yield ns
        finally:
            ns.close()


def write_config(path: Path, broker: LocalBroker, body: str) -> Path:
    path.write_text(
        "\n".join(
            [
                'device_id = "pendant-test"',
                "[bus]",
                f"socket = {toml_str(broker.socket_path)}",
                'username = "pendant"',
                f"password_file = {toml_str(broker.password_file('pendant'))}",
                "[body]",
                body,
                "",
            ]
        )
    )
    return path


SIMULATED = 'pin_factory = "mock"\nbattery = "simulated"\nbattery_poll_s = 0.2'


async def lifecycle(
    broker: LocalBroker, notify: NotifySocket, tmp_path: Path
) -> tuple[int, str, list[dict[str, object]]]:
    config = write_config(tmp_path / "pendant.toml", broker, SIMULATED)
    events: list[dict[str, object]] = []
    subscribed = asyncio.Event()
    watcher = asyncio.create_task(watch_bus(broker, events, subscribed))
    await asyncio.wait_for(subscribed.wait(), EVENT_TIMEOUT_S)
    service = await start_service("body", config, notify.path, tmp_path / "body.log")
    try:
        ready = await notify.wait_for("READY", "1", READY_TIMEOUT_S)
        assert "simulated" in ready.fields.get("STATUS", ""), notify.summary()
        for _ in range(3):  # idle, yet its main loop turns: the pings go on
            await notify.wait_for("WATCHDOG", "1", EVENT_TIMEOUT_S)

        async def reported() -> None:
            kinds = {"hardware_mute", "battery"}
            while not kinds <= {str(e.get("type")) for e in events}:
                await asyncio.sleep(0.05)

        await asyncio.wait_for(reported(), EVENT_TIMEOUT_S)
        service.proc.send_signal(signal.SIGTERM)
        await notify.wait_for("STOPPING", "1", EXIT_TIMEOUT_S)
        code = await service.wait()
    finally:
        await service.stop()
        await cancel(watcher)
    return code, service.output(), events


def test_body_service_reports_ready_pings_publishes_and_stops_cleanly(
    broker: LocalBroker, notify_sock: NotifySocket, tmp_path: Path
) -> None:
    code, out, events = asyncio.run(
        asyncio.wait_for(lifecycle(broker, notify_sock, tmp_path), READY_TIMEOUT_S * 2)
    )
    assert code == 0, out
    mute = next(e for e in events if e["type"] == "hardware_mute")
    assert (mute["mic"], mute["camera"]) == (False, False)
    battery = next(e for e in events if e["type"] == "battery")
    assert battery["pct"] == 80 and battery["low"] is False


def run_cli(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pendant", "--config", str(config), "service", "body"],
        capture_output=True,
        text=True,
        timeout=EXIT_TIMEOUT_S,
        check=False,
    )


def one_line_error(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode != 0, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    return lines[0]


def test_bad_body_config_is_a_one_line_error(broker: LocalBroker, tmp_path: Path) -> None:
    config = write_config(tmp_path / "pendant.toml", broker, 'pin_factory = "gpio"')
    assert "body.pin_factory" in one_line_error(run_cli(config))
    config = write_config(
        tmp_path / "pendant.toml", broker, "long_hold_s = 3.0\npairing_hold_s = 2.0"
    )
    assert "pairing_hold_s" in one_line_error(run_cli(config))


def test_lgpio_missing_fails_at_start_with_advice(broker: LocalBroker, tmp_path: Path) -> None:
    try:
        import lgpio  # type: ignore[import-not-found]  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("lgpio is installed here (a Pi?): the failure cannot be shown")
    config = write_config(tmp_path / "pendant.toml", broker, 'pin_factory = "lgpio"')
    line = one_line_error(run_cli(config))
    assert "lgpio" in line and "mock" in line, line


def test_bad_events_on_the_bus_do_not_stop_it(broker: LocalBroker, tmp_path: Path) -> None:
    """A junk payload on a topic the body reads is logged and skipped."""

    async def scenario() -> str:
        from pendant.body.service import BodyService
        from pendant.core import bus
        from pendant.core.config import load_config
        from pendant.core.supervise import Readiness

        config = load_config(write_config(tmp_path / "pendant.toml", broker, SIMULATED))
        service = BodyService(config)
        ready = Readiness()
        task = asyncio.create_task(service.run(ready))
        try:
            await asyncio.wait_for(ready.wait(), EVENT_TIMEOUT_S)
            async with bus.bus_client(config.bus, "test-junk") as client:
                await client.publish(bus.topic("mic"), b"\xff junk", qos=1, timeout=5)
                await client.publish(bus.topic("activity/mic"), b'{"type": "x"}', qos=1, timeout=5)
                await client.publish(
                    bus.topic("activity/mic"),
                    json.dumps(
                        {"type": "activity", "device_id": "pendant-test", "sensor": "mic",
                         "state": "capturing"}
                    ),
                    qos=1,
                    timeout=5,
                )  # fmt: skip

            async def listening() -> None:
                while service.led_pattern != "listening":
                    await asyncio.sleep(0.02)

            await asyncio.wait_for(listening(), EVENT_TIMEOUT_S)
            assert not task.done()
            return service.led_pattern
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    assert asyncio.run(asyncio.wait_for(scenario(), EVENT_TIMEOUT_S * 2)) == "listening"
