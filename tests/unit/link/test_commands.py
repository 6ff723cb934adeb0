"""Both doors of the link, checked and fuzzed: commands coming in from the phone, and the
schema gate that events pass on their way out."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pendant.core import bus
from pendant.core.events import PUBLIC_TYPES, Command, Error, Event, Intent, Slot, parse_event
from pendant.link import commands
from pendant.link.commands import ECHO_CHARS, MAX_COMMAND_BYTES, parse_command
from tests.conftest import REPO, demo_gate
from tests.support.fuzz import examples

DEVICE = "pendant-test"
AREAS = ("Kitchen", "Living Room")
FUZZ = settings(max_examples=examples(2000), suppress_health_check=list(HealthCheck), deadline=None)


def parse(name: str, payload: bytes | str) -> Command | Error:
    raw = payload.encode("utf-8", "surrogatepass") if isinstance(payload, str) else payload
    return parse_command(name, raw, DEVICE, areas=AREAS)


def assert_sound(result: Command | Error, name: str, payload: bytes) -> None:
    """What any input may become: a command that is exactly valid, or an error that may leave."""
    if isinstance(result, Command):
        assert result.name == name
        allowed, required = Command.ARGUMENTS[name]
        data = json.loads(payload) if payload.strip() else {}
        assert set(data) <= allowed and required <= set(data)
        assert all(isinstance(data[k], bool) for k in data.keys() & {"mic", "camera"})
        if name == "area":
            assert result.area is None or result.area in AREAS
        if name == "buzz":
            assert result.pattern is None or result.pattern in commands.BUZZ_PATTERNS
        assert parse_event(result.to_json()) == result
        return
    assert isinstance(result, Error)
    # An error passes the gate (or the phone would never hear of it) ...
    assert demo_gate(DEVICE).admit(result.to_json()) is not None
    # ... and never republishes more than a short excerpt of what was sent.
    text = payload.decode("utf-8", "replace")
    for start in range(0, max(0, len(text) - ECHO_CHARS)):
        chunk = text[start : start + ECHO_CHARS + 1]
        assert chunk not in result.reason


@pytest.mark.parametrize(
    ("name", "payload", "expected"),
    [
        ("mute", b'{"mic": true}', {"mic": True}),
        ("mute", b'{"mic": false, "camera": true}', {"mic": False, "camera": True}),
        ("capture", b"{}", {}),
        ("capture", b"", {}),
        ("identify", b" {} ", {}),
        ("say", '{"text": "bonjour, ça va? 👋"}'.encode(), {"text": "bonjour, ça va? 👋"}),
        ("buzz", b'{"pattern": "understood"}', {"pattern": "understood"}),
        ("buzz", b'{"pattern": "not_understood"}', {"pattern": "not_understood"}),
        ("buzz", b'{"pattern": "attention"}', {"pattern": "attention"}),
        # Home Assistant's MQTT button may send nothing: the body then plays attention.
        ("buzz", b"", {}),
        ("buzz", b"{}", {}),
        ("area", b'{"area": "Kitchen"}', {"area": "Kitchen"}),
        # Any case, passed on as the config spells it.
        ("area", b'{"area": "LIVING room"}', {"area": "Living Room"}),
        ("area", b'{"area": null}', {}),
        # An empty payload is how MQTT deletes a retained message: the area is cleared.
        ("area", b"", {}),
        ("voice", b'{"action": "enrol", "voice": "Sam"}', {"action": "enrol", "voice": "Sam"}),
        ("voice", b'{"action": "done"}', {"action": "done"}),
        ("voice", b'{"action": "cancel"}', {"action": "cancel"}),
        (
            "voice",
            b'{"action": "forget", "voice": "Kid 2"}',
            {"action": "forget", "voice": "Kid 2"},
        ),
        ("voice", b'{"action": "forget_all"}', {"action": "forget_all"}),
    ],
)
def test_valid_commands_become_bus_commands(
    name: str, payload: bytes, expected: dict[str, Any]
) -> None:
    result = parse(name, payload)
    assert isinstance(result, Command), result
    assert result.name == name and result.device_id == DEVICE
    assert (
        result.model_dump(
            include={"mic", "camera", "text", "pattern", "area", "action", "voice"},
            exclude_none=True,
        )
        == expected
    )
    assert bus.topic_of(result) == f"pendant-bus/cmd/{name}"


@pytest.mark.parametrize(
    ("name", "payload", "reason"),
    [
        ("selfdestruct", b"{}", "unknown command 'selfdestruct'"),
        ("mute", b"not json", "not JSON"),
        ("mute", b"[true]", "JSON object"),
        ("mute", b"{}", "needs 'mic'"),
        ("mute", b'{"mic": "yes"}', "'mic' must be true or false"),
        ("mute", b'{"mic": 1}', "'mic' must be true or false"),
        ("mute", b'{"mic": true, "mic": false}', "duplicate key 'mic'"),
        ("mute", b'{"mic": true, "volume": 3}', "mute takes no key 'volume'"),
        ("capture", b'{"flash": true}', "capture takes no key 'flash'"),
        ("say", b"{}", "say needs 'text'"),
        ("say", b'{"text": 5}', "'text' must be a string"),
        ("say", b'{"text": ""}', "1 to 200"),
        ("say", json.dumps({"text": "a" * 201}).encode(), "1 to 200"),
        ("say", b'{"text": "bell\\u0007"}', "control characters"),
        ("say", b'{"text": "\\ud800"}', "control characters"),
        ("say", b'{"text": NaN}', "NaN is not JSON"),
        ("say", b"\xff\xfe", "not JSON"),
        ("say", b"[" * 1000, "not JSON"),
        ("say", b" " * (MAX_COMMAND_BYTES + 1), "over 1024"),
        ("buzz", b'{"pattern": "confirm"}', "'pattern' must be one of: understood, not_under"),
        ("buzz", b'{"pattern": "UNDERSTOOD"}', "'pattern' must be one of"),
        ("buzz", b'{"pattern": 2}', "'pattern' must be one of"),
        ("buzz", b'{"pattern": ["attention"]}', "'pattern' must be one of"),
        ("buzz", b'{"pattern": null}', "'pattern' must be one of"),
        ("buzz", b'{"pattern": "attention", "times": 3}', "buzz takes no key 'times'"),
        ("buzz", b'{"text": "hello"}', "buzz takes no key 'text'"),
        ("buzz", b'{"pattern": "attention", "pattern": "attention"}', "duplicate key 'pattern'"),
        ("buzz", b'{"pattern": "attention"', "not JSON"),
        ("buzz", b'"attention"', "JSON object"),
        ("buzz", b"attention", "not JSON"),
        ("buzz", json.dumps({"pattern": "a" * MAX_COMMAND_BYTES}).encode(), "over 1024"),
        ("area", b'{"area": "Attic"}', "unknown area 'Attic': not in home.areas"),
        ("area", b'{"area": "Kitchen "}', "unknown area 'Kitchen '"),
        ("area", b'{"area": 5}', "'area' must be a string or null"),
        ("area", b'{"area": ["Kitchen"]}', "'area' must be a string or null"),
        ("area", b"{}", "area needs 'area'"),
        ("area", b" ", "area needs 'area'"),
        ("area", b'{"area": "Kitchen", "floor": 1}', "area takes no key 'floor'"),
        ("area", b'{"area": "Kitchen", "area": null}', "duplicate key 'area'"),
        ("area", b"Kitchen", "not JSON"),
        ("area", json.dumps({"area": "x" * MAX_COMMAND_BYTES}).encode(), "over 1024"),
        ("voice", b"{}", "voice needs 'action'"),
        ("voice", b'{"action": "enroll", "voice": "Sam"}', "'action' must be one of: enrol"),
        ("voice", b'{"action": "enrol"}', "'enrol' and 'forget' need 'voice'"),
        ("voice", b'{"action": "forget_all", "voice": "Sam"}', "the other actions take none"),
        ("voice", b'{"action": "enrol", "voice": "1 2 3"}', "'voice' must be a name"),
        ("voice", b'{"action": "enrol", "voice": ["Sam"]}', "'voice' must be a name"),
        ("voice", json.dumps({"action": "enrol", "voice": "S" * 33}).encode(), "must be a name"),
        ("voice", b'{"action": "done", "embedding": [0.1, 0.2]}', "voice takes no key"),
    ],
)
def test_malformed_commands_become_short_errors(name: str, payload: bytes, reason: str) -> None:
    result = parse(name, payload)
    assert isinstance(result, Error), result
    assert reason in result.reason
    assert result.command == (name if name != "selfdestruct" else "selfdestruct")
    assert_sound(result, name, payload)


def test_an_area_needs_the_home_to_have_areas() -> None:
    result = parse_command("area", b'{"area": "Kitchen"}', DEVICE)
    assert isinstance(result, Error)
    assert result.reason == "unknown area 'Kitchen': home.areas is empty"
    # Clearing needs no areas.
    assert isinstance(parse_command("area", b'{"area": null}', DEVICE), Command)


def test_only_states_are_retained_commands() -> None:
    assert sorted(commands.STATES) == ["area"]
    # A clear travels on the bus as a command without an area, and reads back as one.
    clear = parse("area", b'{"area": null}')
    assert isinstance(clear, Command) and parse_event(clear.to_json()) == clear
    with pytest.raises(ValueError, match="mute takes"):
        Command(device_id=DEVICE, name="mute", mic=True, area="Kitchen")


def test_an_error_never_echoes_much_of_the_input() -> None:
    secret = "S3cr3t" * 40
    for name, payload in [
        (secret, b"{}"),
        ("mute", json.dumps({secret: True}).encode()),
        ("mute", json.dumps({"mic": True, "mic\u0000" + secret: 1}).encode()),
    ]:
        result = parse(name, payload)
        assert isinstance(result, Error)
        assert secret[: ECHO_CHARS + 1] not in result.reason
        assert len(result.reason) <= 100
        assert demo_gate(DEVICE).admit(result.to_json()) is not None
    assert parse(secret, b"{}").command is None  # not a plausible name: not repeated


# -- fuzz: commands ---------------------------------------------------------------------

NAMES = st.sampled_from(["mute", "capture", "identify", "say", "buzz", "area"]) | st.text(
    max_size=40
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=250),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=5)
    ),
    max_leaves=20,
)
near_valid = st.fixed_dictionaries(
    {},
    optional={
        "mic": st.booleans() | json_values,
        "camera": st.booleans() | json_values,
        "text": st.text(max_size=210) | json_values,
        "area": st.sampled_from([*AREAS, "kitchen", "attic", None]) | json_values,
        "pattern": st.sampled_from([*commands.BUZZ_PATTERNS, "confirm", ""]) | json_values,
        "extra": json_values,
    },
)


@FUZZ
@given(NAMES, st.binary(max_size=MAX_COMMAND_BYTES + 64))
def test_fuzz_commands_from_raw_bytes(name: str, payload: bytes) -> None:
    assert_sound(parse_command(name, payload, DEVICE, areas=AREAS), name, payload)


@FUZZ
@given(NAMES, json_values)
def test_fuzz_commands_from_random_json(name: str, value: object) -> None:
    payload = json.dumps(value).encode()
    assert_sound(parse_command(name, payload, DEVICE, areas=AREAS), name, payload)


@FUZZ
@given(NAMES, near_valid, st.booleans())
def test_fuzz_commands_near_valid(name: str, data: dict[str, object], ascii_only: bool) -> None:
    payload = json.dumps(data, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")
    assert_sound(parse_command(name, payload, DEVICE, areas=AREAS), name, payload)


# -- fuzz: the gate ---------------------------------------------------------------------


def _intent_json() -> dict[str, Any]:
    slot = Slot(name="area", value="Kitchen", raw_value="kitchen", entity="area")
    event = Intent(
        device_id=DEVICE, name="HassTurnOn", text="turn on", confidence=0.9, slots=[slot]
    )
    return json.loads(event.to_json())


def _but_ids(event: object) -> object:
    ids = {"id", "session_id"}
    return event.model_dump(exclude=ids) if isinstance(event, Event) else event


def assert_gate_sound(payload: bytes) -> None:
    event = demo_gate(DEVICE).admit(payload)
    if event is not None:
        assert type(event) in PUBLIC_TYPES
        again = event.to_json()  # what the link will publish must serialise ...
        # ... and pass the gate again unchanged, but for the ids the link issues
        assert _but_ids(demo_gate(DEVICE).admit(again)) == _but_ids(event)


@FUZZ
@given(st.binary(max_size=9000))
def test_fuzz_gate_with_raw_bytes(payload: bytes) -> None:
    assert_gate_sound(payload)


@FUZZ
@given(st.integers(min_value=1, max_value=8000), st.sampled_from(["[", "{", '{"a":']))
def test_fuzz_gate_with_deep_nesting(depth: int, opener: str) -> None:
    assert_gate_sound((opener * depth).encode())


@FUZZ
@given(
    st.sampled_from(["name", "text", "confidence", "slots", "id", "type", "device_id", "x"]),
    json_values | st.text(alphabet=st.characters(codec="utf-8"), max_size=600),
    st.booleans(),
)
def test_fuzz_gate_with_near_valid_intents(key: str, value: object, drop: bool) -> None:
    data = _intent_json()
    if drop:
        data.pop(key, None)
    else:
        data[key] = value
    assert_gate_sound(json.dumps(data).encode())


@FUZZ
@given(st.text(max_size=120))
def test_fuzz_gate_with_escaped_strings(text: str) -> None:
    # Lone surrogates and control characters arrive as JSON escapes, not raw bytes.
    data = _intent_json()
    data["text"] = text
    raw = json.dumps(data)
    assert_gate_sound(raw.encode())
    assert_gate_sound(raw.replace('"text": "', '"text": "\\ud800', 1).encode())


@pytest.mark.parametrize(
    ("name", "payload", "runs"),
    [
        ("mute", b'{"mic": true}', True),
        ("mute", b'{"mic": true, "camera": true}', True),
        ("mute", b'{"mic": false}', False),
        ("mute", b'{"camera": false}', False),
        ("mute", b'{"mic": true, "camera": false}', False),
        ("identify", b"{}", True),
        ("say", b'{"text": "dinner is ready"}', True),
        ("buzz", b'{"pattern": "attention"}', True),
        ("capture", b"{}", False),
        ("sentences", b'{"sentences": []}', False),
        # A voice is the wearer's to enrol or forget, from a paired phone.
        ("voice", b'{"action": "forget_all"}', False),
        ("voice", b'{"action": "enrol", "voice": "Sam"}', False),
    ],
)
def test_the_home_broker_may_mute_but_never_unmute_or_capture(
    name: str, payload: bytes, runs: bool
) -> None:
    """Issue 14, item 2: whatever the link takes from the home broker, nothing of it opens
    the microphone or the camera."""
    command = parse(name, payload)
    assert isinstance(command, Command)
    refusal = commands.home_refusal(command)
    assert (refusal is None) == runs
    if refusal is not None:
        assert isinstance(parse_event(Error(device_id="p", reason=refusal).to_json()), Error)


def test_commands_on_the_home_broker_are_the_homes() -> None:
    """The link reads commands on the home broker itself now (no bridge, issue 14 item 4):
    with phones on another broker (link.socket beside link.host), whatever comes from the home
    broker is judged as the home's, and an unmute or a capture from there is refused."""
    from pendant.core.config import Config, LinkConfig
    from pendant.link.service import Link

    link_config = LinkConfig(socket="/run/p.sock", host="ha.lan", outbox_path="")
    link = Link(Config(device_id="p", link=link_config))
    home, phones = link.sides
    assert home.commands_from_home and not phones.commands_from_home
    assert home.home and not phones.home and phones.socket and not home.socket
    topic = f"{link.base_topic}/cmd/mute"
    link.on_command(topic, b'{"mic": false}', from_home=True)
    link.on_command(f"{link.base_topic}/cmd/capture", b"{}", from_home=True)
    link.on_command(topic, b'{"mic": true}', from_home=True)
    link.on_command(topic, b'{"mic": false}')  # a phone's
    assert link.commands == {"refused": 2, "forwarded": 2}
    for side in link.sides:
        side.outbox.close()


