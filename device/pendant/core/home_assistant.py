"""Home Assistant's WebSocket API: one connection, logged in with a long-lived access token.

Two parts of the pendant talk to Home Assistant this way: `pendant home import`, which reads
its registries once, and the link, which asks its conversation agent what the closed set
cannot hear (`pendant.link.ask_home_assistant`). Both get every failure as one
`HomeAssistantError` line that says what to fix; the token is never printed or logged.

    >>> async with connected("http://homeassistant.local:8123", token) as session:  # doctest: +SKIP
    ...     await session.call("get_config")
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from pendant.core.errors import PendantError

TOKEN_HINT = (
    "make a long-lived access token on your Home Assistant profile page (Security tab) and "
    "put it in the token file"
)


class HomeAssistantError(PendantError, ConnectionError):
    """Home Assistant cannot be reached, refused the token, or lacks what is asked."""


class Refused(HomeAssistantError):
    """Home Assistant answered a command with an error: which command, its code, its words."""

    def __init__(self, command: str, code: str, why: str) -> None:
        super().__init__(f"Home Assistant refused {command}: {code} {why}".rstrip())
        self.command, self.code, self.why = command, code, why


def websocket_url(url: str, key: str = "--url") -> str:
    """ws(s)://host:port/path/api/websocket for Home Assistant's http(s) address; `key` names
    the setting an error is about."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise HomeAssistantError(
            f"{key} must be Home Assistant's http:// or https:// address, e.g. "
            f"http://homeassistant.local:8123, not {url[:80]!r}"
        )
    scheme = "wss" if parts.scheme == "https" else "ws"
    return urlunsplit((scheme, parts.netloc, parts.path.rstrip("/") + "/api/websocket", "", ""))


def without_login(url: str) -> str:
    """`url` as errors may show it: a user:password@ in it left out."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


class Session:
    """Commands over one connection, each answered by the result with its id."""

    def __init__(self, ws: Any, token_hint: str = TOKEN_HINT) -> None:
        self._ws = ws
        self._next_id = 1
        self._token_hint = token_hint
        self.version = ""
        """Home Assistant's, as it said at login."""

    async def _receive(self) -> dict[str, Any]:
        try:
            message = json.loads(await self._ws.recv())
        except (ValueError, RecursionError):
            raise HomeAssistantError("Home Assistant answered with something not JSON") from None
        if not isinstance(message, dict):
            raise HomeAssistantError("Home Assistant answered with something not an object")
        return message

    async def login(self, token: str) -> None:
        """Home Assistant's handshake: it asks for the token, and takes it or not."""
        hello = await self._receive()
        if hello.get("type") != "auth_required":
            raise HomeAssistantError("the server there does not speak Home Assistant's API")
        await self._ws.send(json.dumps({"type": "auth", "access_token": token}))
        answer = await self._receive()
        if answer.get("type") == "auth_invalid":
            raise HomeAssistantError(f"Home Assistant refused the access token: {self._token_hint}")
        if answer.get("type") != "auth_ok":
            kind = str(answer.get("type"))[:40]
            raise HomeAssistantError(f"Home Assistant answered the login with {kind!r}")
        self.version = str(answer.get("ha_version") or hello.get("ha_version") or "")[:40]

    async def call(self, command: str, **data: Any) -> Any:
        """Sends `command` with `data`; its result, or `Refused` (its code for the caller to
        explain) when Home Assistant said no."""
        msg_id, self._next_id = self._next_id, self._next_id + 1
        await self._ws.send(json.dumps({"id": msg_id, "type": command, **data}))
        while True:
            reply = await self._receive()
            if reply.get("id") == msg_id and reply.get("type") == "result":
                break
        if reply.get("success"):
            return reply.get("result")
        error = reply.get("error") if isinstance(reply.get("error"), dict) else {}
        code, why = str(error.get("code", ""))[:40], str(error.get("message", ""))[:200]
        raise Refused(command, code, why)

    async def stream(self, command: str, last: str, **data: Any) -> dict[str, Any]:
        """Sends `command`, which answers with events after its result (`assist_pipeline/run`):
        the data of its event of type `last`. `Refused` when Home Assistant said no to the
        command, or an `error` event came first."""
        msg_id = self._next_id
        await self.call(command, **data)
        while True:
            message = await self._receive()
            if message.get("id") != msg_id or message.get("type") != "event":
                continue
            event = message.get("event") if isinstance(message.get("event"), dict) else {}
            kind = event.get("type")
            body = event.get("data") if isinstance(event.get("data"), dict) else {}
            if kind == "error":
                code = str(body.get("code", ""))[:40]
                raise Refused(command, code, str(body.get("message", ""))[:200])
            if kind == last:
                return body


