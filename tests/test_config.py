from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pendant.config import Config, config_reference, load_config
from pendant.errors import ConfigError

from .conftest import DEMO_CONFIG, REPO


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "pendant.toml"
    path.write_text(text)
    return path


def test_demo_config_loads() -> None:
    config = load_config(DEMO_CONFIG)
    assert config.device_id == "pendant-demo"
    assert "Kitchen" in config.home.areas
    assert any(d.name == "Bed Light" and d.color for d in config.home.devices)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('device_id = "x"\ncolour = 1\n', "unknown key 'colour'"),
        ("[vad]\nhangover_ms = 'long'\n", "vad.hangover_ms"),
        (
            "[vad]\nhangover_ms = 50\n",
            "vad.hangover_ms: Input should be greater than or equal to 100",
        ),
        ("[asr]\nbackend = 'vosk'\n", "asr.backend"),
        ('device_id = "Bad Id"\n', "device_id"),
        (
            '[home]\nareas = ["Kitchen"]\n[[home.devices]]\nname = "Lamp"\nkind = "light"\n'
            'area = "Attic"\n',
            "'Attic' is not in home.areas",
        ),
        ('[[home.devices]]\nname = "Lamp"\nkind = "toaster"\n', "home.devices.0.kind"),
        (
            '[home]\nareas = ["Kitchen"]\n[[home.floors]]\nname = "Upstairs"\nareas = ["Attic"]\n',
            "floors[0].areas: 'Attic' is not in home.areas",
        ),
        (
            '[home]\nareas = ["Kitchen"]\n[[home.floors]]\nname = "Up"\nareas = ["Kitchen"]\n'
            '[[home.floors]]\nname = "Down"\nareas = ["Kitchen"]\n',
            "floors[1].areas: 'Kitchen' is already on 'Up'",
        ),
        (
            '[home]\nareas = ["Kitchen"]\n[[home.floors]]\nname = "Kitchen"\n',
            "floors[0].name 'Kitchen' is also an area",
        ),
        (
            '[[home.devices]]\nname = "Hall"\nkind = "binary_sensor"\ndevice_class = "humidity"\n',
            "device_class 'humidity' is not a binary_sensor class",
        ),
        (
            '[[home.devices]]\nname = "Lamp"\nkind = "light"\ndevice_class = "smoke"\n',
            "device_class is for binary_sensor, cover, sensor only, not light",
        ),
        ("[link]\npassword_file = '/x'\n", "link.password_file is set but link.username is not"),
        ("device_id = \n", "not valid TOML"),
    ],
)
def test_bad_config_is_one_line_naming_the_key(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, text))
    message = str(err.value)
    assert expected in message
    assert "\n" not in message


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.toml")


def test_cli_reports_bad_config_in_one_line_without_traceback(tmp_path: Path) -> None:
    path = write(tmp_path, "[audio]\nsource = 'tape'\n")
    proc = subprocess.run(
        [sys.executable, "-m", "pendant", "--config", str(path), "intents", "hello"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "audio.source" in lines[0]
    assert "Traceback" not in proc.stderr


def test_every_key_is_documented_in_the_readme() -> None:
    readme = (REPO / "README.md").read_text()
    for line in config_reference(Config):
        key = line.split("`")[1]
        assert f"`{key}`" in readme, f"README does not document {key}"


def test_secret_files_must_be_private(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pendant.bus import read_secret

    secret = tmp_path / "elsewhere" / "bus.password"
    secret.parent.mkdir()
    secret.write_text("s3cret\n")
    secret.chmod(0o600)
    assert read_secret(str(secret), "bus.password_file") == "s3cret"
    secret.chmod(0o640)
    with pytest.raises(ConfigError, match="readable by others: chmod 600"):
        read_secret(str(secret), "bus.password_file")

    # systemd 254+ hands a service with User= its credentials as 0440, in a directory only that
    # service can enter (trixie's 257 does): group bits are fine there, world bits never.
    creds = tmp_path / "credentials" / "pendant-ears.service"
    creds.mkdir(parents=True)
    credential = creds / "bus-password"
    credential.write_text("s3cret\n")
    credential.chmod(0o440)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    assert read_secret(str(credential), "bus.password_file") == "s3cret"
    credential.chmod(0o444)
    with pytest.raises(ConfigError, match="readable by others"):
        read_secret(str(credential), "bus.password_file")
    # Another directory's group-readable file is still refused with the variable set.
    with pytest.raises(ConfigError, match="readable by others"):
        read_secret(str(secret), "bus.password_file")


def test_drop_ins_are_merged_over_the_config_table_by_table(tmp_path: Path) -> None:
    """`<config>.d/*.toml`, in name order, over the config: how provisioning adds the home
    broker (pendant.d/home-broker.toml) to a config the first boot may replace."""
    config = tmp_path / "pendant.toml"
    config.write_text('device_id = "p"\n[link]\nsocket = "/run/p.sock"\nhermes = false\n')
    assert load_config(config).link.home_host is None  # the device's broker alone
    extra = tmp_path / "pendant.d"
    extra.mkdir()
    (extra / "home-broker.toml").write_text('[link]\nhost = "ha.lan"\nusername = "p"\n')
    (extra / "zz.toml").write_text("[link]\nintent_expiry_s = 60\n")
    (extra / "notes.txt").write_text("not toml, not read")
    link = load_config(config).link
    assert (link.socket, link.host, link.username, link.hermes) == ("/run/p.sock", "ha.lan", "p",
                                                                    False)  # fmt: skip
    assert link.intent_expiry_s == 60 and link.phones_apart and link.uses_tls
    (extra / "bad.toml").write_text("[link]\nport = 0\n")
    with pytest.raises(
        ConfigError,
        match=r"\(with bad\.toml, home-broker\.toml, zz\.toml in .*pendant\.d\): link\.port",
    ):
        load_config(config)


def test_tls_is_for_the_home_broker_not_the_phones_socket() -> None:
    from pendant.config import LinkConfig

    with pytest.raises(ValueError, match=r"for link\.host, not link\.socket"):
        LinkConfig(socket="/run/p.sock", tls=True)
    assert LinkConfig(socket="/run/p.sock", host="ha.lan", tls=True).uses_tls
    assert LinkConfig().home_host == "127.0.0.1" and not LinkConfig().phones_apart
