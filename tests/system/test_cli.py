"""The `pendant` command as a person runs it: a real process, real brokers, real models."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pendant import __version__
from tests.conftest import DEMO_CONFIG, REPO, speech_files


def pendant(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pendant", *args],
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, **(env or {})},
    )


def test_version() -> None:
    done = pendant("--version")
    assert done.returncode == 0
    assert done.stdout.strip() == f"pendant {__version__}"


def test_version_verbose_names_the_lock_and_what_decides_behaviour() -> None:
    import hashlib
    import importlib.metadata

    done = pendant("--version", "--verbose")
    assert done.returncode == 0, done.stderr
    facts = {line.split()[0]: line.split()[1:] for line in done.stdout.splitlines()}
    assert facts["pendant"] == [__version__]
    assert facts["lock"][:2] == ["sha256", hashlib.sha256((REPO / "uv.lock").read_bytes())
                                 .hexdigest()]  # fmt: skip
    for name in ("pocketsphinx", "onnxruntime", "hassil", "home-assistant-intents"):
        assert facts[name] == [importlib.metadata.version(name)]
    manifest = REPO / "device/pendant/data/models.toml"
    assert facts["model"] == ["manifest", "sha256", hashlib.sha256(manifest.read_bytes())
                              .hexdigest()]  # fmt: skip


def test_installed_build_info_wins_over_the_checkout(tmp_path: Path) -> None:
    """On the device the .deb's build-info.json names the lock its wheels came from."""
    from pendant.app.build_info import collect

    info = tmp_path / "build-info.json"
    info.write_text(json.dumps({"lock_sha256": "ab" * 32}))
    assert collect(installed=info).lock_sha256 == "ab" * 32
    assert collect(installed=tmp_path / "absent.json", checkout_lock=tmp_path / "no.lock") \
        .lock_sha256 is None  # fmt: skip


def test_listen_prints_one_json_line_per_intent() -> None:
    said = ("what's the date", "oov_4", "cancel all timers")
    files = [f for f in speech_files("main") if f.stem in said]
    done = pendant("--config", str(DEMO_CONFIG), "listen", *map(str, files))
    assert done.returncode == 0, done.stderr
    intents = [json.loads(line) for line in done.stdout.splitlines()]
    assert [i["name"] for i in intents] == ["HassCancelAllTimers", "HassGetCurrentDate"]
    assert all(i["device_id"] == "pendant-demo" and len(i["id"]) == 32 for i in intents)


def test_listen_refuses_an_unusable_file_in_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "notes.wav"
    bad.write_text("this is not audio")
    done = pendant("--config", str(DEMO_CONFIG), "listen", str(bad))
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"pendant: error: {bad}: not a readable audio file (Error opening '{bad}': "
        "Format not recognised.)"
    ]


def test_missing_model_names_the_command_to_run(tmp_path: Path) -> None:
    config = tmp_path / "pendant.toml"
    config.write_text(f'[models]\ncache_dir = "{tmp_path / "empty"}"\n')
    done = pendant("--config", str(config), "listen", str(speech_files("main")[0]))
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr
    assert "silero-vad" in lines[0] and "fetch" in lines[0]


def test_intents_lists_this_home_and_tries_sentences() -> None:
    listing = pendant("--config", str(DEMO_CONFIG), "intents")
    assert listing.returncode == 0, listing.stderr
    assert "FindMyPhone:" in listing.stdout  # the custom intent of the demo home
    assert "HassStartTimer:" in listing.stdout
    tried = subprocess.run(
        [sys.executable, "-m", "pendant", "--config", str(DEMO_CONFIG), "intents", "-"],
        input="turn on the kitchen lights\nsing me a song\nbroadcast that dinner is ready\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    lines = [json.loads(line) for line in tried.stdout.splitlines()]
    assert lines[0]["intent"] == "HassTurnOn" and lines[0]["slots"] == {"name": "Kitchen Lights"}
    assert lines[0]["heard"] is True
    assert lines[1]["intent"] is None and lines[1]["heard"] is False
    # Understood as text (Home Assistant's sentences), but not in the closed set: the ears
    # can never output it, and the line says so.
    assert lines[2]["intent"] == "HassBroadcast" and lines[2]["heard"] is False


@pytest.mark.parametrize("args", [["run"], ["listen", "x.wav"]])
def test_config_errors_stop_every_command(tmp_path: Path, args: list[str]) -> None:
    config = tmp_path / "pendant.toml"
    config.write_text("[vad]\nhangover_ms = -1\n")
    done = pendant("--config", str(config), *args)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"pendant: error: {config}: vad.hangover_ms: Input should be greater than or equal to 100"
    ]


# --------------------------------------------------------------------------- config check

SHIPPED = REPO / "device/pendant/data/device-pendant.toml"


def check(tmp_path: Path, text: str, *options: str) -> tuple[Path, subprocess.CompletedProcess]:
    card = tmp_path / "pendant.toml"
    card.write_text(text)
    return card, pendant(*options, "config", "check", str(card))


def test_config_check_says_ok_in_one_line(tmp_path: Path) -> None:
    card, done = check(tmp_path, '[home]\nareas = ["Kitchen"]\n', "--config", str(SHIPPED))
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [f"{card}: OK, merged over {SHIPPED}"]
    assert done.stderr == ""


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ('[home]\nareas = ["Kitchen"\n', ["{card}:2:19: not valid TOML: Unclosed array"]),
        ("[vad]\nhangover_ms = 'long'\n", [
            "vad.hangover_ms: Input should be a valid integer, unable to parse string as an "
            "integer"
        ]),
        ('[home]\nareas = ["Kitchen"]\n\n[[home.devices]]\nname = "Lamp"\nkind = "light"\n'
         "colour = true\n", [
            "home.devices[0].colour: unknown key, remove it or check its spelling "
            "(home.devices[0] takes: name, kind, area, aliases, color, brightness, device_class, "
            "entity_id)"
        ]),
        ("[audio]\nsource = 'tape'\ngap_ms = -1\n", [
            "audio.source: Input should be 'mic' or 'wav'",
            "audio.gap_ms: Input should be greater than or equal to 0",
        ]),
    ],
)  # fmt: skip
def test_config_check_names_each_problem_in_a_line_of_its_own(
    tmp_path: Path, text: str, want: list[str]
) -> None:
    card, done = check(tmp_path, text)  # no --config: whichever device config applies here
    assert done.returncode == 1
    assert done.stdout.splitlines() == [line.format(card=card) for line in want]
    assert "Traceback" not in done.stderr


def test_config_check_takes_the_config_after_the_command(tmp_path: Path) -> None:
    """What the card is merged over decides: over a config without link.socket, link.tls
    is fine; over the device's (which has one) it is not."""
    bare = tmp_path / "bare.toml"
    bare.write_text("")
    card = tmp_path / "pendant.toml"
    card.write_text("[link]\ntls = true\n")
    done = pendant("config", "check", str(card), "--config", str(bare))
    assert done.returncode == 0, done.stdout + done.stderr
    done = pendant("config", "check", str(card), "--config", str(SHIPPED))
    assert done.returncode == 1
    assert done.stdout.splitlines() == [
        "link: link.tls and link.cafile are for link.host, not link.socket"
    ]


def test_config_check_of_a_missing_file_is_one_line(tmp_path: Path) -> None:
    done = pendant("config", "check", str(tmp_path / "nope.toml"))
    assert done.returncode == 1
    assert done.stdout.splitlines() == [f"{tmp_path / 'nope.toml'}: config file not found"]
    assert "Traceback" not in done.stderr
