"""The wire vocabulary every process shares, without pydantic: ports, topics, ids, patterns.

The web server (pydantic-free, its own small unit) and the root-run pairing tools read these as
well as the components, so nothing here imports more than the standard library.
"""

from __future__ import annotations

WEB_PORT = 8443
"""The companion app's HTTPS port (pendant-web; the pairing link and QR code point here)."""

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
        "status",
        "camera",
        "hardware_mute",
        "sentences",
        "pairing_status",
        "pairing_offer",
        "link_state",
    }
)


def topic(event_type: str) -> str:
    return f"{PREFIX}/{event_type}"


EYES_INTENT_TOPIC = topic("eyes/intent")
