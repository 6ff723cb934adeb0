"""`pendant home import`: the home's names from Home Assistant, as the config's `[home]`.

Home Assistant already knows what the wearer calls things: its areas, its floors, and the
entities exposed to Assist, with their aliases. This reads them over Home Assistant's WebSocket
API with a long-lived access token (an administrator's: only admins may list what is exposed)
and writes them as the TOML `[home]` table the pendant's config takes:

- `areas`: every area, and `area_aliases` for those with aliases; `floors`: every floor,
  with its areas and aliases;
- `devices`: one per entity exposed to Assist (Home Assistant's "Voice assistants" page), named
  as Assist hears it (its friendly name), of the kind its domain is (`DeviceKind`; entities of
  other domains are left out and counted), in its area or else its device's, with its aliases,
  its device class where the pendant asks by class, a light's colour and brightness from its
  colour modes, and its `entity_id`, which intents naming it then carry.

Names the pendant cannot take (`pendant.core.names.NAME_PATTERN`: "Mr. Coffee", "Кухня") are left
out, each named in a comment. The token is read from a file only its owner can read and is
never printed or logged.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import sys
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pendant.core.config import DEVICE_CLASSES, DeviceKind, Home
from pendant.core.home_assistant import (
    TOKEN_HINT,
    HomeAssistantError,
    Refused,
    Session,
    connected,
    websocket_url,
    without_login,
)
from pendant.core.names import ENTITY_ID_PATTERN, NAME_MAX_CHARS, NAME_PATTERN

log = logging.getLogger(__name__)

ASSIST = "conversation"
"""Home Assistant's name for Assist among the assistants an entity is exposed to."""
TIMEOUT_S = 30.0
# A home's states and registries: a few MB for a big one (websockets' default is 1 MiB).
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
COLOR_MODES = frozenset({"hs", "xy", "rgb", "rgbw", "rgbww"})
"""Light colour modes that take a colour (not `color_temp`, a shade of white)."""
NO_BRIGHTNESS = frozenset({"onoff", "unknown"})
KINDS = frozenset(k.value for k in DeviceKind)
_NAME = re.compile(NAME_PATTERN)
_ENTITY_ID = re.compile(ENTITY_ID_PATTERN)


@dataclass
class Registries:
    """What Home Assistant told us, as its WebSocket API gives it."""

    version: str = ""
    areas: list[dict[str, Any]] = field(default_factory=list)
    floors: list[dict[str, Any]] = field(default_factory=list)
    devices: list[dict[str, Any]] = field(default_factory=list)
    exposed: list[str] = field(default_factory=list)
    """Entity ids exposed to Assist."""
    entries: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    """Entity registry entries, full (with aliases); None for an entity not in the registry."""
    states: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class Imported:
    """The `[home]` table, and what was left out of it (one comment line each)."""

    home: dict[str, Any]
    notes: list[str]
    version: str = ""


async def _read(session: Session) -> Registries:
    reg = Registries(version=session.version)
    reg.areas = list(await session.call("config/area_registry/list") or [])
    reg.floors = list(await session.call("config/floor_registry/list") or [])
    reg.devices = list(await session.call("config/device_registry/list") or [])
    exposed = (await session.call("homeassistant/expose_entity/list") or {})["exposed_entities"]
    reg.exposed = sorted(e for e, to in exposed.items() if isinstance(to, dict) and to.get(ASSIST))
    if reg.exposed:
        reg.entries = dict(
            await session.call("config/entity_registry/get_entries", entity_ids=reg.exposed)
        )
    states = await session.call("get_states") or []
    wanted = set(reg.exposed)
    reg.states = {s["entity_id"]: s for s in states if s.get("entity_id") in wanted}
    return reg


