"""Commands from the phone: `pendant/<device_id>/cmd/<name>` in, `pendant-bus/cmd/<name>` out.

The phone, Home Assistant, or anything else on the outside broker may publish there, so every
byte is untrusted. A command is forwarded to the bus only when it is exactly one of these:

| command | payload (a JSON object, at most 1 KiB) |
|---|---|
| `mute` | `{"mic": bool, "camera": bool}`, either or both; `false` unmutes |
| `capture` | `{}` |
| `identify` | `{}` (blink the LED, so the wearer can tell which pendant this is) |
| `say` | `{"text": str}`, 1-200 characters, no control characters |
| `buzz` | `{"pattern": "attention"}`, or `understood`, `not_understood`; `{}` is attention |
| `sentences` | `{"sentences": [{"intent": "PartyMode", "sentences": ["party time"]}]}` |
| `area` | `{"area": "Kitchen"}`, one of `home.areas` (any case), or `{"area": null}` to clear |
| `voice` | `{"action": "enrol", "voice": "Sam"}`; `done`, `cancel`, `forget_all`; `forget`+voice |

`voice` (issue 19, `[speaker]`): `enrol` makes the ears take the next five utterances as that
voice's (none of them is acted on), `done` keeps what they heard so far, `forget` deletes one
voice, `forget_all` every one. The ears answer with a retained `voices` event: the names and
the enrolment's progress, never a voiceprint. A paired phone only: not the home broker.

`say`: the body buzzes (`attention`) and the phones speak the text, which the link passes on
to them as its own `say` event (phones cannot read commands). `buzz`: the body plays that
answer to the wearer (`pendant.body.feedback`); not `confirm`, which only a tap can answer.

`sentences` may be up to 4 KiB; it replaces the phone's last set (`[]` clears it), and the ears
check the templates and answer with a retained `sentences` event.

`area` is a state, not an action: the room the wearer is in, for sentences about "here", as
Home Assistant's room presence sees it. It is the one command accepted retained (see
`STATES`), and it is kept retained on the bus so the ears know it whenever they start. The
area goes on with the config's spelling. An empty payload clears it too: that is how MQTT
deletes a retained message, and what a subscriber then receives.

Any other command sent retained is refused (`retained_error`): it would be stored by the broker
and run again on every reconnect. The link then deletes it from the broker (an empty retained
message on its topic) and reports it on the error topic.

Who sent a command matters: a paired phone (its own account on the pendant's broker, writing
`cmd/<name>`) may send them all; the home broker's clients (Home Assistant, or anything else
that can log in there) reach the pendant only through the link's own connection to the home
broker, where phones are not, and there `home_refusal` takes `HOME_COMMANDS` alone and
refuses what would lower the wearer's privacy: an unmute (`mute` with a `false`), a
`capture`, new `sentences`. Muting is for anyone; unmuting and `capture` are for a paired
phone or the button.

An empty payload counts as `{}` (Home Assistant's MQTT button can send one). Anything else,
including unknown or duplicate keys and wrong types, becomes a public `Error` event with a
short reason that quotes at most `ECHO_CHARS` characters of the input, and is not forwarded.
`parse_command` never raises.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection
from typing import Any, get_args

from pydantic import ValidationError

from pendant.core.events import (
    VOICE_NAME_PATTERN,
    BuzzPattern,
    Command,
    Error,
    SentenceSet,
    VoiceAction,
)

MAX_COMMAND_BYTES = 1024
# Room for a page of sentences, while their echo in a `sentences` event stays under 8 KiB.
MAX_SENTENCES_BYTES = 4096
# The gate drops any event holding 48+ characters without a space; no word comes close.
MAX_WORD_CHARS = 40
MAX_SAY_CHARS = 200
# Under the gate's 48-character blob pattern, so an echo cannot get its error dropped, and
# short enough that an error never republishes much of what someone sent.
ECHO_CHARS = 40
MAX_REASON_CHARS = 100

_NAME = re.compile(r"[a-z][a-z_]{0,31}")
_BAD_TEXT = re.compile(r"[\x00-\x1f\x7f\ud800-\udfff]")
_BOOL_KEYS = frozenset({"mic", "camera"})
BUZZ_PATTERNS: tuple[str, ...] = get_args(BuzzPattern)
VOICE_ACTIONS: tuple[str, ...] = get_args(VoiceAction)
_VOICE_NAME = re.compile(VOICE_NAME_PATTERN)

STATES = frozenset({"area"})
"""Commands that set a state rather than do something: accepted retained from outside (the
last one is the state, and replaying it on a reconnect changes nothing) and kept retained on
the bus."""


RETAINED_REASON = "sent retained, which only a state (area) may be: deleted, not run"

HOME_COMMANDS = frozenset({"mute", "identify", "say", "buzz", "area"})
"""What the home broker may send (the link refuses the rest from there): none that lets a
client of the home broker see or hear more. Not `capture` (a look through the
camera) nor `sentences` (new sentences widen what the pendant hears and publishes)."""
HOME_UNMUTE_REASON = "unmuting is for a paired phone or the button, not the home broker"


def home_refusal(command: Command) -> str | None:
    """Why `command`, which came from the home broker, must not run; None if it may.

    Only `HOME_COMMANDS` may run (never `capture` or `sentences`), and of those no unmute
    (`mute` with a false).
    """
    if command.name not in HOME_COMMANDS:
        return f"{command.name} is for a paired phone or the button, not the home broker"
    if command.name == "mute" and False in (command.mic, command.camera):
        return HOME_UNMUTE_REASON
    return None


def excerpt(text: str) -> str:
    """At most ECHO_CHARS of untrusted text, with anything unprintable shown as '?'."""
    clean = "".join(c if c.isprintable() else "?" for c in text[: ECHO_CHARS + 1])
    return clean[:ECHO_CHARS] + ("…" if len(clean) > ECHO_CHARS else "")


class _Rejected(Exception):
    """Internal: carries the reason a command was refused."""


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # json would keep the last of {"mic": true, "mic": false}; a command must not be ambiguous.
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise _Rejected(f"duplicate key '{excerpt(key)}'")
        seen[key] = value
    return seen


def _no_constants(name: str) -> Any:
    raise _Rejected(f"{name} is not JSON")


def _decode(payload: bytes, limit: int = MAX_COMMAND_BYTES) -> dict[str, Any]:
    if len(payload) > limit:
        raise _Rejected(f"payload of {len(payload)} bytes is over {limit}")
    if not payload.strip():
        return {}
    try:
        data = json.loads(
            payload, object_pairs_hook=_no_duplicate_keys, parse_constant=_no_constants
        )
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise _Rejected("payload is not JSON") from None
    if not isinstance(data, dict):
        raise _Rejected("payload must be a JSON object")
    return data


def _check(name: str, data: dict[str, Any], areas: Collection[str]) -> None:
    allowed, required = Command.ARGUMENTS[name]
    for key in data:
        if key not in allowed:
            raise _Rejected(f"{name} takes no key '{excerpt(key)}'")
    for key in sorted(required - data.keys()):
        raise _Rejected(f"{name} needs '{key}'")
    for key, value in data.items():
        if key in _BOOL_KEYS and not isinstance(value, bool):
            raise _Rejected(f"'{key}' must be true or false")
        if key == "text":
            if not isinstance(value, str):
                raise _Rejected("'text' must be a string")
            if not 1 <= len(value) <= MAX_SAY_CHARS:
                raise _Rejected(f"'text' must be 1 to {MAX_SAY_CHARS} characters")
            if _BAD_TEXT.search(value):
                raise _Rejected("'text' holds control characters")
        if key == "pattern" and (not isinstance(value, str) or value not in BUZZ_PATTERNS):
            raise _Rejected(f"'pattern' must be one of: {', '.join(BUZZ_PATTERNS)}")
        if key == "sentences":
            _check_sentences(value)
        if key == "area" and value is not None:
            data[key] = _known_area(value, areas)
        if key == "action" and (not isinstance(value, str) or value not in VOICE_ACTIONS):
            raise _Rejected(f"'action' must be one of: {', '.join(VOICE_ACTIONS)}")
        if key == "voice" and (not isinstance(value, str) or not _VOICE_NAME.fullmatch(value)):
            raise _Rejected("'voice' must be a name: a letter, then up to 31 letters, digits, ' _-")
    if name == "mute" and not data:
        raise _Rejected("mute needs 'mic' and/or 'camera'")
    if name == "area" and "area" not in data:
        raise _Rejected("area needs 'area': one of home.areas, or null")
    if name == "voice" and (data["action"] in ("enrol", "forget")) != ("voice" in data):
        raise _Rejected("voice: 'enrol' and 'forget' need 'voice', the other actions take none")


def _known_area(value: Any, areas: Collection[str]) -> str:
    """One of the home's areas, as the config spells it, for any case of it."""
    if not isinstance(value, str):
        raise _Rejected("'area' must be a string or null")
    by_lower = {a.lower(): a for a in areas}
    known = by_lower.get(value.lower())
    if known is None:
        where = "not in home.areas" if areas else "home.areas is empty"
        raise _Rejected(f"unknown area '{excerpt(value)}': {where}")
    return known


