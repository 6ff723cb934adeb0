"""`pendant home import`: the home's names from Home Assistant (pendant.app.home_import).

Against a real Home Assistant (2026.2, `tests/support/ha_support.py`, its own: the one of
`tests/system/test_home_assistant.py` is shared by that module's tests): areas, a floor, the Bed
Light in an area with aliases, made through its WebSocket API as its frontend makes them; a
long-lived token; the command's TOML is read back as the pendant's config. The error paths
Home Assistant cannot be made to take (a release without the expose API, a user who is no
administrator) against a small server speaking its protocol; what the registries become, on
their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import http.server
import json
import os
import subprocess
import sys
import threading
import tomllib
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from pendant.app.home_import import Registries, home_from, to_toml
from pendant.app.local_broker import free_port
from pendant.core.config import parse_config
from pendant.core.events import Intent
from pendant.core.home_assistant import websocket_url
from pendant.ears.understand.nlu import IntentParser
from pendant.link.discovery import event_message
from tests.support.ha_support import HomeAssistant, reason_unavailable

TOKEN = "eyJhbGciOiJIUzI1NiJ9.not-a-real-token.signature-never-printed"


def pendant(*args: str, verbose: bool = False) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pendant", *(["-v"] if verbose else []), "home", "import", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def token_file(tmp_path: Path, token: str = TOKEN, mode: int = 0o600) -> Path:
    path = tmp_path / "ha.token"
    path.write_text(token + "\n")
    path.chmod(mode)
    return path


def one_line_error(proc: subprocess.CompletedProcess[str], token: str = TOKEN) -> str:
    """The command failed with one line on stderr, no traceback, and never said the token."""
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pendant: error: "), proc.stderr
    assert token not in proc.stdout + proc.stderr
    return lines[0]


# -- the registries, as the pendant's [home] ------------------------------------------------


def registries() -> Registries:
    """A home of the shapes Home Assistant's registries have (trimmed to what is read)."""
    return Registries(
        version="2026.2.0",
        areas=[
            {
                "area_id": "cafe",
                "name": "Café",
                "floor_id": "ground",
                "aliases": ["Coffee Corner", "café", "Bedroom", "Nook!", None],
            },
            {"area_id": "bedroom", "name": "Bedroom", "floor_id": "upstairs"},
            {"area_id": "study", "name": "Study: Old", "floor_id": "upstairs"},
            {"area_id": "garage", "name": "Garage", "floor_id": None},
        ],
        floors=[
            {
                "floor_id": "upstairs",
                "name": "2nd Floor",
                "level": 2,
                "aliases": ["Upstairs", "Garage"],
            },
            {"floor_id": "ground", "name": "Ground Floor", "level": 0},
            {"floor_id": "garage_floor", "name": "Garage", "level": None},
        ],
        devices=[{"id": "dev1", "area_id": "bedroom", "name": "Sonos"}],
        exposed=[
            "automation.morning",
            "binary_sensor.door",
            "input_boolean.guest_mode",
            "input_boolean.party",
            "light.cafe",
            "light.broken",
            "media_player.hi_fi",
            "sensor.odd_class",
            "switch.mr_coffee",
        ],
        entries={
            "light.cafe": {"area_id": "cafe", "aliases": ["Counter Lights", "Lampe (alt)", None]},
            "media_player.hi_fi": {"device_id": "dev1", "aliases": []},
            "binary_sensor.door": {"original_device_class": "door"},
            "sensor.odd_class": {"device_class": "not_a_class"},
            "switch.mr_coffee": {},
            "light.broken": {},
        },
        states={
            "light.cafe": {
                "entity_id": "light.cafe",
                "attributes": {"friendly_name": "Café Lights", "supported_color_modes": ["xy"]},
            },
            "media_player.hi_fi": {
                "entity_id": "media_player.hi_fi",
                "attributes": {"friendly_name": "Hi-Fi"},
            },
            "binary_sensor.door": {"entity_id": "binary_sensor.door", "attributes": {}},
            "sensor.odd_class": {
                "entity_id": "sensor.odd_class",
                "attributes": {"friendly_name": "Odd", "device_class": "not_a_class"},
            },
            "switch.mr_coffee": {
                "entity_id": "switch.mr_coffee",
                "attributes": {"friendly_name": "Mr. Coffee"},
            },
        },
    )


