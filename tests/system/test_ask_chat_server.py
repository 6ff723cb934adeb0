"""The link asks an OpenAI-compatible chat server over a real socket (`pendant.link.ask_openai`,
`pendant.link.ask_http`): a protocol stand-in (`tests.support.chat_server`), since no model
server runs here. Replies, tool calls, timeouts, refusals and garbage."""

from __future__ import annotations

import asyncio

import pytest

from pendant.app.local_broker import free_port
from pendant.core.config import EscalateConfig
from pendant.core.events import Answer, Ask, Intent
from pendant.link.ask import Asker, target_of
from pendant.link.ask_http import MAX_REPLY_BYTES
from tests.conftest import demo_config
from tests.support.chat_server import ChatServer, Scripted, chat_server


def ask_through(
    scripted: Scripted, token: str | None = None, tmp_path=None
) -> tuple[Answer, Intent | None, ChatServer]:
    async def go() -> tuple[Answer, Intent | None, ChatServer]:
        async with chat_server() as stub:
            stub.answer = scripted
            token_file = None
            if token is not None:
                token_file = tmp_path / "key"
                token_file.write_text(token)
                token_file.chmod(0o600)
            escalate = EscalateConfig(
                enabled=True,
                target="openai",
                url=stub.url,
                model="llama3.2:3b",
                timeout_s=2,
                token_file=str(token_file) if token_file else None,
            )
            config = demo_config(escalate=escalate)
            asker = Asker(config, target_of(config))
            asker.pressed()
            ask = Ask(device_id=config.device_id, text="what can I use instead of eggs")
            assert asker.taken(ask)
            answer, intent = await asker.answer(ask)
            return answer, intent, stub

    return asyncio.run(go())


def completion(content: str | None, calls: list | None = None) -> dict:
    message = {"role": "assistant", "content": content}
    if calls:
        message["tool_calls"] = calls
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
    }


def test_the_question_goes_as_text_with_the_home_as_tools_and_the_answer_comes_back(
    tmp_path,
) -> None:
    answer, intent, stub = ask_through(
        Scripted(body=completion("A mashed banana works.")), "k3y", tmp_path
    )
    assert (answer.outcome, answer.text, intent) == ("answered", "A mashed banana works.", None)
    [(path, headers, body)] = stub.requests
    assert path == "/v1/chat/completions"
    assert headers["authorization"] == "Bearer k3y"
    assert body["model"] == "llama3.2:3b"
    assert body["messages"][-1] == {"role": "user", "content": "what can I use instead of eggs"}
    assert {t["function"]["name"] for t in body["tools"]} == {"HassTurnOn", "HassTurnOff"}
    # Text only: nothing else of the device's goes with it.
    assert set(body) == {"model", "messages", "stream", "max_tokens", "tools"}


def test_a_tool_call_comes_back_as_an_intent() -> None:
    call = {
        "id": "c1",
        "type": "function",
        "function": {"name": "HassTurnOn", "arguments": '{"area": "Kitchen"}'},
    }
    answer, intent, _ = ask_through(Scripted(body=completion(None, [call])))
    assert answer.outcome == "acted"
    assert (intent.name, intent.text) == ("HassTurnOn", "turn on the lights in the kitchen")
    assert [(s.name, s.value) for s in intent.slots] == [("area", "Kitchen"), ("domain", "light")]


@pytest.mark.parametrize(
    ("scripted", "outcome"),
    [
        (Scripted(hang=True), "no_answer"),
        (Scripted(status=500, body={"error": {"message": "model not found"}}), "failed"),
        (Scripted(status=401, body={"error": "invalid api key"}), "failed"),
        (Scripted(raw=b"<html>It works!</html>"), "failed"),
        (Scripted(raw=b"[1, 2, 3]"), "failed"),
        (Scripted(body={"choices": "none"}), "failed"),
        (Scripted(raw=b'{"pad": "' + b"x" * MAX_REPLY_BYTES + b'"}'), "failed"),
    ],
)
def test_a_server_that_hangs_refuses_or_answers_garbage_gives_one_clear_outcome(
    scripted: Scripted, outcome: str, caplog: pytest.LogCaptureFixture
) -> None:
    answer, intent, _ = ask_through(scripted)
    assert (answer.outcome, answer.text, intent) == (outcome, "", None)
    said = [r.getMessage() for r in caplog.records if r.name == "pendant.link.ask"]
    assert len(said) == 1 and "\n" not in said[0], said


def test_a_server_that_is_not_there_is_a_failed_answer(caplog: pytest.LogCaptureFixture) -> None:
    port = free_port()
    escalate = EscalateConfig(
        enabled=True, target="openai", url=f"http://127.0.0.1:{port}/v1", model="m", timeout_s=2
    )
    config = demo_config(escalate=escalate)
    asker = Asker(config, target_of(config))
    answer, _ = asyncio.run(asker.answer(Ask(device_id=config.device_id, text="what time is it")))
    assert answer.outcome == "failed"
    assert any("cannot reach http://127.0.0.1" in r.getMessage() for r in caplog.records)