async def read_home_assistant(url: str, token: str, cafile: Path | None = None) -> Registries:
    """Everything `home_from` needs, read over Home Assistant's WebSocket API at `url`
    (its http(s) address). Every failure is a HomeAssistantError of one line."""
    hint = f"{TOKEN_HINT} (--token-file)"
    async with connected(
        url,
        token,
        cafile=cafile,
        timeout_s=TIMEOUT_S,
        max_bytes=MAX_MESSAGE_BYTES,
        token_hint=hint,
        agent="pendant-home-import",
    ) as session:
        try:
            async with asyncio.timeout(TIMEOUT_S):
                return await _read(session)
        except Refused as exc:
            raise _explained(exc, session.version) from None


def _explained(exc: Refused, version: str) -> HomeAssistantError:
    """A refused command, with what `pendant home import` needs for it."""
    if exc.code == "unknown_command":
        return HomeAssistantError(
            f"Home Assistant {version or '(version unknown)'} has no {exc.command} "
            "command: `pendant home import` needs Home Assistant 2023.5 or later"
        )
    if exc.code == "unauthorized":
        return HomeAssistantError(
            f"Home Assistant refused {exc.command} ({exc.why}): the token must be an "
            "administrator's, since only administrators may list what Assist is exposed to"
        )
    return exc


def fits(name: str) -> bool:
    """Can the pendant's config take `name` as a name?"""
    return len(name) <= NAME_MAX_CHARS and _NAME.fullmatch(name) is not None


def _shown(name: Any) -> str:
    """A name Home Assistant has, safe in a TOML comment (no control characters), quoted."""
    text = "".join(c if c.isprintable() else "?" for c in str(name))
    return repr(text[:80])


def assist_name(entity_id: str, state: dict[str, Any], entry: dict[str, Any]) -> str:
    """The name Assist hears an entity by: its state's friendly name (the registry's name, or
    the integration's, with the device's name in front where the entity is named after its
    device), as Home Assistant's default agent takes `state.name`."""
    attributes = state.get("attributes") or {}
    name = attributes.get("friendly_name") or entry.get("name") or entry.get("original_name")
    return str(name or entity_id.split(".", 1)[1].replace("_", " ")).strip()


def _light(attributes: dict[str, Any], entry: dict[str, Any]) -> dict[str, bool]:
    modes = attributes.get("supported_color_modes")
    if modes is None:
        modes = (entry.get("capabilities") or {}).get("supported_color_modes")
    if not modes:
        return {}  # unknown: the config's defaults
    modes = set(modes)
    return {"color": bool(modes & COLOR_MODES), "brightness": bool(modes - NO_BRIGHTNESS)}


