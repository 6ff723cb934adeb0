"""A stand-in for an OpenAI-compatible chat server (Ollama, llama.cpp's server, vLLM): the
protocol only, since no model server can run here. It listens on a real TCP port, records each
request, and answers with what the test scripted: a reply, a status, raw bytes, or silence."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import h11


@dataclass
class Scripted:
    status: int = 200
    body: dict[str, Any] | None = None
    raw: bytes | None = None
    """Sent as the body as it is (not JSON), with `status`."""
    hang: bool = False
    """Read the request, answer nothing."""


@dataclass
class ChatServer:
    port: int = 0
    answer: Scripted = field(default_factory=Scripted)
    requests: list[tuple[str, dict[str, str], dict[str, Any]]] = field(default_factory=list)
    """(path, headers, JSON body) of every request."""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = h11.Connection(h11.SERVER)
        body = bytearray()
        request: h11.Request | None = None
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await reader.read(65536))
                continue
            if isinstance(event, h11.Request):
                request = event
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                break
        assert request is not None
        headers = {k.decode().lower(): v.decode() for k, v in request.headers}
        self.requests.append((request.target.decode(), headers, json.loads(body)))
        if self.answer.hang:
            await asyncio.sleep(3600)
        data = (
            self.answer.raw
            if self.answer.raw is not None
            else json.dumps(self.answer.body or {}).encode()
        )
        writer.write(
            conn.send(
                h11.Response(
                    status_code=self.answer.status,
                    headers=[
                        ("Content-Type", "application/json"),
                        ("Content-Length", str(len(data))),
                    ],
                )
            )
        )
        writer.write(conn.send(h11.Data(data=data)))
        writer.write(conn.send(h11.EndOfMessage()))
        await writer.drain()
        writer.close()


@asynccontextmanager
async def chat_server() -> AsyncIterator[ChatServer]:
    """A `ChatServer` listening on a free port of 127.0.0.1 until the block ends."""
    stub = ChatServer()
    server = await asyncio.start_server(stub._serve, "127.0.0.1", 0)
    stub.port = server.sockets[0].getsockname()[1]
    try:
        yield stub
    finally:
        server.close()
