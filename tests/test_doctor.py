"""`pendant doctor` on this machine: simulated hardware, the real model cache, real brokers."""

from __future__ import annotations

from pathlib import Path

import pytest

from pendant import cli
from pendant.listen import simulated
from pendant.local_broker import LocalBroker

from .conftest import DEMO_CONFIG, demo_config


def _doctor(
    config_text: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> tuple[int, list[str]]:
    path = tmp_path / "pendant.toml"
    path.write_text(config_text)
    code = cli.main(["--config", str(path), "doctor"])
    return code, capsys.readouterr().out.splitlines()


def _toml_for(brokers: tuple[LocalBroker, LocalBroker]) -> str:
    bus_broker, home = brokers
    cfg = simulated(demo_config(), bus_broker, home)
    return (
        DEMO_CONFIG.read_text()
        + f'\n[bus]\nsocket = "{cfg.bus.socket}"\n'
        + f'\n[link]\nhost = "127.0.0.1"\nport = {cfg.link.port}\n'
    )


def test_a_simulated_pendant_with_its_brokers_is_healthy(
    brokers: tuple[LocalBroker, LocalBroker], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, lines = _doctor(_toml_for(brokers), tmp_path, capsys)
    assert code == 0, lines
    parts = {line.split()[1] for line in lines}
    expected = {"install", "mic", "camera", "accelerator", "gpio", "battery", "model", "broker"}
    assert expected <= parts
    assert any(line.startswith("ok") and "lock " in line for line in lines)
    assert any("silero-vad" in line and "sha256" in line for line in lines)
    assert any(line.startswith("ok") and "bus:" in line for line in lines)


def test_each_missing_piece_gets_its_one_line_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = DEMO_CONFIG.read_text().replace('pin_factory = "mock"', 'pin_factory = "lgpio"')
    text = text.replace('battery = "simulated"', 'battery = "pisugar3"\ni2c_bus = 29')
    text += f'\n[models]\ncache_dir = "{tmp_path / "empty"}"\n'
    text += '\n[eyes.detector]\ntype = "hailo"\n'
    text += '\n[bus]\nsocket = "/nonexistent/pendant.sock"\n'
    text += '\n[link]\nhost = "127.0.0.1"\nport = 9\n'
    code, lines = _doctor(text, tmp_path, capsys)
    assert code == 1
    by_part: dict[str, list[str]] = {}
    for line in lines:
        by_part.setdefault(line.split()[1], []).append(line)
    assert any(
        line.startswith("missing") and "pendant models fetch silero-vad" in line
        for line in by_part["model"]
    )
    assert by_part["battery"][0].startswith("missing") and "/dev/i2c-29" in by_part["battery"][0]
    assert by_part["accelerator"][0].startswith("warn") and "hailo" in by_part["accelerator"][0]
    assert all(line.startswith("missing") and "->" in line for line in by_part["broker"])
    if not list(Path("/dev").glob("gpiochip*")):
        assert by_part["gpio"][0].startswith("missing")
    # One line each, never a traceback.
    assert all("Traceback" not in line for line in lines)
