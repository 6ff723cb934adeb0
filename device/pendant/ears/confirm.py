"""Which intents heard in conversation mode wait for the wearer's tap before they go out.

With no wake word, anyone near the wearer can say "unlock the front door", and a mishearing
can turn talk into it. Locks, garage doors and other covers, and valves (`listen.confirm_kinds`)
are where one wrong action costs most, so an action on them heard without the button held
waits for a tap; said while holding the button, it is already the wearer's.
"""

from __future__ import annotations

from pendant.core.config import Config
from pendant.ears.understand.nlu import IntentMatch

# Questions change nothing: "is the front door locked" goes out at once.
QUESTION_PREFIX = "HassGet"


def needs_confirming(match: IntentMatch, config: Config) -> bool:
    """True for an action whose target (a device named, or a domain) is of a guarded kind."""
    guarded = {str(kind) for kind in config.listen.confirm_kinds}
    if not guarded or match.name.startswith(QUESTION_PREFIX):
        return False
    slots = match.slot_values()
    kinds = {str(slots["domain"])} if "domain" in slots else set()
    name = str(slots.get("name", "")).lower()
    kinds |= {d.kind.value for d in config.home.devices if d.name.lower() == name}
    return bool(kinds & guarded)
