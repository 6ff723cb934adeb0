from __future__ import annotations

import logging
from pathlib import Path

import pytest

from pendant.core.config import (
    CARD_DROP_IN,
    DEVICE_DEFAULTS_PATH,
    Config,
    card_base,
    check_card,
    config_reference,
    load_config,
)
from pendant.core.errors import ConfigError
from tests.conftest import DEMO_CONFIG, REPO


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
        ('device_id = "x"\ncolour = 1\n', "colour: unknown key"),
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
        ('[[home.devices]]\nname = "Lamp"\nkind = "toaster"\n', "home.devices[0].kind"),
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
        ("device_id = \n", "pendant.toml:1:13: not valid TOML: Invalid value"),
        (
            '[home]\nareas = ["Кухня"]\n',
            "home.areas[0]: a name is letters (accented Latin ones too), digits",
        ),
        (
            '[home]\nareas = ["Kitchen {area}"]\n',
            "home.areas[0]: a name is letters (accented Latin ones too), digits",
        ),
        (
            '[[home.devices]]\nname = "Lamp"\nkind = "light"\naliases = ["Lamp."]\n',
            "home.devices[0].aliases[0]: a name is letters",
        ),
        (
            '[[home.devices]]\nname = "Lamp"\nkind = "light"\nentity_id = "Light.Lamp"\n',
            "home.devices[0].entity_id: String should match pattern",
        ),
        (
            '[[home.devices]]\nname = "Lamp"\nkind = "light"\nentity_id = "light.lamp"\n'
            '[[home.devices]]\nname = "Desk"\nkind = "light"\nentity_id = "light.lamp"\n',
            "devices[1].entity_id 'light.lamp' is also devices[0]'s",
        ),
        (
            '[home]\nareas = ["Kitchen"]\n[home.area_aliases]\nPantry = ["Larder"]\n',
            "home: area_aliases: 'Pantry' is not in home.areas ['Kitchen']",
        ),
        (
            '[home]\nareas = ["Kitchen", "Hall"]\n[home.area_aliases]\nkitchen = ["hall"]\n',
            "area_aliases.kitchen: 'hall' is another area's name",
        ),
        (
            '[home]\nareas = ["Kitchen"]\n[home.area_aliases]\nKitchen = ["Cook.Room"]\n',
            "home.area_aliases.Kitchen[0]: a name is letters",
        ),
        (
            '[home]\nareas = ["Hall"]\n[[home.floors]]\nname = "Up"\naliases = ["hall"]\n',
            "floors[0].aliases: 'hall' is an area's name",
        ),
    ],
)
def test_bad_config_is_one_line_naming_the_key(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, text))
    message = str(err.value)
    assert expected in message
    assert "\n" not in message


def test_names_take_accents_digits_hyphens_aliases_and_entity_ids(tmp_path: Path) -> None:
    config = load_config(
        write(
            tmp_path,
            '[home]\nareas = ["Café", "Mike’s Room"]\n'
            '[[home.floors]]\nname = "2nd floor"\nareas = ["Café"]\n'
            '[[home.devices]]\nname = "Hi-Fi"\nkind = "media_player"\narea = "Café"\n'
            'aliases = ["Stereo", "Ghettoblaster 3000"]\nentity_id = "media_player.hi_fi"\n',
        )
    )
    assert config.home.areas == ["Café", "Mike’s Room"]
    assert config.home.floors[0].name == "2nd floor"
    [hifi] = config.home.devices
    assert (hifi.name, hifi.aliases) == ("Hi-Fi", ["Stereo", "Ghettoblaster 3000"])
    assert hifi.entity_id == "media_player.hi_fi"


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.toml")


def test_areas_and_floors_take_aliases_keyed_in_any_case(tmp_path: Path) -> None:
    config = load_config(
        write(
            tmp_path,
            '[home]\nareas = ["Kitchen", "Living Room"]\n'
            '[home.area_aliases]\nkitchen = ["Cooking Area"]\n"Living Room" = ["Lounge"]\n'
            '[[home.floors]]\nname = "2nd Floor"\nareas = ["Kitchen"]\naliases = ["Upstairs"]\n',
        )
    )
    assert config.home.aliases_of_area("Kitchen") == ["Cooking Area"]
    assert config.home.aliases_of_area("living room") == ["Lounge"]
    assert config.home.floors[0].aliases == ["Upstairs"]
    # A config without them, as every one before them, is as valid as it was.
    plain = load_config(write(tmp_path, '[home]\nareas = ["Kitchen"]\n'))
    assert plain.home.area_aliases == {} and plain.home.aliases_of_area("Kitchen") == []


