"""One backend idiom (pendant.core.backends): every registered backend exists, the config offers
exactly the registered names, `auto` asks each backend in order, and one that cannot load says
what to install."""

from __future__ import annotations

import ast
import sys
import types
import typing
from pathlib import Path

import pytest

from pendant.core import backends
from pendant.core.backends import Registry
from pendant.core.config import (
    AsrConfig,
    AudioConfig,
    BodyConfig,
    DetectorConfig,
    EyesConfig,
)
from pendant.core.errors import BackendUnavailable

PACKAGE = Path(backends.__file__).resolve().parents[1]
TABLES = [value for value in vars(backends).values() if isinstance(value, Registry)]


def _defined(target: str) -> bool:
    """Whether `"module:attr"` names a class or function of the package, read without importing
    it (a backend's module may need hardware libraries this machine lacks)."""
    module, _, attr = target.partition(":")
    parts = module.split(".")
    assert parts[0] == "pendant", target
    path = PACKAGE.joinpath(*parts[1:])
    source = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
    tree = ast.parse(source.read_text())
    return any(
        isinstance(node, ast.ClassDef | ast.FunctionDef) and node.name == attr for node in tree.body
    )


@pytest.mark.parametrize("registry", TABLES, ids=lambda r: r.setting)
def test_every_registered_backend_exists(registry: Registry) -> None:
    for name, target in registry.items():
        assert _defined(target), f"{registry.setting} {name!r}: no {target}"
    assert registry.fallback is None or registry.fallback in registry


def test_each_setting_that_chooses_a_backend_has_one_table() -> None:
    assert {t.setting for t in TABLES} == {
        "audio.source", "asr.backend", "eyes.camera", "eyes.detector.type", "body.pin_factory",
        "body.battery",
    }  # fmt: skip


@pytest.mark.parametrize(
    ("model", "field", "registry"),
    [
        (AudioConfig, "source", backends.AUDIO_SOURCES),
        (AsrConfig, "backend", backends.RECOGNIZERS),
        (EyesConfig, "camera", backends.CAMERAS),
        (DetectorConfig, "type", backends.DETECTORS),
        (BodyConfig, "pin_factory", backends.PIN_FACTORIES),
        (BodyConfig, "battery", backends.GAUGES),
    ],
)
def test_the_config_offers_the_registered_names(
    model: type, field: str, registry: Registry
) -> None:
    annotation = model.model_fields[field].annotation  # type: ignore[attr-defined]
    assert typing.get_args(annotation) == registry.choices


def _fake_backends(monkeypatch: pytest.MonkeyPatch, present: dict[str, bool]) -> Registry:
    module = types.ModuleType("fake_backends")
    for name, here in present.items():
        cls = type(name.title(), (), {"present": classmethod(lambda cls, here=here: here)})
        setattr(module, cls.__name__, cls)
    monkeypatch.setitem(sys.modules, "fake_backends", module)
    table = {name: f"fake_backends:{name.title()}" for name in present}
    table["broken"] = "no_such_module_here:Broken"
    return Registry("fake.type", table, install={"broken": "pip install broken"}, fallback="slow")


def test_auto_asks_each_backend_in_order_and_else_takes_the_fallback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    registry = _fake_backends(monkeypatch, {"slow": True, "a": False, "b": True, "c": True})
    assert registry.choices == ("auto", "slow", "a", "b", "c", "broken")
    # The one that will not import is not present; the fallback is never in the list.
    assert registry.present() == ["b", "c"]
    assert registry.choose("auto") == "b"
    assert registry.choose("a") == "a"  # asked for by name: the component decides
    nothing = _fake_backends(monkeypatch, {"slow": True, "a": False})
    assert nothing.choose("auto") == "slow"


def test_a_backend_that_cannot_load_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    registry = _fake_backends(monkeypatch, {"slow": True})
    with pytest.raises(BackendUnavailable, match=r"^fake\.type 'broken' cannot load") as err:
        registry.load("broken")
    assert str(err.value).endswith(": pip install broken") and "\n" not in str(err.value)
    with pytest.raises(BackendUnavailable, match="no backend 'other'"):
        registry.load("other")
    assert registry.load("slow").present()
