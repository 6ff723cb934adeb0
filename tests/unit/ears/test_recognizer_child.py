"""The recogniser child's view of the parent's config (pendant.ears.asr.child.Settings)."""

from __future__ import annotations

import pytest

from pendant.core.config import load_config
from pendant.ears.asr.child import Settings
from tests.conftest import DEMO_CONFIG


def test_the_child_reads_what_the_parent_validated() -> None:
    config = load_config(DEMO_CONFIG)
    view = Settings(config.model_dump(mode="json"))
    assert view.asr.backend == config.asr.backend
    assert view.asr.min_confidence == config.asr.min_confidence
    assert view.models.cache_dir == config.models.cache_dir
    assert view.home.devices[0].name == view.home.devices[0]["name"] == config.home.devices[0].name
    # A mapping field is still a mapping, not only attributes.
    assert dict(view.home.area_aliases) == config.home.area_aliases


def test_a_field_the_config_lacks_is_an_attribute_error() -> None:
    view = Settings({"asr": {"backend": "hama"}})
    with pytest.raises(AttributeError, match="nonesuch"):
        _ = view.asr.nonesuch