def _waiting(outbox: Any) -> list[Event]:
    """What an outbox holds, in order (emptied on the way)."""
    out = []
    while (entry := outbox.peek()) is not None:
        out.append(entry.event)
        outbox.done(entry)
    return out


def test_an_accepted_say_goes_to_the_phones_as_the_links_own_event() -> None:
    """Issue 15: phones cannot read commands, so the link passes an accepted `say` on as its
    own `say` event, through the gate, to the broker where the phones are only. A say it
    refused, and every other command, makes none."""
    from pendant.core.config import Config, LinkConfig
    from pendant.core.events import Say
    from pendant.link.service import Link

    link_config = LinkConfig(socket="/run/p.sock", host="ha.lan", outbox_path="")
    link = Link(Config(device_id="p", link=link_config))
    home, phones = link.sides
    try:
        base = link.base_topic
        answer = "It's 21 °C in the kitchen"  # Assist's answer: not ASCII, and free words
        link.on_command(f"{base}/cmd/say", json.dumps({"text": answer}).encode(), from_home=True)
        link.on_command(f"{base}/cmd/say", b'{"text": ""}', from_home=True)
        link.on_command(f"{base}/cmd/buzz", b'{"pattern": "understood"}', from_home=True)
        link.on_command(f"{base}/cmd/say", b'{"text": "from a phone"}')
        assert link.commands == {"forwarded": 3, "rejected": 1}
        to_phones = _waiting(phones.outbox)
        assert [e.type for e in to_phones] == ["say", "error", "say"]
        say, other = (e for e in to_phones if isinstance(e, Say))
        assert (say.text, say.device_id, other.text) == (answer, "p", "from a phone")
        # Whoever sent it needs no echo: only the refusal goes to the home broker.
        assert [e.type for e in _waiting(home.outbox)] == ["error"]
        [(topic, payload, retain)] = link.messages(say)
        assert (topic, retain) == (f"{base}/say", False)
        assert json.loads(payload)["text"] == answer
        # The bus still carries the command, for the body to buzz.
        queued = [link._to_bus.get_nowait() for _ in range(link._to_bus.qsize())]
        assert [c.name for c in queued] == ["say", "buzz", "say"]
    finally:
        for side in link.sides:
            side.outbox.close()