def _check_sentences(value: Any) -> None:
    if not isinstance(value, list):
        raise _Rejected("'sentences' must be a list")
    for i, item in enumerate(value):
        try:
            checked = SentenceSet.model_validate(item)
        except ValidationError as exc:
            err = exc.errors()[0]
            loc = ".".join(str(p) for p in err["loc"])
            msg = (
                "must be like 'PartyMode': a capital, then letters and digits"
                if err["loc"] == ("intent",) and err["type"] == "string_pattern_mismatch"
                else err["msg"]
            )
            raise _Rejected(f"sentences[{i}].{loc}: {msg}"[:MAX_REASON_CHARS]) from None
        for sentence in checked.sentences:
            if any(len(word) > MAX_WORD_CHARS for word in sentence.split()):
                raise _Rejected(f"sentences[{i}]: a word over {MAX_WORD_CHARS} characters")


def retained_error(name: str, device_id: str) -> Error:
    """The report for a command `name` found retained that is not one of `STATES`."""
    return Error(
        device_id=device_id,
        command=name if _NAME.fullmatch(name) else None,
        reason=RETAINED_REASON,
    )


def parse_command(
    name: str, payload: bytes, device_id: str, areas: Collection[str] = ()
) -> Command | Error:
    """The command `name` (the topic's last level) with `payload`, or why not.

    `areas`: the home's areas (`home.areas`), the only names `area` accepts.
    """
    try:
        if name not in Command.ARGUMENTS:
            raise _Rejected(f"unknown command '{excerpt(name)}'")
        limit = MAX_SENTENCES_BYTES if name == "sentences" else MAX_COMMAND_BYTES
        if name == "area" and payload == b"":
            data: dict[str, Any] = {"area": None}  # a retained area deleted: no area
        else:
            data = _decode(payload, limit)
        _check(name, data, areas)
        return Command(device_id=device_id, name=name, **data)  # type: ignore[arg-type]
    except _Rejected as exc:
        reason = str(exc)
    except ValueError:  # pydantic's ValidationError: a rule above should have caught it
        reason = f"{excerpt(name)}: invalid arguments"
    return Error(
        device_id=device_id,
        command=name if _NAME.fullmatch(name) else None,
        reason=reason[:MAX_REASON_CHARS],
    )
