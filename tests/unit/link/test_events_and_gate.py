from __future__ import annotations

import json
import re
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pendant.core import bus
from pendant.core.events import (
    PUBLIC_TYPES,
    Button,
    Intent,
    LinkState,
    Mic,
    NotRecognized,
    Say,
    Slot,
    Status,
    parse_event,
)
from pendant.link import hermes
from pendant.link.gate import BUS_NAMES, LINK_OWN, PUBLIC_NAMES, id_key
from tests.conftest import demo_gate
from tests.conftest import demo_intent as intent
from tests.support.fuzz import examples


def test_gate_passes_public_events_and_drops_the_rest() -> None:
    gate = demo_gate()
    assert gate.admit(intent().to_json()) is not None
    assert gate.admit(Status(device_id="pendant-demo", state="ready").to_json()) is not None
    assert gate.admit(NotRecognized(device_id="pendant-demo").to_json()) is not None
    # Internal-only and malformed events never leave.
    assert gate.admit(Button(device_id="pendant-demo", action="press").to_json()) is None
    # The link's own state for the LED is the bus's alone, even on its own topic.
    link_state = LinkState(device_id="pendant-demo", state="no_network").to_json()
    assert gate.admit(link_state, "pendant-bus/link_state") is None
    assert gate.admit(b"\x00\x01 raw audio") is None
    assert gate.admit(b"{" * 10_000) is None
    payload = json.loads(intent().to_json())
    payload["audio"] = "AAAA"
    assert gate.admit(json.dumps(payload).encode()) is None
    assert gate.passed == 3
    assert gate.dropped == {"not_public_type": 2, "not_json": 1, "oversized": 1, "schema": 1}


def test_an_event_naming_another_device_never_leaves() -> None:
    """A device id is 32 characters of the sender's choosing: one not this pendant's would
    carry them out as sent (75 bits an event, from the process that holds the microphone)."""
    gate = demo_gate()
    assert gate.admit(NotRecognized(device_id="pendant-demo").to_json()) is not None
    for other in ("pendant-demo-2", "pendant-kitchen", "p"):
        assert gate.admit(NotRecognized(device_id=other).to_json()) is None
        assert gate.admit(Mic(device_id=other, state="ready").to_json(), "pendant-bus/mic") is None
    assert gate.dropped == {"source": 6}


def test_gate_drops_text_that_smuggles_a_blob() -> None:
    gate = demo_gate()
    blob = "UklGRiQAAABXQVZFZm10IBAAAAABAAEAgD4AAAB9AAACABAAZGF0YQAAAAA="
    assert gate.admit(intent(text=f"turn on {blob}").to_json()) is None
    assert gate.dropped["blob"] == 1


def test_a_say_leaves_only_as_the_links_own_never_off_the_bus() -> None:
    """Issue 15: the link makes `say` events from the `say` commands it accepted. Their text
    came from outside (Home Assistant's answer, any language), so only the 48-character rule
    holds it; and so that no component can say anything through one, the gate takes none off
    the bus, whoever wrote it, and the link does not even read them there."""
    gate = demo_gate("p")
    answer = Say(device_id="p", text="Il fait 21 °C dans la cuisine, Zoë")
    assert gate.admit_own(answer.to_json()) is not None
    assert gate.admit(answer.to_json(), bus.topic("say")) is None
    assert gate.admit(answer.to_json(), bus.topic("intent")) is None
    assert gate.dropped == {"source": 2}
    blob = Say(device_id="p", text="UklGRiQAAABXQVZFZm10IBAAAAABAAEAgD4AAAB9AAACABAAZGF0YQ")
    assert gate.admit_own(blob.to_json()) is None
    assert gate.dropped["blob"] == 1
    assert sorted(LINK_OWN) == ["answer", "say", "status"] and not BUS_NAMES & LINK_OWN
    assert sorted(BUS_NAMES | LINK_OWN) == sorted(PUBLIC_NAMES)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=80),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=5)
    ),
    max_leaves=20,
)