@asynccontextmanager
async def connected(
    url: str,
    token: str,
    *,
    cafile: Path | None = None,
    timeout_s: float = 30.0,
    max_bytes: int = 1024 * 1024,
    key: str = "--url",
    token_hint: str = TOKEN_HINT,
    agent: str = "pendant",
) -> AsyncIterator[Session]:
    """A logged-in `Session` to Home Assistant at `url` (its http(s) address). Connecting and
    logging in must finish within `timeout_s`; the caller bounds its own calls. Every failure
    is a HomeAssistantError of one line."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import (
        InvalidHandshake,
        InvalidStatus,
        InvalidURI,
        WebSocketException,
    )

    ws_url = websocket_url(url, key)
    tls: ssl.SSLContext | None = None
    if ws_url.startswith("wss:"):
        tls = ssl.create_default_context(cafile=str(cafile) if cafile else None)
    # Its own logger, held at INFO: websockets logs every frame at DEBUG, the token's too,
    # and `pendant -v` turns DEBUG on.
    quiet = logging.getLogger(f"{__name__}.websocket")
    quiet.setLevel(logging.INFO)
    where = f"Home Assistant at {without_login(url)}"
    try:
        async with asyncio.timeout(timeout_s) as opening:
            ws = await connect(
                ws_url,
                ssl=tls,
                proxy=None,  # the home's Home Assistant is reached directly, token and all
                max_size=max_bytes,
                logger=quiet,
                user_agent_header=agent,
                close_timeout=1,  # a goodbye must not outlast the caller's bound
            )
            try:
                session = Session(ws, token_hint)
                await session.login(token)
            except BaseException:
                await ws.close()
                raise
            opening.reschedule(None)
        try:
            yield session
        finally:
            await ws.close()
    except HomeAssistantError:
        raise
    except TimeoutError:
        raise HomeAssistantError(f"{where} did not answer within {timeout_s:.0f} s") from None
    except InvalidStatus as exc:
        status = exc.response.status_code
        if status in (401, 403):
            raise HomeAssistantError(f"{where} refused the connection ({status})") from None
        raise HomeAssistantError(
            f"{where} has no WebSocket API at {without_login(ws_url)} (HTTP {status}): "
            "is it Home Assistant?"
        ) from None
    except (InvalidURI, InvalidHandshake) as exc:
        raise HomeAssistantError(
            f"{where}: no WebSocket API ({exc}): is it Home Assistant?"
        ) from None
    except WebSocketException as exc:
        raise HomeAssistantError(f"{where} closed the connection ({exc})") from None
    except ssl.SSLError as exc:
        hint = " (the CA file must name the CA that signed it)" if "CERTIFICATE" in str(exc) else ""
        raise HomeAssistantError(f"{where}: TLS failed: {exc.reason or exc}{hint}") from None
    except OSError as exc:
        raise HomeAssistantError(f"cannot reach {where}: {exc.strerror or exc}") from None
    except (KeyError, TypeError, AttributeError) as exc:
        raise HomeAssistantError(f"{where} answered in a form not understood ({exc!r})") from None