def test_calls_on_the_wearer_are_rate_limited() -> None:
    """A flood of `say`/`buzz` (any client of the home broker may send them) must not buzz
    the wearer or talk for ever: a burst passes, the rest is refused as busy until the bucket
    refills; other commands are not held back by it."""
    from pendant.core.config import Config, LinkConfig
    from pendant.core.events import Error
    from pendant.link.service import CALL_BURST, Link

    link = Link(Config(device_id="p", link=LinkConfig(socket="/run/p.sock", outbox_path="")))
    try:
        base = link.base_topic
        for i in range(CALL_BURST + 2):
            name = "say" if i % 2 else "buzz"
            body = b'{"text": "hello"}' if name == "say" else b"{}"
            link.on_command(f"{base}/cmd/{name}", body, from_home=True)
        link.on_command(f"{base}/cmd/identify", b"{}", from_home=True)
        assert link.commands == {"forwarded": CALL_BURST + 1, "rate_limited": 2}
        queued = [link._to_bus.get_nowait() for _ in range(link._to_bus.qsize())]
        assert [c.name for c in queued][-1] == "identify"
        busy = [e for e in _waiting(link.sides[0].outbox) if isinstance(e, Error)]
        assert [e.reason for e in busy] == ["busy: try again"] * len(busy) and busy
    finally:
        link.sides[0].outbox.close()