def home_from(reg: Registries) -> Imported:
    """The `[home]` table for what `reg` holds, and a note for each thing left out."""
    refused: list[str] = []
    areas: dict[str, str] = {}
    for area in sorted(reg.areas, key=lambda a: str(a.get("name", "")).casefold()):
        name = str(area.get("name", "")).strip()
        if fits(name):
            areas[area["area_id"]] = name
        else:
            refused.append(f"area {_shown(name)}")
    area_names = {n.casefold() for n in areas.values()}
    notes: list[str] = []
    area_aliases: dict[str, list[str]] = {}
    entries = {a.get("area_id"): a for a in reg.areas}
    for area_id, name in areas.items():
        aliases = _aliases(
            entries[area_id], name, f"area {_shown(name)}", area_names, refused, notes
        )
        if aliases:
            area_aliases[name] = aliases
    floors: list[dict[str, Any]] = []
    by_level = sorted(reg.floors, key=lambda f: (f.get("level") is None, f.get("level") or 0))
    for floor in by_level:
        name = str(floor.get("name", "")).strip()
        if not fits(name):
            refused.append(f"floor {_shown(name)}")
            continue
        if name.casefold() in area_names:
            notes.append(f"Left out: floor {_shown(name)}, which has an area's name.")
            continue
        on_it = [n for a, n in areas.items() if _floor_of(reg, a) == floor.get("floor_id")]
        floors.append({"name": name, "areas": on_it})
        aliases = _aliases(floor, name, f"floor {_shown(name)}", area_names, refused, notes)
        if aliases:
            floors[-1]["aliases"] = aliases
    devices_by_id = {d.get("id"): d for d in reg.devices}
    other_kinds: Counter[str] = Counter()
    stateless: list[str] = []
    devices: list[dict[str, Any]] = []
    for entity_id in reg.exposed:
        domain = entity_id.split(".", 1)[0]
        if domain not in KINDS or not _ENTITY_ID.fullmatch(entity_id):
            other_kinds[domain] += 1
            continue
        state = reg.states.get(entity_id)
        if state is None:
            stateless.append(entity_id)
            continue
        entry = reg.entries.get(entity_id) or {}
        name = assist_name(entity_id, state, entry)
        if not fits(name):
            refused.append(f"{domain} {_shown(name)} ({entity_id})")
            continue
        device: dict[str, Any] = {"name": name, "kind": domain}
        area_id = entry.get("area_id") or (devices_by_id.get(entry.get("device_id")) or {}).get(
            "area_id"
        )
        if area_id in areas:
            device["area"] = areas[area_id]
        aliases: list[str] = []
        for alias in entry.get("aliases") or []:
            said = str(alias or "").strip()
            if not said or said.casefold() == name.casefold() or said in aliases:
                continue
            if fits(said):
                aliases.append(said)
            else:
                refused.append(f"alias {_shown(said)} of {_shown(name)}")
        if aliases:
            device["aliases"] = sorted(aliases, key=str.casefold)
        attributes = state.get("attributes") or {}
        if domain in DEVICE_CLASSES:
            cls = (
                attributes.get("device_class")
                or entry.get("device_class")
                or entry.get("original_device_class")
            )
            if cls in DEVICE_CLASSES[domain]:
                device["device_class"] = cls
        if domain == "light":
            device.update(_light(attributes, entry))
        device["entity_id"] = entity_id
        devices.append(device)
    if other_kinds:
        # Home Assistant's own text, in a comment: shown safe like any name.
        kinds = ", ".join(
            f"{d if re.fullmatch(r'[a-z0-9_]+', d) else _shown(d)} {n}"
            for d, n in sorted(other_kinds.items())
        )
        notes.append(
            f"Left out: {sum(other_kinds.values())} exposed entities of kinds the pendant has "
            f"no sentences for ({kinds})."
        )
    if stateless:
        notes.append(
            f"Left out: {len(stateless)} exposed entities with no state (disabled or not "
            f"loaded): {', '.join(stateless[:10])}{' ...' if len(stateless) > 10 else ''}."
        )
    if refused:
        notes.append(f"Left out: names the pendant cannot take: {'; '.join(refused)}.")
    devices.sort(key=lambda d: (d["name"].casefold(), d["entity_id"]))
    home = {"areas": list(areas.values()), "area_aliases": area_aliases, "floors": floors,
            "devices": devices}  # fmt: skip
    try:
        Home.model_validate(home)
    except ValueError as exc:  # a case this code does not foresee: say so, write nothing
        raise HomeAssistantError(f"the imported home does not validate: {exc}") from None
    return Imported(home, notes, reg.version)


def _aliases(
    entry: dict[str, Any],
    name: str,
    of: str,
    area_names: set[str],
    refused: list[str],
    notes: list[str],
) -> list[str]:
    """An area's or a floor's aliases the pendant can take, sorted; another area's name
    (which would make the two one to the ears) is left out with a note."""
    aliases: list[str] = []
    for alias in entry.get("aliases") or []:
        said = str(alias or "").strip()
        if not said or said.casefold() == name.casefold() or said in aliases:
            continue
        if not fits(said):
            refused.append(f"alias {_shown(said)} of {of}")
        elif said.casefold() in area_names:
            notes.append(f"Left out: alias {_shown(said)} of {of}, which is an area's name.")
        else:
            aliases.append(said)
    return sorted(aliases, key=str.casefold)