def test_every_key_is_documented_in_the_readme() -> None:
    readme = (REPO / "README.md").read_text()
    for line in config_reference(Config):
        key = line.split("`")[1]
        assert f"`{key}`" in readme, f"README does not document {key}"


def test_secret_files_must_be_private(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pendant.core.bus import read_secret

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
    from pendant.core.config import LinkConfig

    with pytest.raises(ValueError, match=r"for link\.host, not link\.socket"):
        LinkConfig(socket="/run/p.sock", tls=True)
    assert LinkConfig(socket="/run/p.sock", host="ha.lan", tls=True).uses_tls
    assert LinkConfig().home_host == "127.0.0.1" and not LinkConfig().phones_apart


# --------------------------------------------------------------------------- the SD card's file


def device_config(tmp_path: Path, card: str | None = None) -> Path:
    """/etc/pendant/pendant.toml as a device has it (the shipped defaults and the provisioned
    id), with `card` as the SD card's pendant.toml where the first boot puts it."""
    config = tmp_path / "etc" / "pendant.toml"
    config.parent.mkdir(parents=True)
    config.write_text('device_id = "pendant-1a2b3c"\n' + DEVICE_DEFAULTS_PATH.read_text())
    if card is not None:
        (tmp_path / "etc" / "pendant.d").mkdir()
        (tmp_path / "etc" / "pendant.d" / CARD_DROP_IN).write_text(card)
    return config


HOME_ONLY = '[home]\nareas = ["Kitchen", "Hall"]\n'


def test_a_home_only_card_keeps_the_devices_settings(tmp_path: Path) -> None:
    """Issue 15 item 5: a card that says only where the wearer lives must not lose what the
    device needs (the mic, the bus and phones' socket, the shipped models, the outbox)."""
    config = load_config(device_config(tmp_path, HOME_ONLY))
    assert config.home.areas == ["Kitchen", "Hall"]
    assert config.device_id == "pendant-1a2b3c"
    assert config.audio.source == "mic"
    assert config.bus.socket == config.link.socket == "/run/mosquitto/pendant.sock"
    assert config.link.outbox_path == "/var/lib/pendant/outbox.sqlite"
    assert config.models.cache_dir == "/usr/share/pendant/models"
    # What the card alone would have given, had it replaced the device's config.
    alone = load_config(write(tmp_path, HOME_ONLY))
    assert (alone.audio.source, alone.link.socket) == ("wav", None)
    assert alone.models.cache_dir == "~/.cache/pendant/models"


def test_the_card_wins_over_the_device_and_the_home_broker(tmp_path: Path) -> None:
    config = device_config(tmp_path, '[audio]\ndevice = "adau7002"\n[link]\nport = 8884\n')
    (tmp_path / "etc" / "pendant.d" / "home-broker.toml").write_text(
        '[link]\nhost = "ha.lan"\nport = 8883\nusername = "p"\n'
    )
    loaded = load_config(config)
    assert (loaded.audio.source, loaded.audio.device) == ("mic", "adau7002")
    assert (loaded.link.host, loaded.link.port, loaded.link.username) == ("ha.lan", 8884, "p")


def test_an_unreadable_drop_in_folder_is_an_error_not_ignored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A folder a service cannot list (made 0700 by root) would drop the card's settings and
    the home broker without a word: the service must stop and say why instead."""
    import os

    import pendant.core.config

    config = device_config(tmp_path, HOME_ONLY)
    extra = tmp_path / "etc" / "pendant.d"
    extra.chmod(0)
    if os.geteuid() == 0:  # root lists any folder: be a service user for os.access
        monkeypatch.setattr(pendant.core.config.os, "access", lambda path, mode: False)
    try:
        with pytest.raises(ConfigError, match=r"cannot read the config's drop-ins: chmod 755"):
            load_config(config)
    finally:
        extra.chmod(0o755)


def test_check_card_finds_nothing_in_a_good_card(tmp_path: Path) -> None:
    card = write(tmp_path, HOME_ONLY + '[link]\nhost = "ha.lan"\n')
    assert check_card(card, DEVICE_DEFAULTS_PATH) == []


@pytest.mark.parametrize(
    ("text", "lines"),
    [
        ('[home]\nareas = ["Kitchen"\n', ["{card}:2:19: not valid TOML: Unclosed array"]),
        ("[home]\nareas = ['Kitchen']\n[home]\n", ["{card}:3:6: not valid TOML: Cannot "
                                                    "declare ('home',) twice"]),
        ('[home]\nareas = "Kitchen"\n', ["home.areas: Input should be a valid list"]),
        (
            '[home]\naras = ["Kitchen"]\n',
            ["home.aras: unknown key, remove it or check its spelling (home takes: areas, "
             "area_aliases, floors, devices, media, list_items, timer_names, sentences, "
             "default_area)"],
        ),
        ('[home_broker]\nhost = "ha.lan"\n', ["home_broker: unknown key, remove it or check "
                                              "its spelling (the top level takes: device_id, "
                                              "language, home, audio, vad, asr, eyes, listen, "
                                              "bus, link, body, pairing, models, escalate, "
                                              "speaker)"]),
        (
            '[[home.devices]]\nname = "Lamp"\nkind = "toaster"\ncolour = true\n'
            "[vad]\nhangover_ms = 50\n",
            [
                "home.devices[0].kind: Input should be 'light', 'fan', 'switch', 'media_player', "
                "'cover', 'lock', 'climate', 'sensor', 'script', 'scene', 'todo', 'weather', "
                "'binary_sensor', 'person', 'valve' or 'vacuum'",
                "home.devices[0].colour: unknown key, remove it or check its spelling "
                "(home.devices[0] takes: name, kind, area, aliases, color, brightness, "
                "device_class, entity_id)",
                "vad.hangover_ms: Input should be greater than or equal to 100",
            ],
        ),
        # Wrong only over the device's config: its link.socket makes link.tls meaningless.
        ("[link]\ntls = true\n", ["link: link.tls and link.cafile are for link.host, not "
                                  "link.socket"]),
    ],
)  # fmt: skip
def test_check_card_says_each_problem_in_one_line(
    tmp_path: Path, text: str, lines: list[str]
) -> None:
    card = write(tmp_path, text)
    assert check_card(card, DEVICE_DEFAULTS_PATH) == [line.format(card=card) for line in lines]


def test_check_card_merges_over_the_devices_drop_ins_but_the_cards_own(tmp_path: Path) -> None:
    """On the device a new card is checked against what it will be merged with: the home
    broker's drop-in counts, the card's previous copy (which it replaces) does not."""
    config = device_config(tmp_path, "[vad]\nhangover_ms = 1\n")  # an old, broken copy
    card = write(tmp_path, HOME_ONLY + "[link]\ntls = false\n")
    assert check_card(card, config) == []
    (tmp_path / "etc" / "pendant.d" / "home-broker.toml").write_text(
        '[link]\nhost = "ha.lan"\nusername = "p"\ncafile = "/etc/pendant/home-ca.crt"\n'
    )
    assert check_card(card, config) == ["link: link.cafile is set but link.tls is false"]


def test_a_card_base_is_the_device_config_where_there_is_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pendant.core.config

    monkeypatch.setattr(pendant.core.config, "DEVICE_CONFIG_PATH", tmp_path / "absent.toml")
    assert card_base(None) == DEVICE_DEFAULTS_PATH
    assert card_base(tmp_path / "x.toml") == tmp_path / "x.toml"
    config = device_config(tmp_path)
    monkeypatch.setattr(pendant.core.config, "DEVICE_CONFIG_PATH", config)
    assert card_base(None) == config


def test_a_byte_order_mark_is_not_a_toml_error(tmp_path: Path) -> None:
    """Some Windows editors begin a file with one; the card is edited on any computer."""
    card = tmp_path / "pendant.toml"
    card.write_bytes(b"\xef\xbb\xbf" + HOME_ONLY.encode())
    assert check_card(card, DEVICE_DEFAULTS_PATH) == []
    assert load_config(card).home.areas == ["Kitchen", "Hall"]


def test_the_readmes_config_check_example_is_what_it_prints(tmp_path: Path) -> None:
    readme = (REPO / "README.md").read_text()
    shown = readme.split("$ pendant config check pendant.toml\n", 1)[1].split("```", 1)[0]
    card = write(tmp_path, '[home]\naras = ["Kitchen"]\n[vad]\nhangover_ms = "long"\n')
    assert check_card(card, DEVICE_DEFAULTS_PATH) == shown.splitlines()


def test_a_retired_key_still_loads_and_says_to_remove_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "pendant.toml"
    path.write_text('device_id = "x"\n[vad]\nsentence_hangover_ms = 300\nhangover_ms = 600\n')
    with caplog.at_level(logging.WARNING):
        config = load_config(path)
    assert config.vad.hangover_ms == 600
    assert "vad.sentence_hangover_ms is no longer used" in caplog.text
    assert "remove it" in caplog.text