def test_with_one_broker_the_say_goes_there() -> None:
    from pendant.core.config import Config, LinkConfig
    from pendant.link.service import Link

    link = Link(Config(device_id="p", link=LinkConfig(socket="/run/p.sock", outbox_path="")))
    try:
        link.on_command(f"{link.base_topic}/cmd/say", b'{"text": "dinner is ready"}')
        [only] = link.sides
        [say] = _waiting(only.outbox)
        assert (say.type, getattr(say, "text", None)) == ("say", "dinner is ready")
    finally:
        link.sides[0].outbox.close()


@pytest.mark.parametrize(
    ("payload", "retain", "cleared"),
    [
        (b'{"area": "kitchen"}', True, False),  # a state, meant to stay retained
        (b'{"area": "nowhere"}', True, True),  # refused: kept, it would be refused forever
        (b"not json", True, True),
        (b"not json", False, False),  # nothing retained to delete
        (b"", True, False),  # someone deleting it
    ],
)
def test_a_retained_area_the_link_refuses_is_deleted_not_replayed(
    payload: bytes, retain: bool, cleared: bool
) -> None:
    """Review finding (item 14): a malformed retained `cmd/area` was refused at every
    reconnect and never deleted from the broker."""
    from pendant.core.config import Config, Home
    from pendant.link.command_errors import judge

    cfg = Config(device_id="pendant-t", home=Home(areas=["Kitchen"]))
    verdict = judge(cfg, "pendant/pendant-t/cmd/area", payload, retain=retain)
    assert verdict.clear is cleared


