"""A stand-in for an OpenAI-compatible chat server (Ollama, llama.cpp's server, vLLM): the
protocol only, since no model server can run here. It listens on a real TCP port, records each
request, and answers with what the test scripted: a reply, a status, raw bytes, or silence."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
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


@contextmanager
def chat_server_thread(body: dict[str, Any]) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """The same stand-in for tests that run no loop of their own: a thread that answers every
    POST with `body`; its base URL and the JSON of the requests it took."""
    requests: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            requests.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # the test says what matters

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, name="chat-stub", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1", requests
    finally:
        server.shutdown()
        server.server_close()
