"""A bus event counts only on its own topic, and the bus's failures are one line.

The broker's ACL says who may write each topic; a subscriber that took any event from any
topic it reads would let one process speak for another (the link, which may write
`pendant-bus/cmd/#`, saying the mic is muted while the ears listen, or lifting the camera's
privacy switch).
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiomqtt
import pytest

from pendant.core import bus, mqtt
from pendant.core.config import BusConfig
from pendant.core.events import (
    Activity,
    Command,
    Event,
    HardwareMute,
    Mic,
    PairingConfirm,
    PairingWindow,
)

DEV = "pendant-test"


@dataclass
class _Message:
    topic: aiomqtt.Topic
    payload: bytes


class _Client:
    """What `bus.events` reads of a client: its messages, in order."""

    def __init__(self, sent: list[tuple[str, Event]]) -> None:
        self._sent = sent

    @property
    def messages(self) -> AsyncIterator[_Message]:
        async def gen() -> AsyncIterator[_Message]:
            for topic, event in self._sent:
                yield _Message(aiomqtt.Topic(topic), event.to_json())

        return gen()


def _received(sent: list[tuple[str, Event]]) -> list[Event]:
    async def run() -> list[Event]:
        return [e async for e in bus.events(_Client(sent))]  # type: ignore[arg-type]

    return asyncio.run(run())


def test_an_event_counts_only_on_its_own_topic() -> None:
    mic = Mic(device_id=DEV, state="ready", muted=True)
    switch = HardwareMute(device_id=DEV, mic=False, camera=False)
    mute = Command(device_id=DEV, name="mute", mic=True)
    sent = [
        ("pendant-bus/mic", mic),  # the ears, on their own topic
        ("pendant-bus/cmd/buzz", mic),  # the link, speaking for the ears
        ("pendant-bus/activity/camera", mic),  # the eyes, the same
        ("pendant-bus/cmd/x", switch),  # the link, lifting the privacy switch
        ("pendant-bus/hardware_mute", switch),  # the body, its own
        ("pendant-bus/cmd/capture", mute),  # a mute on another command's topic
        ("pendant-bus/cmd/mute", mute),
    ]
    assert _received(sent) == [mic, switch, mute]


def test_a_unix_socket_with_tls_is_refused_not_silently_plain() -> None:
    with pytest.raises(ValueError, match="no TLS"):
        mqtt.client(socket="/run/x.sock", tls_context=ssl.create_default_context())


def test_a_bus_error_without_a_message_still_reads_as_one_line() -> None:
    error = bus.error(BusConfig(socket="/run/x.sock"), aiomqtt.MqttError())
    text = str(error)
    assert ": :" not in text and "MqttError" in text and "\n" not in text


def test_a_pairing_confirm_counts_only_from_the_bodys_topic() -> None:
    """The pairing service holds its events to their topics too: the web server (which may
    write `pairing_request`) cannot confirm a code in the wearer's place."""
    confirm = PairingConfirm(device_id=DEV, presses=2)
    assert bus.on_own_topic(confirm, "pendant-bus/pairing_confirm")
    assert not bus.on_own_topic(confirm, "pendant-bus/pairing_request")
    assert not bus.on_own_topic(
        PairingWindow(device_id=DEV, open=True), "pendant-bus/pairing_taken"
    )


def test_each_sensor_speaks_for_its_own_activity_only() -> None:
    """The ears and the eyes each write their own sensor's activity topic (the ACL): the eyes
    saying the mic is idle, on theirs, is not heard."""
    idle_mic = Activity(device_id=DEV, sensor="mic", state="idle")
    assert bus.topic_of(idle_mic) == "pendant-bus/activity/mic"
    sent = [("pendant-bus/activity/camera", idle_mic), ("pendant-bus/activity/mic", idle_mic)]
    assert _received(sent) == [idle_mic]
