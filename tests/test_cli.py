"""The `pendant` command as a person runs it: a real process, real brokers, real models."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pendant import __version__

from .conftest import DEMO_CONFIG, speech_files


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

    from .conftest import REPO

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
    from pendant.build_info import collect

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
