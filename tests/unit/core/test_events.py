"""The events themselves: the committed schemas, a round trip through JSON, one-line errors.
What the link's gate lets out of them is tests/unit/link/test_events_and_gate.py's."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pendant.core.events import (
    PUBLIC_TYPES,
    EventError,
    json_schema,
    parse_event,
    write_schemas,
)
from tests.conftest import REPO
from tests.conftest import demo_intent as intent


def test_committed_schemas_match_the_event_classes(tmp_path: Path) -> None:
    written = {p.name: p.read_text() for p in write_schemas(tmp_path)}
    repo = REPO / "device" / "pendant" / "schemas"
    for name, text in written.items():
        assert (repo / name).read_text() == text, f"run `make schemas`: {name} is stale"


def test_events_round_trip_with_unique_ids() -> None:
    a, b = intent(), intent()
    assert a.id != b.id
    back = parse_event(a.to_json())
    assert back == a
    assert json.loads(a.to_json())["version"] == 1


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"not json", "not JSON"),
        (b"[]", "not an object"),
        (b'{"type": "gossip"}', "unknown event type"),
        (b'{"type": "intent", "device_id": "p"}', "intent event"),
        (b"x" * 9000, "over"),
    ],
)
def test_bad_events_raise_one_line(payload: bytes, message: str) -> None:
    with pytest.raises(EventError, match=message) as err:
        parse_event(payload)
    assert "\n" not in str(err.value)


def test_every_public_type_has_a_schema() -> None:
    for cls in PUBLIC_TYPES:
        assert json_schema(cls)["properties"]["type"]["const"] == cls.model_fields["type"].default