def test_the_registries_become_the_pendants_home() -> None:
    imported = home_from(registries())
    home = imported.home
    assert home["areas"] == ["Bedroom", "Café", "Garage"]
    # Its own name and another area's left out (the ears would hear two areas as one).
    assert home["area_aliases"] == {"Café": ["Coffee Corner"]}
    # By level; a floor with an area's name is left out, as the config would refuse it.
    assert home["floors"] == [
        {"name": "Ground Floor", "areas": ["Café"]},
        {"name": "2nd Floor", "areas": ["Bedroom"], "aliases": ["Upstairs"]},
    ]
    assert home["devices"] == [
        {"name": "Café Lights", "kind": "light", "area": "Café", "aliases": ["Counter Lights"],
         "color": True, "brightness": True, "entity_id": "light.cafe"},
        {"name": "door", "kind": "binary_sensor", "device_class": "door",
         "entity_id": "binary_sensor.door"},
        # The area of its device, which the entity does not override.
        {"name": "Hi-Fi", "kind": "media_player", "area": "Bedroom",
         "entity_id": "media_player.hi_fi"},
        {"name": "Odd", "kind": "sensor", "entity_id": "sensor.odd_class"},
    ]  # fmt: skip
    assert imported.notes == [
        "Left out: alias 'Bedroom' of area 'Café', which is an area's name.",
        "Left out: alias 'Garage' of floor '2nd Floor', which is an area's name.",
        "Left out: floor 'Garage', which has an area's name.",
        "Left out: 3 exposed entities of kinds the pendant has no sentences for "
        "(automation 1, input_boolean 2).",
        "Left out: 1 exposed entities with no state (disabled or not loaded): light.broken.",
        "Left out: names the pendant cannot take: area 'Study: Old'; alias 'Nook!' of area "
        "'Café'; alias 'Lampe (alt)' of 'Café Lights'; switch 'Mr. Coffee' (switch.mr_coffee).",
    ]


def test_the_toml_reads_back_as_the_config_with_the_notes_as_comments() -> None:
    imported = home_from(registries())
    text = to_toml(imported)
    config = parse_config(tomllib.loads(text))
    assert config.home.model_dump(exclude_defaults=True) == parse_config(
        {"home": imported.home}
    ).home.model_dump(exclude_defaults=True)
    assert config.home.devices[0].entity_id == "light.cafe"
    assert config.home.area_aliases == {"Café": ["Coffee Corner"]}
    assert config.home.floors[1].aliases == ["Upstairs"]
    comments = [line for line in text.splitlines() if line.startswith("#")]
    assert any("Home Assistant 2026.2.0" in line for line in comments)
    assert any("'Mr. Coffee' (switch.mr_coffee)" in line for line in comments)


def test_a_name_with_control_characters_stays_inside_its_comment() -> None:
    reg = registries()
    reg.areas.append({"area_id": "x", "name": "Evil\n[home]\nareas = []", "floor_id": None})
    text = to_toml(home_from(reg))
    assert tomllib.loads(text)["home"]["areas"] == ["Bedroom", "Café", "Garage"]
    assert "'Evil?[home]?areas = []'" in text


def test_home_assistants_other_words_stay_inside_their_comments() -> None:
    """Not only names: an exposed entity's domain and the version Home Assistant reports go
    into comments too, and neither may start a table of its own (a [link] to another broker)."""
    reg = registries()
    reg.exposed.append('x\n[link]\nhost = "evil"\n#.y')
    reg.version = '1\n[link]\nhost = "evil"\n#'
    text = to_toml(home_from(reg))
    assert "link" not in tomllib.loads(text)
    assert tomllib.loads(text)["home"]["areas"] == ["Bedroom", "Café", "Garage"]


@pytest.mark.parametrize(
    ("url", "ws"),
    [
        ("http://homeassistant.local:8123", "ws://homeassistant.local:8123/api/websocket"),
        ("https://ha.example.org/", "wss://ha.example.org/api/websocket"),
        ("https://example.org/ha", "wss://example.org/ha/api/websocket"),
    ],
)
def test_the_websocket_is_at_the_api_path(url: str, ws: str) -> None:
    assert websocket_url(url) == ws


# -- refusals, each one line ---------------------------------------------------------------


