"""The link asks a bigger model (issue 18) on real mosquitto: a bus, a home broker, and an
OpenAI-compatible chat stand-in (`tests.support.chat_server`) on a real socket.

What the wearer asked goes out as text only after a press of the button; the answer comes back
as the link's own `answer` on the home broker and on Hermes' `hermes/tts/say`; a tool call
comes out as an intent. Nothing is sent while escalate is off.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiomqtt
import pytest

from pendant.app.local_broker import LocalBroker
from pendant.core import bus
from pendant.core.config import Config, DeviceKind, EscalateConfig, Home, HomeDevice
from pendant.core.events import Ask, Button, Command
from pendant.core.supervise import Readiness
from pendant.link.service import Link
from tests.support.chat_server import ChatServer, Scripted, chat_server
from tests.support.link_support import WAIT_S, link_config
from tests.support.tasks import running, until


@pytest.fixture
def brokers() -> tuple[LocalBroker, LocalBroker]:
    with (
        LocalBroker(users=("pendant",)) as bus_broker,
        LocalBroker(users=("link", "viewer"), tcp=True) as home,
    ):
        yield bus_broker, home  # type: ignore[misc]


def completion(content: str | None, call: dict | None = None) -> dict:
    message: dict = {"role": "assistant", "content": content}
    if call:
        message["tool_calls"] = [call]
    return {"choices": [{"index": 0, "message": message, "finish_reason": "stop"}]}


def escalating(cfg: Config, stub: ChatServer, enabled: bool = True) -> Config:
    escalate = EscalateConfig(
        enabled=enabled, target="openai", url=stub.url, model="llama3.2:3b", timeout_s=5
    )
    kettle = HomeDevice(name="Kettle", kind=DeviceKind.switch, area="Kitchen")
    home = Home(areas=["Kitchen"], devices=[kettle])
    return cfg.model_copy(update={"escalate": escalate, "home": home})


async def _asking(
    brokers: tuple[LocalBroker, LocalBroker], tmp: Path, enabled: bool
) -> tuple[ChatServer, list[tuple[str, dict]]]:
    bus_broker, home = brokers
    seen: list[tuple[str, dict]] = []
    buzzes: list[str] = []
    async with chat_server() as stub:
        cfg = escalating(link_config(bus_broker, home, tmp), stub, enabled)
        assert home.port is not None
        viewer = aiomqtt.Client(
            "127.0.0.1",
            home.port,
            username="viewer",
            password=home.password("viewer"),
            identifier="test-viewer",
        )

        async def watch() -> None:
            async with viewer:
                await viewer.subscribe(f"pendant/{cfg.device_id}/#", qos=1)
                await viewer.subscribe("hermes/#", qos=1)
                async for message in viewer.messages:
                    payload = bytes(message.payload)  # type: ignore[arg-type]
                    if payload.startswith(b"{"):
                        seen.append((str(message.topic), json.loads(payload)))

        async def body() -> None:
            async with bus.bus_client(cfg.bus, "test-body") as client:
                await client.subscribe(bus.command_topic("buzz"), qos=1)
                async for event in bus.events(client):
                    assert isinstance(event, Command)
                    buzzes.append(f"{event.pattern} {event.session_id}")

        link = Link(cfg)
        readiness = Readiness()
        async with running(watch(), body()), running(link.run(readiness)):
            await until(readiness.is_set, "the link subscribed on the bus")
            async with bus.bus_client(cfg.bus, "test-ears") as ears:
                # Without a press: the ears alone cannot open the door.
                await bus.publish(
                    ears, Ask(device_id=cfg.device_id, text="what is a good substitute for eggs")
                )
                await asyncio.sleep(1.0)
                assert stub.requests == []
                await bus.publish(ears, Button(device_id=cfg.device_id, action="press"))
                await asyncio.sleep(0.3)
                stub.answer = Scripted(body=completion("A mashed banana works."))
                question = Ask(device_id=cfg.device_id, text="what is a good substitute for eggs")
                await bus.publish(ears, question)
                if enabled:
                    await until(lambda: any(t.endswith("/answer") for t, _ in seen), "the answer")
                    # The wearer feels it: the body is asked to buzz "understood", for this
                    # question (its "asking" light ends, not a later question's).
                    heard = f"understood {question.session_id}"
                    await until(lambda: buzzes[:1] == [heard], "the buzz")
                    call = {
                        "id": "1",
                        "type": "function",
                        "function": {"name": "HassTurnOn", "arguments": '{"name": "Kettle"}'},
                    }
                    stub.answer = Scripted(body=completion("", call))
                    await bus.publish(ears, Ask(device_id=cfg.device_id, text="put the kettle on"))
                    await until(
                        lambda: any("/intent/" in t for t, _ in seen), "the tool call's intent"
                    )
                else:
                    await asyncio.sleep(1.5)
        return stub, seen


def test_the_wearers_question_goes_out_as_text_and_the_answer_comes_back(
    brokers: tuple[LocalBroker, LocalBroker], tmp_path: Path
) -> None:
    stub, seen = asyncio.run(asyncio.wait_for(_asking(brokers, tmp_path, True), WAIT_S * 2))
    # Only the question after the press, and the follow-up: never the one before it.
    asked = [body["messages"][-1]["content"] for _, _, body in stub.requests]
    assert asked == ["what is a good substitute for eggs", "put the kettle on"]
    answers = [body for topic, body in seen if topic == "pendant/pendant-test/answer"]
    assert [(a["question"], a["text"], a["outcome"], a["target"]) for a in answers] == [
        ("what is a good substitute for eggs", "A mashed banana works.", "answered", "openai"),
        ("put the kettle on", "", "acted", "openai"),
    ]
    said = [body for topic, body in seen if topic == "hermes/tts/say"]
    assert [s["text"] for s in said] == ["A mashed banana works."]
    assert said[0]["siteId"] == "pendant-test"
    [intent] = [body for topic, body in seen if topic == "pendant/pendant-test/intent/HassTurnOn"]
    assert intent["text"] == "turn on kettle"
    assert intent["session_id"] == answers[1]["session_id"]


def test_nothing_is_asked_while_escalate_is_off(
    brokers: tuple[LocalBroker, LocalBroker], tmp_path: Path
) -> None:
    stub, seen = asyncio.run(asyncio.wait_for(_asking(brokers, tmp_path, False), WAIT_S * 2))
    assert stub.requests == []
    assert not [t for t, _ in seen if t.endswith("/answer") or t == "hermes/tts/say"]
