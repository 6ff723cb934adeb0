"""Shared fixtures: real mosquitto brokers, the demo home, the shared speech recordings."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from pendant.app.local_broker import LocalBroker
from pendant.core.config import Config, load_config
from pendant.core.events import Intent, Slot
from pendant.core.vocabulary import Vocabulary
from pendant.ears.understand.grammar import Grammar, build_grammar
from pendant.link.gate import Gate
from tests.support.powercut import VolatileMount, unavailable

REPO = Path(__file__).resolve().parents[1]
SPEECH = REPO.parent / "shared" / "testdata" / "speech-en"
DEMO_CONFIG = REPO / "examples" / "pendant.toml"
SPEECH_CACHE = REPO / ".cache" / "speech-sets"


def tool(name: str) -> ModuleType:
    """A module of tools/ (not an installed package), imported with tools/ on the path as
    when it runs as a script, so it finds its sibling modules."""
    sys.path.insert(0, str(REPO / "tools"))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.pop(0)


def speech_sets() -> ModuleType:
    """tools/speech_sets.py, the espeak-ng speech generator."""
    return tool("speech_sets")


def demo_config(**updates: object) -> Config:
    config = load_config(DEMO_CONFIG)
    cache = os.environ.get("PENDANT_MODELS_CACHE")
    if cache:
        config = config.model_copy(
            update={"models": config.models.model_copy(update={"cache_dir": cache})}
        )
    return config.model_copy(update=updates) if updates else config


def demo_gate(device_id: str | None = None, **kw: object) -> Gate:
    """A schema gate that knows the demo home's words, as the link builds it, for the demo's
    device or `device_id`."""
    config = demo_config()
    return Gate(Vocabulary.of(config), device_id or config.device_id, **kw)  # type: ignore[arg-type]


def demo_intent(**kw: object) -> Intent:
    """A closed-set intent of the demo home ("turn on the kitchen lights"), `kw` changed."""
    base: dict[str, object] = {
        "device_id": "pendant-demo",
        "name": "HassTurnOn",
        "text": "turn on the kitchen lights",
        "confidence": 0.9,
        "slots": [Slot(name="area", value="Kitchen", raw_value="kitchen", entity="area")],
    }
    return Intent(**(base | kw))  # type: ignore[arg-type]


def hearing_config(**updates: object) -> Config:
    """The demo home with no action waiting for a tap (`listen.confirm_kinds = []`): what the
    ears hear, for the tests that score hearing."""
    config = demo_config(**updates)
    listen = config.listen.model_copy(update={"confirm_kinds": []})
    return config.model_copy(update={"listen": listen})


def speech_files(subset: str) -> list[Path]:
    folder = SPEECH / subset
    if not folder.is_dir():
        pytest.skip(f"{folder} is absent: the shared speech recordings are not on this machine")
    return sorted(folder.glob("*.wav"))


@pytest.fixture(scope="session")
def config() -> Config:
    """The demo home (examples/pendant.toml), the home of the shared recordings."""
    return demo_config()


@pytest.fixture(scope="session")
def grammar(config: Config) -> Grammar:
    return build_grammar(config)


@pytest.fixture
def brokers() -> Iterator[tuple[LocalBroker, LocalBroker]]:
    """A device-local bus (unix socket) and a home broker (TCP), both real mosquitto."""
    with (
        LocalBroker(users=("pendant", "intruder")) as bus,
        LocalBroker(users=("link", "viewer"), tcp=True) as home,
    ):
        yield bus, home


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[VolatileMount]:
    """A disk whose page cache a power cut loses (`tests.support.powercut`), mounted over
    `tmp_path/mnt`; skipped, with the reason, where FUSE cannot be mounted."""
    reason = unavailable()
    if reason:
        pytest.skip(reason)
    (tmp_path / "mnt").mkdir()
    with VolatileMount(tmp_path / "mnt", tmp_path / "disk") as mount:
        yield mount


@pytest.fixture
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh $STATE_DIRECTORY, as systemd gives a service (`StateDirectory=`)."""
    state = tmp_path / "state"
    state.mkdir()
    monkeypatch.setenv("STATE_DIRECTORY", str(state))
    return state
