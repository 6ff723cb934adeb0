"""The wire vocabulary every process shares, without pydantic: ports, topics, ids, patterns,
time, and the envelope every event travels in.

The web server (pydantic-free, its own small unit) and the root-run pairing tools read these as
well as the components, so nothing here imports more than the standard library.
`pendant.core.events` builds its pydantic models from the same patterns and the same envelope
(a test holds them together), so what the web server writes and reads by hand cannot drift
from what the components validate.
"""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

WEB_PORT = 8443
"""The companion app's HTTPS port (pendant-web; the pairing link and QR code point here)."""

# --- patterns -------------------------------------------------------------------------------
# Anchored, and written so that Python's re, pydantic's Rust regex and a JSON Schema consumer's
# ECMAScript one read them alike: they are copied verbatim into pendant/schemas/.

DEVICE_ID_PATTERN = r"^[a-z0-9][a-z0-9-]{0,31}$"
"""A device id (config `device_id`): names the pendant in every topic."""
LABEL = r"[a-z0-9](?:[a-z0-9-]{0,30}[a-z0-9])?"
"""Unanchored: a name that is also a host-name label (no '-' at either end), at most 32
characters. Provisioning holds device ids to it (they go into certificates), and a phone's
account is `phone-<label>`."""
PHONE_PREFIX = "phone-"
"""What every paired phone's bus account starts with (`pendant.setup.provision`)."""
PHONE_USER_PATTERN = rf"^{PHONE_PREFIX}{LABEL}$"
"""A paired phone's account name: `phone-anna`."""
HEX_ID_PATTERN = r"^[0-9a-f]{32}$"
"""An event's `id`, a `session_id`, a pairing request's id: 128 random bits as 32 hex."""
FRAGMENT_PATTERN = r"^[A-Za-z0-9%=&._~-]+$"
"""The pairing link's fragment, percent-encoded (`u=...&p=...&d=...&w=...`): nothing that
could break out of an HTML attribute or a URL."""
FRAGMENT_MAX_CHARS = 1000
EPOCH_MS_MAX = 2**53
"""The largest time in Unix epoch ms an event may carry: JSON numbers every consumer reads
exactly (JavaScript's safe integers), and what SQLite's INTEGER holds."""

DEVICE_ID = re.compile(DEVICE_ID_PATTERN)
PHONE_USER = re.compile(PHONE_USER_PATTERN)
HEX_ID = re.compile(HEX_ID_PATTERN)
FRAGMENT = re.compile(FRAGMENT_PATTERN)


# --- ids and time ---------------------------------------------------------------------------


def new_id() -> str:
    """A fresh random id in `HEX_ID_PATTERN`'s form (an event's `id`, a session's)."""
    return uuid.uuid4().hex


def now_ms() -> int:
    """The wall clock in Unix epoch milliseconds: the unit of every time on the wire."""
    return time.time_ns() // 1_000_000


# --- the envelope ---------------------------------------------------------------------------

VERSION = 1
"""The wire format's version, in every event's `version`."""
MAX_EVENT_BYTES = 8192
"""The most an event's JSON may take on the wire; anything longer is refused unread."""
ENVELOPE = ("type", "version", "id", "device_id", "timestamp_ms")
"""The fields every event carries, before its type's own (`pendant.core.events.Event`)."""


def envelope(event_type: str, device_id: str, **fields: object) -> dict[str, object]:
    """An event of `event_type` as a JSON-ready dict: the envelope, fresh id and time, then
    `fields`. For code that does not load pydantic (the web server); it must still parse
    with `pendant.core.events.parse_event` (a test holds the two together)."""
    return {
        "type": event_type,
        "version": VERSION,
        "id": new_id(),
        "device_id": device_id,
        "timestamp_ms": now_ms(),
        **fields,
    }


def is_envelope(data: Any, event_type: str) -> bool:
    """Whether `data` (parsed JSON) is an object whose envelope is a valid `event_type` one.

    Checks only the envelope: the caller checks the type's own fields."""
    if not isinstance(data, dict):
        return False
    ts = data.get("timestamp_ms")
    return (
        data.get("type") == event_type
        and type(data.get("version")) is int
        and data["version"] == VERSION
        and isinstance(data.get("id"), str)
        and HEX_ID.fullmatch(data["id"]) is not None
        and isinstance(data.get("device_id"), str)
        and DEVICE_ID.fullmatch(data["device_id"]) is not None
        and type(ts) is int
        and 0 <= ts <= EPOCH_MS_MAX
    )


# --- topics ---------------------------------------------------------------------------------

PREFIX = "pendant-bus"
QOS = 1
# States rather than happenings: retained, so a component that starts (or restarts) later
# knows them at once. The body needs the mute state for its first long hold, the ears the
# privacy switch before they hear anything, the body's LED where the link stands (`link_state`,
# which the link publishes again as `connecting` when it starts, so a stale one from the last
# boot does not say "ready"). The pairing window's state and its offer live only
# as long as the window: the pairing service clears them (an empty retained message). The
# link keeps one command retained too, the area (`pendant-bus/cmd/area`, commands.STATES).
RETAINED = frozenset(
    {
        "mic",
        "camera",
        "hardware_mute",
        "sentences",
        "voices",
        "pairing_status",
        "pairing_offer",
        "link_state",
    }
)


def topic(event_type: str) -> str:
    """The bus topic of events of `event_type`: `pendant-bus/<type>` (but see
    `command_topic` and `EYES_INTENT_TOPIC`)."""
    return f"{PREFIX}/{event_type}"


def command_topic(name: str) -> str:
    """The bus topic of the command `name` (`pendant-bus/cmd/<name>`), the one place it is
    spelled: the link and the body publish there, the components subscribe to
    `command_topic("#")`, and the broker's ACL grants by it."""
    return f"{PREFIX}/cmd/{name}"


EYES_INTENT_TOPIC = topic("eyes/intent")
