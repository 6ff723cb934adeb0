"""`pendant doctor` on this machine: simulated hardware, the real model cache, real brokers (the
clock and power checks fed fixed readings are tests/unit/app/test_doctor_checks.py's)."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from pendant.app import cli
from pendant.app.doctor import Finding
from pendant.app.doctor.brokers import check_brokers
from pendant.app.local_broker import LocalBroker, free_port, write_secret
from pendant.app.replay import simulated
from pendant.core.config import Config, LinkConfig
from pendant.link.service import Link
from tests.conftest import DEMO_CONFIG, demo_config
from tests.support.tls_support import make_ca, make_server, needs_openssl

WAIT_S = 20.0


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
        + f'\n[bus]\nsocket = "{cfg.bus.socket}"\nusername = "pendant"\n'
        + f'password_file = "{cfg.bus.password_file}"\n'
        + f'\n[link]\nhost = "127.0.0.1"\nport = {cfg.link.port}\nusername = "link"\n'
        + f'password_file = "{cfg.link.password_file}"\n'
    )


def _lines(findings: Iterator[Finding]) -> list[str]:
    return [f.line() for f in findings]


def _secret(path: Path, value: str) -> str:
    write_secret(path, value)
    return str(path)


def _with(config: Config, **link: object) -> Config:
    data = {**config.link.model_dump(), **link}
    return config.model_copy(update={"link": LinkConfig.model_validate(data)})


def _with_bus(config: Config, **bus: object) -> Config:
    return config.model_copy(update={"bus": config.bus.model_copy(update=bus)})


# --- the whole round, through the command line -----------------------------------------------


def test_a_simulated_pendant_with_its_brokers_is_healthy(
    brokers: tuple[LocalBroker, LocalBroker], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, lines = _doctor(_toml_for(brokers), tmp_path, capsys)
    assert code == 0, lines
    parts = {line.split()[1] for line in lines}
    expected = {"install", "mic", "camera", "accelerator", "gpio", "battery", "model", "broker"}
    assert expected | {"clock", "power"} <= parts
    assert all(line.split()[0] in ("OK", "WARN") for line in lines), lines
    assert any(line.startswith("OK") and "lock " in line for line in lines)
    assert any("silero-vad" in line and "sha256" in line for line in lines)
    assert any(line.startswith("OK") and "device bus" in line and "as 'pendant'" in line
               for line in lines)  # fmt: skip
    assert any(line.startswith("OK") and "home broker" in line and "as 'link'" in line
               for line in lines)  # fmt: skip


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
        line.startswith("FAIL") and "pendant models fetch silero-vad" in line
        for line in by_part["model"]
    )
    assert by_part["battery"][0].startswith("FAIL") and "/dev/i2c-29" in by_part["battery"][0]
    assert by_part["accelerator"][0].startswith("WARN") and "hailo" in by_part["accelerator"][0]
    assert all(line.startswith("FAIL") and "->" in line for line in by_part["broker"])
    # The RTC is on the battery board that is not there: said, not failed twice.
    rtc = [line for line in by_part["clock"] if "RTC" in line]
    assert len(rtc) == 1 and rtc[0].startswith("WARN")
    if not list(Path("/dev").glob("gpiochip*")):
        assert by_part["gpio"][0].startswith("FAIL")
    # One line each, never a traceback.
    assert all("Traceback" not in line for line in lines)


# --- the logins ------------------------------------------------------------------------------


def test_a_wrong_password_is_one_line_naming_the_file(
    brokers: tuple[LocalBroker, LocalBroker], tmp_path: Path
) -> None:
    bus_broker, home = brokers
    cfg = simulated(demo_config(), bus_broker, home)
    wrong = _secret(tmp_path / "wrong.password", "not-the-password")
    lines = _lines(check_brokers(_with(cfg, password_file=wrong)))
    home_line = next(line for line in lines if "home broker" in line)
    assert home_line.startswith("FAIL")
    assert f"home broker 127.0.0.1:{home.port}: not authorised as 'link'" in home_line
    assert f"check link.password_file ({wrong})" in home_line
    assert any(line.startswith("OK") and "device bus" in line for line in lines)

    lines = _lines(check_brokers(_with_bus(cfg, password_file=wrong)))
    bus_line = next(line for line in lines if "device bus" in line)
    assert bus_line.startswith("FAIL") and "not authorised as 'pendant'" in bus_line
    assert "check bus.password_file" in bus_line


def test_a_login_without_a_user_name_says_which_keys_to_set(
    brokers: tuple[LocalBroker, LocalBroker],
) -> None:
    bus_broker, home = brokers
    cfg = simulated(demo_config(), bus_broker, home)
    lines = _lines(check_brokers(_with(cfg, username=None, password_file=None)))
    home_line = next(line for line in lines if "home broker" in line)
    assert home_line.startswith("FAIL") and "refused a login without a user name" in home_line
    assert "set link.username and link.password_file" in home_line


def test_brokers_that_are_down_are_one_line_each(tmp_path: Path) -> None:
    bus_password = _secret(tmp_path / "bus.password", "whatever")
    home_password = _secret(tmp_path / "home.password", "whatever")
    cfg = Config(device_id="pendant-test")
    cfg = _with_bus(cfg, socket=str(tmp_path / "gone.sock"), username="pendant",
                    password_file=bus_password)  # fmt: skip
    cfg = _with(cfg, host="127.0.0.1", port=free_port(), username="link",
                password_file=home_password)  # fmt: skip
    lines = _lines(check_brokers(cfg))
    assert len(lines) == 2, lines
    bus_line, home_line = lines
    assert bus_line.startswith("FAIL") and "no such socket" in bus_line
    assert "systemctl status mosquitto" in bus_line
    assert home_line.startswith("FAIL") and "connection refused" in home_line
    assert "link.host / link.port" in home_line


@needs_openssl
def test_a_broker_certificate_the_ca_did_not_sign_names_link_cafile(tmp_path: Path) -> None:
    trusted = make_ca(tmp_path / "home", "home")
    rogue = make_ca(tmp_path / "rogue", "rogue")
    cert, key = make_server(tmp_path / "rogue", rogue)
    with (
        LocalBroker(users=("pendant",)) as bus_broker,
        LocalBroker(users=("link",), tcp=True, tls=(cert, key)) as home,
    ):
        cfg = _with(simulated(Config(device_id="pendant-test"), bus_broker, home),
                    tls=True, cafile=str(trusted.cert))  # fmt: skip
        lines = _lines(check_brokers(cfg))
        home_line = next(line for line in lines if "home broker" in line)
        assert home_line.startswith("FAIL") and "TLS: certificate not trusted" in home_line
        assert "check link.cafile" in home_line
        # The CA that did sign it: the same login passes.
        ok = _lines(check_brokers(_with(cfg, cafile=str(rogue.cert))))
        assert any(line.startswith("OK") and "home broker" in line for line in ok), ok


def test_on_a_provisioned_pendant_it_logs_in_with_the_links_own_passwords(
    tmp_path: Path,
) -> None:
    """The device's config names no bus password: the units hand each service its own. The
    doctor logs in with the link's (`/etc/pendant/secrets`), as MQTT user `link`."""
    with LocalBroker(users=("link",)) as bus_broker:
        secrets = tmp_path / "etc" / "pendant" / "secrets"
        secrets.mkdir(parents=True, mode=0o700)
        shutil.copy(bus_broker.password_file("link"), secrets / "link.password")
        (secrets / "link.password").chmod(0o600)
        cfg = _with_bus(Config(link=LinkConfig(socket=str(bus_broker.socket_path))),
                        socket=str(bus_broker.socket_path))  # fmt: skip
        lines = _lines(check_brokers(cfg, root=tmp_path))
        assert any(line.startswith("OK") and "device bus" in line and "as 'link'" in line
                   for line in lines), lines  # fmt: skip
        # With the socket the only broker the link has, no home broker to ask about.
        assert any(line.startswith("OK") and "no home broker" in line for line in lines)
    # A user who may not read the secrets (root may read anything, so it is pretended).
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("pendant.app.doctor.brokers.os.access", lambda path, mode: False)
        lines = _lines(check_brokers(cfg, root=tmp_path))
    assert len(lines) == 1 and lines[0].startswith("FAIL") and "as root (sudo)" in lines[0]
    assert str(secrets) in lines[0]


