"""The gate and the voices (issue 19): names and progress leave; a voiceprint, a list of
scores or a run of numbers in any text does not, whatever event it hides in."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pendant.core.events import Error, NotRecognized, Voices
from pendant.core.vocabulary import Vocabulary
from pendant.link.gate import Gate
from tests.conftest import demo_config

DEVICE = demo_config().device_id


def gate() -> Gate:
    return Gate(Vocabulary.of(demo_config()), DEVICE, clock=lambda: 0.0)


def voices(**kw: object) -> Voices:
    fields: dict[str, object] = {"names": ["Sam", "Kid 2"], "check": "conversation"}
    return Voices(device_id=DEVICE, in_force=True, **(fields | kw))  # type: ignore[arg-type]


def test_the_voices_event_leaves_with_names_and_progress() -> None:
    g = gate()
    out = g.admit(voices(enrolling="Alex", heard=3).to_json())
    assert isinstance(out, Voices) and out.names == ["Sam", "Kid 2"] and out.heard == 3
    refused = NotRecognized(device_id=DEVICE, reason="not_your_voice")
    assert isinstance(g.admit(refused.to_json()), NotRecognized)


VOICEPRINT = [round(float(x), 6) for x in np.random.default_rng(1).normal(size=256)]


@pytest.mark.parametrize(
    "change",
    [
        lambda d: d | {"embedding": VOICEPRINT},  # not in the schema, and numbers
        lambda d: d | {"names": ["Sam"], "heard": VOICEPRINT},
        lambda d: d | {"names": [" ".join(f"{x:.3f}" for x in VOICEPRINT[:8])]},
    ],
)
def test_a_voiceprint_in_the_voices_event_does_not_leave(change: object) -> None:
    g = gate()
    data = change(json.loads(voices().to_json()))  # type: ignore[operator]
    assert g.admit(json.dumps(data).encode()) is None
    assert sum(g.dropped.values()) == 1


def test_a_list_of_numbers_is_dropped_before_the_schema_says_anything() -> None:
    g = gate()
    data = json.loads(voices().to_json()) | {"heard": VOICEPRINT}
    assert g.admit(json.dumps(data).encode()) is None
    assert dict(g.dropped) == {"numbers": 1}


def test_a_run_of_numbers_is_dropped_from_any_event_from_the_bus() -> None:
    g = gate()
    numbers = ", ".join(f"{x:.4f}" for x in VOICEPRINT[:8])
    # As a not_recognized's text (held talk's words would be the carrier).
    heard = NotRecognized(device_id=DEVICE, text=numbers).to_json()
    assert g.admit(heard) is None  # the blob rules see it first, the numbers rule too
    assert g.dropped["blob"] + g.dropped["numbers"] == 1
    # Seven numbers are no voiceprint: "set a timer for 5 minutes" and its like go on.
    few = NotRecognized(device_id=DEVICE, text="set a timer for 5 minutes").to_json()
    assert isinstance(g.admit(few), NotRecognized)


def test_an_error_from_the_pairing_service_is_held_to_the_list_rule_too() -> None:
    g = gate()
    data = json.loads(Error(device_id=DEVICE, reason="x").to_json())
    data["reason"] = VOICEPRINT[:20]
    assert g.admit(json.dumps(data).encode()) is None
    assert dict(g.dropped) == {"numbers": 1}


def test_a_voiceprint_cut_into_short_lists_is_still_a_list_of_numbers() -> None:
    # Found by review: 32 lists of eight numbers each passed, each list under the limit.
    g = gate()
    data = json.loads(Error(device_id=DEVICE, reason="x").to_json())
    data["reason"] = [VOICEPRINT[i : i + 8] for i in range(0, 256, 8)]
    assert g.admit(json.dumps(data).encode()) is None
    assert dict(g.dropped) == {"numbers": 1}


@pytest.mark.parametrize("depth", [400, 900])
def test_lists_nested_deeper_than_the_checks_recurse_are_dropped_not_raised(depth: int) -> None:
    # Found by review: a closed list some hundreds deep parsed, then the blob and numbers
    # checks raised RecursionError out of the gate.
    g = gate()
    data = json.loads(Error(device_id=DEVICE, reason="x").to_json())
    payload = json.dumps(data).replace('"reason": "x"', '"reason": ' + "[" * depth + "]" * depth)
    assert '"reason": [[' in payload
    assert g.admit(payload.encode()) is None
    assert dict(g.dropped) == {"not_json": 1}