def _floor_of(reg: Registries, area_id: str) -> str | None:
    for area in reg.areas:
        if area.get("area_id") == area_id:
            return area.get("floor_id")
    return None


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        # A JSON string is a TOML basic string when nothing outside ASCII is escaped (JSON
        # would escape astral characters as surrogate pairs, which TOML refuses); the names
        # were checked to hold no control character, which both escape alike.
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    raise TypeError(f"no TOML for {type(value).__name__}")


DEVICE_KEYS = ("name", "kind", "area", "aliases", "device_class", "color", "brightness")


def to_toml(imported: Imported) -> str:
    """`imported` as a TOML document of one `[home]` table, notes as comments on top."""
    # Home Assistant's word, in the first comment: a version, nothing that could end the line.
    shown = imported.version if re.fullmatch(r"[0-9A-Za-z.+-]*", imported.version) else "?"
    version = f" {shown}" if shown else ""
    lines = [
        f"# The home as Home Assistant{version} names it (`pendant home import`): its areas,",
        "# floors and the entities exposed to Assist. Use it as pendant.toml's [home], or as",
        "# a drop-in (/etc/pendant/pendant.d/home.toml) whose lists replace the config's.",
    ]
    lines += [f"# {note}" for note in imported.notes]
    home = imported.home
    lines += ["", "[home]", f"areas = {_toml(home['areas'])}"]
    if home["area_aliases"]:
        lines += ["", "[home.area_aliases]"]
        lines += [f"{_toml(area)} = {_toml(said)}" for area, said in home["area_aliases"].items()]
    for floor in home["floors"]:
        lines += ["", "[[home.floors]]", f"name = {_toml(floor['name'])}"]
        lines.append(f"areas = {_toml(floor['areas'])}")
        if floor.get("aliases"):
            lines.append(f"aliases = {_toml(floor['aliases'])}")
    for device in home["devices"]:
        lines += ["", "[[home.devices]]"]
        lines += [f"{key} = {_toml(device[key])}" for key in DEVICE_KEYS if key in device]
        lines.append(f"entity_id = {_toml(device['entity_id'])}")
    return "\n".join(lines) + "\n"


def _count(n: int, thing: str) -> str:
    return f"{n} {thing}{'' if n == 1 else 's'}"


def run(url: str, token_file: Path, out: Path | None, cafile: Path | None = None) -> int:
    """`pendant home import`: the TOML on stdout, or in `out`; a summary on stderr."""
    from pendant.core import state as durable
    from pendant.core.mqtt import read_secret

    token = read_secret(str(token_file), "--token-file") or ""
    if any(unicodedata.category(c) == "Cc" for c in token):
        raise HomeAssistantError(f"--token-file: {token_file} holds more than one line")
    websocket_url(url)  # a bad --url is its own one-line error, before any warning
    host = urlsplit(url).hostname or ""
    if url.startswith("http://") and host not in ("localhost", "127.0.0.1", "::1"):
        # An administrator's token, readable by anyone on the way: say so, as the doctor says
        # of a plaintext broker.
        print(
            f"pendant home import: warning: {without_login(url)} is plain http: the token "
            "crosses the network unencrypted; use https:// where Home Assistant offers it",
            file=sys.stderr,
        )
    imported = home_from(asyncio.run(read_home_assistant(url, token, cafile)))
    text = to_toml(imported)
    home = imported.home
    summary = ", ".join(_count(len(home[key]), key[:-1]) for key in ("areas", "floors", "devices"))
    if out is None:
        sys.stdout.write(text)
    else:
        try:
            # Names, not secrets: the pendant's services read the config as their own user.
            durable.write_file(out, text, mode=0o644)
        except OSError as exc:
            raise HomeAssistantError(f"cannot write {out}: {exc.strerror}") from None
        summary = f"wrote {out}: {summary}"
    print(f"pendant home import: {summary}", file=sys.stderr)
    for note in imported.notes:
        print(f"pendant home import: {note}", file=sys.stderr)
    return 0