# --- the link's own connection to the home broker --------------------------------------------


def test_the_link_is_connected_while_it_runs_and_not_once_it_stopped(
    brokers: tuple[LocalBroker, LocalBroker], tmp_path: Path
) -> None:
    bus_broker, home = brokers
    cfg = simulated(Config(device_id="pendant-test"), bus_broker, home)
    cfg = _with(cfg, outbox_path=str(tmp_path / "outbox.sqlite"))

    def link_lines() -> list[str]:
        return [line for line in _lines(check_brokers(cfg)) if line.split()[1] == "link"]

    async def scenario() -> tuple[list[str], list[str], list[str]]:
        before = await asyncio.to_thread(link_lines)
        link = Link(cfg)
        task = asyncio.create_task(link.run())
        try:
            await asyncio.wait_for(link.connected.wait(), WAIT_S)
            running = await asyncio.to_thread(link_lines)
            # The doctor logged in as the link, under its own client id: the link stayed on.
            assert link.connected.is_set()
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        after = await asyncio.to_thread(link_lines)
        return before, running, after

    before, running, after = asyncio.run(asyncio.wait_for(scenario(), WAIT_S * 2))
    assert len(before) == 1 and before[0].startswith("WARN")
    assert "has not announced itself" in before[0]
    assert len(running) == 1 and running[0].startswith("OK")
    assert "connected to the home broker" in running[0] and "no mosquitto bridge" in running[0]
    assert len(after) == 1 and after[0].startswith("FAIL") and "says offline" in after[0]
    assert "journalctl -u pendant-link" in after[0]