@settings(max_examples=examples(1500), suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(
    st.fixed_dictionaries(
        {
            "type": st.sampled_from(
                ["intent", "status", "transcript", "not_recognized", "button", "x"]
            )
        },
        optional={
            "device_id": json_values,
            "name": json_values,
            "text": json_values,
            "slots": json_values,
            "confidence": json_values,
            "version": json_values,
            "id": json_values,
        },
    )
)
def test_gate_never_crashes_and_only_forwards_valid_events(data: dict[str, object]) -> None:
    gate = demo_gate()
    event = gate.admit(json.dumps(data).encode())
    if event is not None:
        assert type(event) in PUBLIC_TYPES
        assert parse_event(event.to_json()) == event


def test_hermes_intent_shape() -> None:
    event = intent(slots=[Slot(name="minutes", value=5, raw_value="five", entity="minutes")])
    topic, payload = hermes.intent_message(event)
    body = json.loads(payload)
    assert topic == "hermes/intent/HassTurnOn"
    assert body["intent"] == {"intentName": "HassTurnOn", "confidenceScore": 0.9}
    assert body["siteId"] == "pendant-demo"
    assert body["sessionId"] == event.session_id
    assert body["slots"] == [
        {
            "entity": "minutes",
            "slotName": "minutes",
            "rawValue": "five",
            "value": {"kind": "Number", "value": 5},
            "confidence": 1.0,
        }
    ]


def test_the_gate_issues_its_own_ids(tmp_path: Path) -> None:
    """The sender's `id` and `session_id` never leave (they are 16 bytes of its choice): the
    gate issues its own, the same for the same value under the same key, kept 0600."""
    chosen = b"sixteen bytes!!!".hex()
    said = Intent(
        device_id="dev",
        name="HassTurnOn",
        text="turn on the light",
        confidence=0.9,
        id=chosen,
        session_id=chosen,
    )
    path = tmp_path / "id_key"
    key = id_key(path)
    assert path.stat().st_mode & 0o777 == 0o600 and id_key(path) == key
    gate, again = demo_gate("dev", id_key=key), demo_gate("dev", id_key=id_key(path))
    out = gate.admit(said.to_json())
    assert out is not None and out.id != chosen and re.fullmatch(r"[0-9a-f]{32}", out.id)
    assert out.session_id == out.id == gate.outside_id(chosen)
    assert again.admit(said.to_json()) == out  # a restarted link: the outbox's ids hold
    other = demo_gate("dev").admit(said.to_json())  # another key: nothing in common
    assert other is not None and other.id != out.id


def test_the_envelope_and_patterns_are_the_wire_vocabulary() -> None:
    """The pydantic events are built from `pendant.core.wire` (which the web server uses
    without pydantic): the same envelope, and the very patterns, in the published schemas."""
    from pendant.core import events, wire

    assert tuple(events.Event.model_fields) == wire.ENVELOPE
    made = wire.envelope("pairing_taken", "dev", user="phone-anna")
    assert wire.is_envelope(made, "pairing_taken")
    assert events.parse_event(json.dumps(made).encode()).model_dump(mode="json") == made
    assert wire.is_envelope(json.loads(Status(device_id="dev", state="ready").to_json()), "status")
    schema = json.loads((events.SCHEMA_DIR / "pairing_offer.json").read_text())["properties"]
    assert schema["device_id"]["pattern"] == wire.DEVICE_ID_PATTERN
    assert schema["id"]["pattern"] == wire.HEX_ID_PATTERN
    assert schema["user"]["pattern"] == wire.PHONE_USER_PATTERN
    assert schema["fragment"]["pattern"] == wire.FRAGMENT_PATTERN
    assert schema["timestamp_ms"]["maximum"] == wire.EPOCH_MS_MAX
    for bad in ({"id": "A" * 32}, {"version": 2}, {"device_id": "-x"}, {"timestamp_ms": -1},
                {"timestamp_ms": 1.0}, {"type": "pairing_offer"}):  # fmt: skip
        assert not wire.is_envelope({**made, **bad}, "pairing_taken"), bad
    assert not wire.is_envelope([made], "pairing_taken")


def test_a_bus_failure_is_a_bus_error_that_names_the_fix() -> None:
    """Every component turns a failed bus into the same one-line BusError (a PendantError,
    so the CLI prints it without a traceback), saying what to check."""
    import aiomqtt

    from pendant.core.config import BusConfig
    from pendant.core.errors import BusError, PendantError

    on_socket = BusConfig(socket="/run/mosquitto/bus.sock")
    down = bus.error(on_socket, aiomqtt.MqttError("[Errno 2] No such file or directory"))
    assert isinstance(down, BusError) and isinstance(down, PendantError)
    assert str(down) == (
        "bus at /run/mosquitto/bus.sock: [Errno 2] No such file or directory: "
        "is mosquitto running? systemctl status mosquitto"
    )
    refused = bus.error(BusConfig(socket=None), aiomqtt.MqttCodeError(5, "Not authorized"))
    assert str(refused).startswith("bus at 127.0.0.1:1883: ")
    assert str(refused).endswith("check bus.username and bus.password_file")
    assert "\n" not in str(refused)


def test_one_builder_makes_every_mqtt_client() -> None:
    """`mqtt.client`: a unix socket when one is given (never TLS there), else host and port
    with the TLS asked for; the client id always private to the login."""
    import asyncio
    import ssl

    from pendant.core import mqtt

    async def check() -> None:  # aiomqtt takes the running loop
        over_socket = mqtt.client(
            socket="/run/bus.sock", host="ignored", client_id="pendant-web-1", password="pw"
        )
        where = (over_socket._client._transport, over_socket._hostname, over_socket._port)
        assert where == ("unix", "/run/bus.sock", 1883)
        assert over_socket._client._ssl_context is None
        assert over_socket.identifier == mqtt.private_client_id("pendant-web-1", "pw")
        assert over_socket.identifier != "pendant-web-1"
        tls = ssl.create_default_context()
        over_tcp = mqtt.client(host="broker.lan", port=8883, tls_context=tls, client_id="x")
        where = (over_tcp._client._transport, over_tcp._hostname, over_tcp._port)
        assert where == ("tcp", "broker.lan", 8883)
        assert over_tcp._client._ssl_context is tls
        assert over_tcp.identifier == "x"  # no password: nothing to tag it with

    asyncio.run(check())


def test_the_device_status_is_the_links_own_the_mic_reports_its_part() -> None:
    """`Status` means the whole device, outside: only the link makes it (from `Mic`, `Camera`,
    `Battery`); one taken off the bus is refused, whoever wrote it, while the ears' `Mic`
    passes on its own topic."""
    gate = demo_gate("p")
    forged = Status(device_id="p", state="ready", battery_pct=100, camera_muted=False)
    assert gate.admit(forged.to_json(), bus.topic("status")) is None
    assert gate.dropped["source"] == 1
    mic = Mic(device_id="p", state="ready", muted=True)
    assert bus.topic_of(mic) == "pendant-bus/mic" and "mic" in bus.RETAINED
    assert gate.admit(mic.to_json(), bus.topic("mic")) is not None
    assert "status" in LINK_OWN and "mic" in BUS_NAMES and "status" not in BUS_NAMES