def test_a_command_published_on_the_bus_lands_where_the_components_read() -> None:
    """One spelling of the command topic (`wire.command_topic`): `bus.publish` of a Command
    goes where the body, ears and eyes subscribe and the broker lets them read, not to
    `pendant-bus/command`, which nobody reads."""
    import asyncio

    from paho.mqtt.client import topic_matches_sub

    from pendant.body import service as body_service
    from pendant.core import wire

    published: list[tuple[str, bool]] = []

    class Recorder:
        async def publish(self, topic: str, payload: bytes, qos: int, retain: bool) -> None:
            assert parse_event(payload).type == "command" and qos == wire.QOS
            published.append((topic, retain))

    body_reads = {"identify", "buzz", "say"}
    examples: dict[str, dict[str, Any]] = {
        "mute": {"mic": True},
        "capture": {},
        "identify": {},
        "say": {"text": "hi"},
        "buzz": {},
        "sentences": {"sentences": []},
        "area": {"area": None},
        "voice": {"action": "enrol", "voice": "Sam"},
    }
    assert set(examples) == set(Command.ARGUMENTS)  # every command there is
    for name, args in examples.items():
        command = Command(device_id=DEVICE, name=name, **args)  # type: ignore[arg-type]
        asyncio.run(bus.publish(Recorder(), command))  # type: ignore[arg-type]
        topic, retain = published[-1]
        assert topic == wire.command_topic(name) == f"pendant-bus/cmd/{name}"
        assert not retain  # only the link keeps the area retained, on purpose
        # The ears and eyes subscribe to every command; the body to those it acts on.
        assert topic_matches_sub(wire.command_topic("#"), topic)
        assert (topic in body_service.SUBSCRIPTIONS) == (name in body_reads)
    # And the broker lets each of them read there.
    acl = (REPO / "services" / "mosquitto" / "acl.in").read_text()
    blocks = {b.split("\n", 1)[0]: b for b in acl.split("\nuser ")[1:]}
    for user in ("ears", "eyes", "body"):
        assert f"topic read {wire.command_topic('#')}\n" in blocks[user]


def test_the_enrolled_voices_go_to_the_phones_only() -> None:
    """The names of a household's voices are for the phones that enrol them: with phones on
    a broker of their own, the `voices` event never reaches the home broker's clients."""
    from pendant.core.config import Config, LinkConfig
    from pendant.core.events import Voices
    from pendant.link.service import Link

    link_config = LinkConfig(socket="/run/p.sock", host="ha.lan", outbox_path="")
    link = Link(Config(device_id="p", link=link_config))
    home, phones = link.sides
    try:
        link._queue_out(Voices(device_id="p", names=["Sam"], check="conversation", in_force=True))
        assert [e.type for e in _waiting(phones.outbox)] == ["voices"]
        assert _waiting(home.outbox) == []
    finally:
        for side in link.sides:
            side.outbox.close()