def test_a_token_file_others_can_read_is_refused(tmp_path: Path) -> None:
    line = one_line_error(pendant("--url", "http://127.0.0.1:9", "--token-file",
                                  str(token_file(tmp_path, mode=0o644))))  # fmt: skip
    assert "readable by others: chmod 600" in line


@pytest.mark.parametrize("url", ["ftp://ha.local", "homeassistant.local:8123", "http://"])
def test_a_url_that_is_not_http_is_refused(tmp_path: Path, url: str) -> None:
    line = one_line_error(pendant("--url", url, "--token-file", str(token_file(tmp_path))))
    assert "--url must be Home Assistant's http:// or https:// address" in line


def test_an_unreachable_home_assistant_is_one_line(tmp_path: Path) -> None:
    port = free_port()  # a port nobody listens on
    url = f"http://127.0.0.1:{port}"
    line = one_line_error(pendant("--url", url, "--token-file", str(token_file(tmp_path))))
    assert f"cannot reach Home Assistant at {url}" in line


def test_a_web_server_that_is_not_home_assistant_is_one_line(tmp_path: Path) -> None:
    class Quiet(http.server.SimpleHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # what a WebSocket client reads an answer in

        def log_message(self, *args: object) -> None:
            pass

    # Serves an empty folder: 404 for /api/websocket.
    handler = functools.partial(Quiet, directory=str(tmp_path / "empty"))
    (tmp_path / "empty").mkdir()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        line = one_line_error(pendant("--url", url, "--token-file", str(token_file(tmp_path))))
    finally:
        server.shutdown()
        server.server_close()
    assert "/api/websocket (HTTP 404): is it Home Assistant?" in line


Handler = Callable[[dict[str, Any]], dict[str, Any]]


@asynccontextmanager
async def fake_home_assistant(answer: Handler, admit: bool = True) -> AsyncIterator[str]:
    """A server that speaks Home Assistant's WebSocket protocol: `answer` makes the reply to
    each command; `admit`: whether it takes the token."""

    async def session(ws: ServerConnection) -> None:
        await ws.send(json.dumps({"type": "auth_required", "ha_version": "2023.4.0"}))
        json.loads(await ws.recv())
        if not admit:
            await ws.send(json.dumps({"type": "auth_invalid", "message": "Invalid access"}))
            return
        await ws.send(json.dumps({"type": "auth_ok", "ha_version": "2023.4.0"}))
        with contextlib.suppress(ConnectionClosed):  # the command ends it, at its first error
            async for raw in ws:
                msg = json.loads(raw)
                await ws.send(json.dumps({"id": msg["id"], "type": "result", **answer(msg)}))

    async with serve(session, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}"


def lists(msg: dict[str, Any]) -> dict[str, Any]:
    """An empty home: no areas, floors, devices, nothing exposed."""
    if msg["type"] == "homeassistant/expose_entity/list":
        return {"success": True, "result": {"exposed_entities": {}}}
    return {"success": True, "result": []}


def without_expose_api(msg: dict[str, Any]) -> dict[str, Any]:
    if msg["type"] == "homeassistant/expose_entity/list":
        error = {"code": "unknown_command", "message": "Unknown command."}
        return {"success": False, "error": error}
    return lists(msg)


def not_an_admin(msg: dict[str, Any]) -> dict[str, Any]:
    if msg["type"] == "homeassistant/expose_entity/list":
        return {"success": False, "error": {"code": "unauthorized", "message": "Unauthorized"}}
    return lists(msg)


async def import_from(answer: Handler, tmp_path: Path, admit: bool = True) -> str:
    async with fake_home_assistant(answer, admit) as url:
        args = ("--url", url, "--token-file", str(token_file(tmp_path)))
        proc = await asyncio.to_thread(pendant, *args)
    return one_line_error(proc)


def test_a_refused_token_is_one_line(tmp_path: Path) -> None:
    line = asyncio.run(import_from(lists, tmp_path, admit=False))
    assert "Home Assistant refused the access token" in line


def test_a_home_assistant_without_the_expose_api_is_one_line(tmp_path: Path) -> None:
    line = asyncio.run(import_from(without_expose_api, tmp_path))
    assert "has no homeassistant/expose_entity/list command" in line
    assert "2023.5 or later" in line


def test_a_token_of_no_administrator_is_one_line(tmp_path: Path) -> None:
    line = asyncio.run(import_from(not_an_admin, tmp_path))
    assert "the token must be an administrator's" in line


# -- against the real Home Assistant --------------------------------------------------------


@contextlib.contextmanager
def frontend(ha: HomeAssistant) -> Iterator[Callable[..., Any]]:
    """Home Assistant's WebSocket API as its frontend uses it (the owner logged in): a call
    per command, its result back."""
    with connect(websocket_url(ha.url), open_timeout=30, proxy=None) as ws:
        assert json.loads(ws.recv(timeout=30))["type"] == "auth_required"
        ws.send(json.dumps({"type": "auth", "access_token": ha.token}))
        assert json.loads(ws.recv(timeout=30))["type"] == "auth_ok"
        ids = iter(range(1, 1000))

        def call(command: str, **data: Any) -> Any:
            msg_id = next(ids)
            ws.send(json.dumps({"id": msg_id, "type": command, **data}))
            while True:
                reply = json.loads(ws.recv(timeout=30))
                if reply.get("id") == msg_id:
                    assert reply["success"], reply
                    return reply["result"]

        yield call


@pytest.fixture(scope="module")
def home_assistant(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[HomeAssistant, str]]:
    """Home Assistant with the Bed Light (alias "Night Light") in the Café (alias "Coffee
    Corner") on the 2nd Floor (alias "Upstairs"), an area whose name the pendant cannot take,
    the party-mode switch (an input_boolean) exposed to Assist; and an administrator's
    long-lived token. Onboarding made the areas Living Room, Kitchen and Bedroom."""
    reason = reason_unavailable()
    if reason is not None:
        pytest.skip(reason)
    with HomeAssistant(tmp_path_factory.mktemp("ha")) as ha:
        with frontend(ha) as ws:
            floor = ws("config/floor_registry/create", name="2nd Floor", level=2)
            cafe = ws("config/area_registry/create", name="Café", floor_id=floor["floor_id"])
            ws("config/area_registry/create", name="Loft (old)")
            # Aliases, as the area's and the floor's dialogs save them.
            ws("config/area_registry/update", area_id=cafe["area_id"],
               aliases=["Coffee Corner", "Nook!"])  # fmt: skip
            ws("config/floor_registry/update", floor_id=floor["floor_id"], aliases=["Upstairs"])
            ws("config/entity_registry/update", entity_id="light.bed_light",
               area_id=cafe["area_id"], aliases=["Night Light", "Bed lamp!"])  # fmt: skip
            ws("homeassistant/expose_entity", assistants=["conversation"],
               entity_ids=["input_boolean.party_mode"], should_expose=True)  # fmt: skip
            token = ws("auth/long_lived_access_token", client_name="pendant import", lifespan=1)
        yield ha, token


def imported(ha: HomeAssistant, token: str, tmp_path: Path) -> tuple[Path, str]:
    out = tmp_path / "pendant.d" / "home.toml"
    out.parent.mkdir()
    proc = pendant("--url", ha.url, "--token-file", str(token_file(tmp_path, token)),
                   "-o", str(out), verbose=True)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert token not in proc.stdout + proc.stderr  # `-v`: debug logging on, still not said
    return out, proc.stderr


@pytest.mark.timeout(600)
def test_home_assistants_names_become_the_pendants_home(
    home_assistant: tuple[HomeAssistant, str], tmp_path: Path
) -> None:
    ha, token = home_assistant
    out, said = imported(ha, token, tmp_path)
    assert "wrote" in said and "4 areas, 1 floor, 2 devices" in said
    assert os.stat(out).st_mode & 0o777 == 0o644
    text = out.read_text()
    home = parse_config(tomllib.loads(text)).home
    assert home.areas == ["Bedroom", "Café", "Kitchen", "Living Room"]
    assert [(f.name, f.areas, f.aliases) for f in home.floors] == [
        ("2nd Floor", ["Café"], ["Upstairs"])
    ]
    assert home.area_aliases == {"Café": ["Coffee Corner"]}
    assert "[home.area_aliases]" in text
    [light] = [d for d in home.devices if d.entity_id == "light.bed_light"]
    assert (light.name, light.kind.value, light.area) == ("Bed Light", "light", "Café")
    assert light.aliases == ["Night Light"]
    # A template light with no level or colour: on and off only.
    assert (light.color, light.brightness) == (False, False)
    assert "input_boolean 1" in text  # exposed, but of no kind the pendant has sentences for
    assert "area 'Loft (old)'" in text and "alias 'Bed lamp!' of 'Bed Light'" in text
    assert "alias 'Nook!' of area 'Café'" in text


@pytest.mark.timeout(600)
def test_what_the_pendant_hears_in_the_imported_home_assist_acts_on(
    home_assistant: tuple[HomeAssistant, str], tmp_path: Path
) -> None:
    """The imported home heard and understood as the ears do, the sentence the event hands
    the blueprint (`named_text`), and Assist acting on it: "cafe" and "second floor" are
    heard, "Café" and "2nd Floor" are what Assist knows."""
    ha, token = home_assistant
    out, _ = imported(ha, token, tmp_path)
    config = parse_config({"device_id": "pendant-import", **tomllib.loads(out.read_text())})
    nlu = IntentParser(config)
    for said, state in (
        ("turn on the lights in the cafe", "on"),
        ("turn off the lights on the second floor", "off"),
        # Aliases of an area and a floor: the intent names the area, the floor.
        ("turn on the lights in the coffee corner", "on"),
        ("turn off the upstairs lights", "off"),
        ("turn on the night light", "on"),
    ):
        match = nlu.parse(said)
        assert match is not None, said
        event = Intent(device_id=config.device_id, name=match.name, text=match.text,
                       confidence=1, slots=match.slots)  # fmt: skip
        body = json.loads(event_message(config, event)[1])
        answer = ha.request("POST", "/api/conversation/process",
                            {"text": body["named_text"], "language": "en"})  # fmt: skip
        assert answer["response"]["response_type"] == "action_done", (said, answer)
        assert (ha.state("light.bed_light") or {}).get("state") == state, said
    assert body["name_entity_id"] == "light.bed_light"


def test_the_real_home_assistant_refuses_a_wrong_token(
    home_assistant: tuple[HomeAssistant, str], tmp_path: Path
) -> None:
    ha, token = home_assistant
    wrong = token[:-4] + ("aaaa" if not token.endswith("aaaa") else "bbbb")
    line = one_line_error(pendant("--url", ha.url, "--token-file",
                                  str(token_file(tmp_path, wrong))), token=wrong)  # fmt: skip
    assert "Home Assistant refused the access token" in line


@pytest.mark.timeout(600)
def test_the_link_asks_home_assistants_agent_what_the_closed_set_cannot_hear(
    home_assistant: tuple[HomeAssistant, str], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 18's first target, on the real Home Assistant (here for its running instance):
    its built-in agent answers a question and acts on a command, as text over its WebSocket
    API (`pendant.link.ask_home_assistant`); a wrong token is one clear line, no traceback."""
    from pendant.core.config import EscalateConfig
    from pendant.core.events import Ask
    from pendant.link.ask import Asker, target_of
    from tests.conftest import demo_config

    ha, token = home_assistant

    def asker(secret: str) -> Asker:
        escalate = EscalateConfig(
            enabled=True,
            target="home_assistant",
            url=ha.url,
            token_file=str(token_file(tmp_path, secret)),
            timeout_s=30,
        )
        config = demo_config(escalate=escalate)
        return Asker(config, target_of(config))

    def answer(a: Asker, text: str) -> tuple[str, str]:
        said, intent = asyncio.run(a.answer(Ask(device_id="pendant-demo", text=text)))
        assert intent is None  # Home Assistant acts itself: nothing for the link to publish
        return said.outcome, said.text

    a = asker(token)
    outcome, text = answer(a, "what time is it")
    assert outcome == "answered" and text, text
    ha.call("input_boolean", "turn_off", {"entity_id": "input_boolean.bed_light"})
    assert answer(a, "turn on the bed light")[0] == "acted"
    assert (ha.state("light.bed_light") or {}).get("state") == "on"
    outcome, text = answer(a, "turn on the spaceship")
    assert outcome == "refused" and text  # Home Assistant's own "no device called ..."
    wrong = token[:-4] + ("aaaa" if not token.endswith("aaaa") else "bbbb")
    assert answer(asker(wrong), "what time is it") == ("failed", "")
    said = [r.getMessage() for r in caplog.records if r.name == "pendant.link.ask"]
    assert any("refused the access token" in s and "escalate.token_file" in s for s in said), said
    assert not any(token in s or wrong in s for s in said)
