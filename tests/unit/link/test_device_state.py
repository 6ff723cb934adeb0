"""The one retained status: the link merges what the ears, eyes and body each report."""

from __future__ import annotations

import json

from pendant.core.events import Battery, Camera, Intent, Mic, Status
from pendant.link.status import DeviceState

DEV = "pendant-test"


def test_each_part_comes_from_the_component_that_knows_it() -> None:
    state = DeviceState(DEV)
    ears = Mic(device_id=DEV, state="ready", muted=True, asr_backend="pocketsphinx")
    [first] = state.fold(ears)
    # Nothing to add yet: the ears' part as the device's status, in the public format of old,
    # with the link's own id (made of the parts' ids) and time.
    assert isinstance(first, Status)
    assert first.id != ears.id
    assert json.loads(first.to_json()) == {
        "type": "status", "version": 1, "id": first.id, "device_id": DEV,
        "timestamp_ms": first.timestamp_ms, "state": "ready", "mic_muted": True,
        "camera_muted": False, "asr_backend": "pocketsphinx",
    }  # fmt: skip
    assert state.fold(ears) == []  # delivered again: no second status

    battery = Battery(device_id=DEV, pct=14, charging=False, low=True)
    out = state.fold(battery)
    assert out[0] == battery  # also published on its own topic
    merged = out[1]
    assert isinstance(merged, Status)
    assert (merged.state, merged.mic_muted, merged.battery_pct) == ("ready", True, 14)
    assert merged.id != ears.id  # a new status, not a duplicate a consumer would drop

    [merged] = state.fold(Camera(device_id=DEV, muted=True, hardware_muted=True))
    assert isinstance(merged, Status)
    assert (merged.camera_muted, merged.mic_muted, merged.battery_pct) == (True, True, 14)

    # The ears restart and report again: the battery and camera parts stay.
    [merged] = state.fold(Mic(device_id=DEV, state="ready", muted=False))
    assert isinstance(merged, Status)
    assert (merged.mic_muted, merged.camera_muted, merged.battery_pct) == (False, True, 14)


def test_no_status_before_the_mic_is_known() -> None:
    """A status that guessed the mic would tell Home Assistant a muted mic listens: the battery
    goes out on its own, the camera waits, and both join the first status the ears allow."""
    state = DeviceState(DEV)
    battery = Battery(device_id=DEV, pct=80)
    assert state.fold(battery) == [battery]
    assert state.fold(Camera(device_id=DEV, muted=True)) == []
    [status] = state.fold(Mic(device_id=DEV, state="ready", muted=True))
    assert isinstance(status, Status)
    assert (status.mic_muted, status.battery_pct, status.camera_muted) == (True, 80, True)


def test_the_status_is_the_links_own_but_for_the_parts_values() -> None:
    """What a sender chose beyond its part's values (its time, another device's id) never
    reaches the status the link publishes."""
    state = DeviceState(DEV)
    [status] = state.fold(Mic(device_id="other", state="ready", timestamp_ms=123456789))
    assert isinstance(status, Status)
    assert status.device_id == DEV and status.timestamp_ms != 123456789


def test_other_events_pass_unchanged() -> None:
    state = DeviceState(DEV)
    intent = Intent(device_id=DEV, name="HassNevermind", text="never mind", confidence=0.9)
    assert state.fold(intent) == [intent]
