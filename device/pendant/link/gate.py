"""The schema gate: the only door from the device to the outside world.

An event leaves only if it is of a public type, fits the size limit, validates against its
published JSON Schema, carries no blob that could smuggle audio or image bytes, says only what
its source can say. Anything else is dropped and counted by reason (one log line each), never
forwarded:

- `oversized`, `not_json` (or nested deeper than the checks go), `not_public_type`, `schema`:
  not an event we publish;
- `numbers`: a list of more than 8 numbers (with the lists inside it), or text with a run of 8
  numbers: the shape of a voiceprint or a table of scores (issue 19), which no public event has;
- `blob`: a run of 48 base64/hex characters anywhere, or text that reads as encoded bytes
  split into words (`pendant.link.blobs`), or text outside printable ASCII but for the config's
  own names as it spells them ("Café");
- `source`: an event on a topic that is not its source's. Every bus topic carries one type,
  its own (`pendant-bus/<type>` only a `<type>`), so the broker's ACL, which says who may
  write each topic, says who spoke each event: the ears cannot say a `scene` (free text) on
  their intent topic, nor the eyes a closed-set intent on theirs. The eyes' intents
  (`ReadText`, `SeenObjects`) carry what the camera read, which no closed set holds, so they
  are held to the blob rules only, as scenes are; they are taken only from the eyes' own
  topic (`bus.EYES_INTENT_TOPIC`, which only the eyes may write), and that topic carries
  nothing else. Without this the ears, which hold the microphone, could say anything as
  "ReadText". An event naming another device than this one (`device_id`) is dropped too: its
  32 characters would leave as the sender chose them;
- `clock`: a `timestamp_ms` more than `MAX_AHEAD_MS` (a minute) ahead of the link's wall
  clock, or `MAX_SKEW_MS` (a day) behind it but for the retained states (`bus.RETAINED`: the
  mic's state replayed to a restarted link is as old as the last change): a time that far off
  is no event of now, and one in the future would never expire. An intent's `speech_end_ms`
  lies before its own `timestamp_ms` (within the second that is rounded to), by no more than
  `MAX_SPEECH_BEFORE_MS`: recognition and the longest confirming wait (`listen.confirm_s`,
  at most a minute). Its milliseconds are the sender's to choose, so the narrower the window,
  the fewer bits a rogue ears could put there: about 14 now (24 with a day either way), and
  with `timestamp_ms`'s second within its day (about 16) some 30 bits of chosen time per
  intent, at the intent rate below;
- `vocabulary`: any other intent, a transcript or the text of a `not_recognized`, with a word,
  slot value or intent name the closed set cannot emit (`pendant.core.vocabulary`), or text not in
  the recognisers' form (lowercase words of `[a-z0-9']`, one space apart), or a slot's
  `entity_id` that is not the config's entity of the device the slot names. The recognisers
  only ever put out sentences of the closed set (Whisper's free text is snapped to one), so
  press-to-talk's "heard, but no intent" text is held to it too: the ears, which hold the
  microphone, cannot say other words in any of these. The phone's own sentences join the
  closed set from the `sentences` command the phone sent (`Gate.phone_sent`), never from the
  ears' `sentences` answer, which a rogue ears could fill with words of its choosing;
- `sentences`: that answer, with sets the phone did not send. Its other text (why a set was
  refused, what will not work as meant) is held to the forms the ears produce, their variable
  parts to the phone's own templates and the closed set's words; what fits none is replaced
  by a fixed line, not dropped, so the phone still hears the answer (`pendant.link.gate_sentences`).

What passes leaves with its numbers rounded as the ears round them (a confidence or a label's
score to 3 decimals, a loudness to 1): their last digits could carry anything else.

And with ids the link issued, not the sender's (`reissue`): an event's `id` and `session_id`
(32 hex each) are chosen by the service that published it, the ears for instance, and would
carry 16 bytes of its choice per event. What leaves is HMAC-SHA256 of the sender's value under
the link's own key (`id_key`: random, 0600 beside the outbox, never on the bus), cut to the
same 32 hex: the same id on the bus is the same id outside (a QoS 1 redelivery stays one
event, for the outbox, the senders' sent window and every consumer; an intent and its
transcript, a spoken request and the eyes' answer keep sharing a session), and it says nothing
the sender chose. All a sender keeps is which of its events share an id or a session.

And each type has a rate (`turn`): `burst` at once, then one per `every_s` seconds. An event
over it waits its turn rather than being dropped: intents the ears spoke while the link was
away arrive together when it is back, and each was acknowledged to the ears, so none may be
lost; a flood is slowed to the rate, which bounds what any process could push out this way.

Error events are held to the schema and the 48-character rule only, so a phone hears why
its command was refused. The link's own (`Gate.admit_own`) come from its code, not the bus;
on the bus only the pairing service may write them (the ACL).

`say` events (`LINK_OWN`) are the link's alone: it makes one from each `say` command it
accepted, for the phones to speak, and the gate takes none off the bus (`source`), whoever
wrote it, so no component can say anything through them. Their text came from outside (Home
Assistant's answer, in any language), so it is held to the schema and the 48-character rule
only, as errors are. The device's `status` is the link's own too: it folds it from the parts
the components report (the ears' `mic`, the eyes' `camera`, the body's `battery`), so no one
component can speak for the whole device.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import re
import secrets
import time
from collections import Counter
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema

from pendant.core import bus, wire
from pendant.core import state as durable
from pendant.core.events import (
    EYES_INTENTS,
    MAX_EVENT_BYTES,
    PUBLIC_NAMES,
    SCHEMA_DIR,
    Answer,
    Camera,
    Error,
    Event,
    EventError,
    Intent,
    Mic,
    NotRecognized,
    Say,
    Scene,
    Sentences,
    SentenceSet,
    Status,
    Transcript,
    parse_event,
)
from pendant.core.vocabulary import PhoneSentences, Vocabulary
from pendant.link.blobs import is_plain, looks_like_blob
from pendant.link.gate_sentences import held
from pendant.link.ratelimit import TokenBucket

log = logging.getLogger(__name__)

# 48+ characters of base64/hex alphabet without a space is not something a person said.
BLOB = re.compile(r"[A-Za-z0-9+/=_-]{48,}")
# A voiceprint (issue 19) is 256 numbers; no public event carries more than a few in a list
# (a scene's labels are objects, a slot one value), nor runs of numbers in its text.
MAX_LIST_NUMBERS = 8
NUMBER_RUN = re.compile(r"(?:-?\d+(?:\.\d+)?(?:e-?\d+)?[\s,;]+){8}", re.IGNORECASE)
LINK_OWN = frozenset(
    {
        Say.model_fields["type"].default,
        Status.model_fields["type"].default,
        Answer.model_fields["type"].default,
    }
)
"""Public types only the link makes (see the module's docstring): never taken off the bus. The
device's `Status` is folded from the parts the components report (`pendant.link.status`)."""
BUS_NAMES = PUBLIC_NAMES - LINK_OWN
"""The public types the link reads off the bus."""
FROM_OUTSIDE = frozenset({Error.model_fields["type"].default}) | LINK_OWN
"""Types whose text is held to the 48-character rule only (see the module's docstring)."""
ID_KEYS = frozenset({"id", "session_id"})
SENTENCES_FORMS = frozenset({"error", "reason"})
"""The keys of a `sentences` answer held to the ears' forms rather than the blob heuristics."""
# A person's burst of commands (and the retained states replayed when the link connects)
# passes; a flood of one type is held to a few a second.
BURST = 10
EVERY_S = 0.5
# How far an event's time may be from the link's wall clock (the components share it): a day
# behind (the bus holds what the link had not read yet), a minute ahead (none is from later).
MAX_SKEW_MS = 24 * 3600 * 1000
MAX_AHEAD_MS = 60 * 1000
MAX_SPEECH_BEFORE_MS = 120 * 1000
# States whose time says nothing a consumer needs (nothing expires them: each supersedes the
# last): they leave with the link's time, not the sender's.
RESTAMPED = frozenset({"sentences", "battery", "voices"})
# What the recognisers emit: pendant.core.names.normalize's words, one space apart.
SPOKEN = re.compile(r"[a-z0-9']+(?: [a-z0-9']+)*")
# A slot value of the closed set is a name from the config (at most 60 characters).
MAX_SLOT_CHARS = 100
MAX_NUMBER = 999_999
ID_KEY_BYTES = 32
"""The link's key for the ids it issues (`reissue`)."""


def reissue(key: bytes, value: str) -> str:
    """The id the link issues for a sender's `id` or `session_id` (see the module's
    docstring): 32 hex, as the schema's, the same for the same value under the same key."""
    return hmac.new(key, value.encode(), hashlib.sha256).hexdigest()[:32]


def id_key(path: Path | None) -> bytes:
    """The link's key for the ids it issues, kept in `path` (beside the outbox; None: a new
    one for this run).

    Kept so that an event the bus delivers again after a restart of the link (it was in the
    outbox, not yet acknowledged on the bus) gets the id it got before, which the outbox and
    consumers drop as a duplicate. A file that cannot be read is replaced by a new key: ids
    issued before then may then arrive twice, nothing worse. 0600, like the outbox.
    """
    if path is not None:
        try:
            key = path.read_bytes()
            if len(key) == ID_KEY_BYTES:
                return key
            log.error("%s is not a key of %d bytes: making a new one", path, ID_KEY_BYTES)
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.error("cannot read %s (%s): making a new key", path, exc.strerror)
    key = secrets.token_bytes(ID_KEY_BYTES)
    if path is None:
        return key
    try:
        durable.write_file(path, key)
    except OSError as exc:
        log.error("cannot keep the link's id key in %s: %s", path, exc.strerror)
    return key


@cache
def _validator(event_type: str) -> jsonschema.Draft202012Validator:
    schema = json.loads((SCHEMA_DIR / f"{event_type}.json").read_text())
    return jsonschema.Draft202012Validator(schema)


def _strings(value: Any, key: str = "") -> list[tuple[str, str]]:
    if isinstance(value, str):
        return [(key, value)]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in _strings(v, k)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v, key)]
    return []


def _text_is_blob(data: dict[str, Any], own: frozenset[str] = frozenset()) -> bool:
    """`own`: the config's names as spelled and its entity ids, which pass as they are
    ("Café" and "sensor.shelly_plus_1pm_a8032ab12345_energy" are no encoded bytes): the link
    read them from its own config, and a slot naming one says no more than which one (the
    vocabulary check holds slots to them)."""
    texts = [s for k, s in _strings(data) if k not in ID_KEYS and s not in own]
    if any(BLOB.search(s) for s in texts):
        return True
    if data["type"] in FROM_OUTSIDE:
        return False
    if data["type"] == Sentences.model_fields["type"].default:
        # Why a set was refused and what will not work as meant are held to the forms the
        # ears produce instead (`pendant.link.gate_sentences`, in `admit`): a refusal quoting
        # hassil ("... ParseChunk(text='(party time])', start_index=0, ...") reads as odd
        # tokens, and a cut sentence ends in "…"; these are the ears' real answers.
        texts = [s for k, s in _strings(data) if k not in ID_KEYS | SENTENCES_FORMS]
    return any(not is_plain(s) or looks_like_blob(s) for s in texts)


def _numbers(value: Any, text: bool = True) -> bool:
    """Whether `value` holds a list of more than MAX_LIST_NUMBERS numbers, or (`text`) text with
    a run of eight numbers: the shape of an embedding or a score table, which no public event
    has. Text from outside (`FROM_OUTSIDE`: an answer may list temperatures) is not judged."""
    if isinstance(value, dict):
        return any(_numbers(v, text) for v in value.values())
    if isinstance(value, list):
        return _list_numbers(value) > MAX_LIST_NUMBERS or any(_numbers(v, text) for v in value)
    if isinstance(value, str) and text:
        return NUMBER_RUN.search(value + " ") is not None
    return False


def _list_numbers(value: list[Any]) -> int:
    """The numbers in `value` and in the lists inside it: a voiceprint cut into 32 lists of
    eight is still 256 numbers. Objects are not counted into it (a scene's labels each have a
    confidence; each object is judged on its own)."""
    return sum(
        _list_numbers(v) if isinstance(v, list) else 1
        for v in value
        if isinstance(v, list) or (isinstance(v, int | float) and not isinstance(v, bool))
    )


def _spoken_number(value: float) -> bool:
    # What number words say: under a million, to hundredths ("twenty point two five").
    return abs(value) <= MAX_NUMBER and round(value, 2) == value


def _off_source(event: Event, topic: str) -> str | None:
    """Why `event` cannot have come on bus topic `topic`, or None (see the module's
    docstring)."""
    eyes_intent = isinstance(event, Intent) and event.name in EYES_INTENTS
    if topic == bus.EYES_INTENT_TOPIC and not eyes_intent:
        return "not an eyes' intent on the eyes' topic"
    if eyes_intent and topic != bus.EYES_INTENT_TOPIC:
        return "an eyes' intent off the eyes' topic"
    if topic != bus.topic_of(event):
        return f"on {topic[:40]!r}"
    return None


def _rounded(event: Event, now_ms: int) -> Event:
    """`event` with its numbers as the ears round them, and its times as coarse as their use
    allows (see the module's docstring): the ms of a time are bits of the sender's choosing."""
    update: dict[str, Any] = {}
    if event.type in RESTAMPED:
        update["timestamp_ms"] = now_ms
    else:
        update["timestamp_ms"] = event.timestamp_ms // 1000 * 1000
    if isinstance(event, Intent) and event.speech_end_ms is not None:
        update["speech_end_ms"] = event.speech_end_ms // 10 * 10
    if isinstance(event, Intent | Transcript | NotRecognized):
        update["confidence"] = round(event.confidence, 3)
    if isinstance(event, Intent) and event.loudness_dbfs is not None:
        update["loudness_dbfs"] = round(event.loudness_dbfs, 1)
    if isinstance(event, Scene) and event.labels:
        update["labels"] = [
            label.model_copy(update={"score": round(label.score, 3)}) for label in event.labels
        ]
    changed = {k: v for k, v in update.items() if getattr(event, k) != v}
    return event.model_copy(update=changed) if changed else event


def _reissued(event: Event, key: bytes) -> Event:
    """`event` with the ids the link issues (see the module's docstring)."""
    update = {"id": reissue(key, event.id)}
    session_id = getattr(event, "session_id", None)
    if isinstance(session_id, str):
        update["session_id"] = reissue(key, session_id)
    return event.model_copy(update=update)


def _off_clock(event: Event, now_ms: int) -> str | None:
    """Why `event`'s times are not of now, or None (see the module's docstring)."""
    if isinstance(event, Mic | Camera):
        return None  # folded into the link's status: their times never leave
    if event.timestamp_ms > now_ms + MAX_AHEAD_MS:
        return "timestamp_ms in the future"
    if event.timestamp_ms < now_ms - MAX_SKEW_MS and event.type not in bus.RETAINED:
        return "timestamp_ms in the past"
    if isinstance(event, Intent) and event.speech_end_ms is not None:
        # The timestamp leaves rounded down to its second: the speech may end within it.
        made_ms = event.timestamp_ms // 1000 * 1000 + 999
        if event.speech_end_ms > made_ms:
            return "speech_end_ms after the intent"
        if event.speech_end_ms < made_ms - MAX_SPEECH_BEFORE_MS:
            return "speech_end_ms long before the intent"
    return None


def _off_vocabulary(event: Event, vocabulary: Vocabulary) -> str | None:
    """Why `event` says what its source cannot say, or None."""
    if isinstance(event, Transcript | NotRecognized):
        # NotRecognized.text: what press-to-talk heard, a closed-set sentence, or nothing.
        if event.text is None:
            return None
        if not SPOKEN.fullmatch(event.text):
            return f"{event.type} text form"
        if vocabulary.unknown(event.text):
            return f"{event.type} words"
        return None
    if not isinstance(event, Intent):
        return None
    if event.name in EYES_INTENTS:
        # The eyes name no device: an entity on their intent would be a channel of its own.
        if any(slot.entity_id is not None for slot in event.slots):
            return "eyes slot entity_id"
        return None
    if event.name not in vocabulary.intents:
        return "intent name"
    if not SPOKEN.fullmatch(event.text):
        return "intent text form"
    if vocabulary.unknown(event.text):
        return "intent words"
    for slot in event.slots:
        if isinstance(slot.value, int | float) and not _spoken_number(slot.value):
            return f"slot {slot.name[:20]!r} number"
        said = [slot.name, slot.entity, slot.raw_value]
        said += [slot.value] if isinstance(slot.value, str) else []
        if any(len(s) > MAX_SLOT_CHARS or vocabulary.unknown(s) for s in said):
            return f"slot {slot.name[:20]!r}"
        # Only the entity of the device the slot names: a rogue ears could otherwise say
        # "the bed light" with the front door lock's entity, past the tap locks wait for.
        if slot.entity_id is not None and not (
            isinstance(slot.value, str) and vocabulary.entity_of(slot.entity_id, slot.value)
        ):
            return f"slot {slot.name[:20]!r} entity_id"
    return None


class Gate:
    """Admits bus payloads that may leave the device; see the module's docstring."""

    def __init__(
        self,
        vocabulary: Vocabulary,
        device_id: str,
        burst: int = BURST,
        every_s: float = EVERY_S,
        clock: Callable[[], float] = time.monotonic,
        phone: PhoneSentences | None = None,
        wall_ms: Callable[[], int] = wire.now_ms,
        id_key: bytes | None = None,
    ) -> None:
        self.vocabulary = vocabulary
        self.device_id = device_id
        """This pendant's id: an event naming another is no event of this device's."""
        self.id_key = id_key if id_key is not None else secrets.token_bytes(ID_KEY_BYTES)
        """The key of the ids the link issues (`reissue`)."""
        self.wall_ms = wall_ms
        """The wall clock, Unix epoch ms, that events' times are held to."""
        self.phone = phone if phone is not None else PhoneSentences(None)
        """The sentences the phone sent, kept across restarts of the link."""
        for sets in self.phone.sent:
            vocabulary.learn(sets)
        self.dropped: Counter[str] = Counter()
        self.passed = 0
        self._buckets = {name: TokenBucket(burst, every_s, clock) for name in PUBLIC_NAMES}
        self.waited = 0
        """Events that had to wait for their turn."""
        self._limited: set[str] = set()
        """Types over their rate since the last one passed: logged once a flood, not per event."""
        self.unknown_sets = False
        """The ears answered with sets the phone never sent (as far as the link knows): each
        intent of those sets is then dropped as words outside the closed set."""

    def _drop(self, reason: str, detail: str = "") -> None:
        self.dropped[reason] += 1
        log.warning("gate dropped an event: %s%s", reason, f" ({detail})" if detail else "")

    def admit(self, payload: bytes, topic: str | None = None) -> Event | None:
        """The event in `payload`, read off bus topic `topic`, if it may leave the device, else
        None (counted in `dropped`).

        `topic` must be its type's: `pendant-bus/<type>`, or the eyes' intent topic for their
        intents (`bus.topic_of`). None: `pendant-bus/<type>` (the link's own, tests).
        """
        event = self._check(payload, topic)
        if event is None:
            return None
        if isinstance(event, Sentences):
            # The ears' answer teaches no word (see the module's docstring): it says only
            # what the ears say of the sets the phone sent (`pendant.link.gate_sentences`), and
            # which of them is in force, so that one stays kept.
            answer = held(event, self.phone, self.vocabulary)
            if answer is None:
                self._drop("sentences", "sets the phone did not send")
                # The ears run sets the link has no record of: its file was lost, or the
                # pendant was updated from before the link kept one (the link tells the phone).
                self.unknown_sets = self.unknown_sets or bool(event.sets)
                return None
            if answer != event:
                log.warning("gate: the ears' sentences answer said more than its forms hold")
            event = answer
            self.phone.confirm(event.sets)
        self.passed += 1
        return _reissued(_rounded(event, self.wall_ms()), self.id_key)

    def outside_id(self, value: str) -> str:
        """The id an event's `id` or `session_id` of `value` on the bus has outside."""
        return reissue(self.id_key, value)

    def admit_own(self, payload: bytes) -> Event | None:
        """An event of the link's own (an `error` it reports): judged as any other, but it
        came on no bus topic."""
        return self.admit(payload)

    def phone_sent(self, sets: list[SentenceSet]) -> None:
        """The phone sent these sentences (a `sentences` command the link forwards to the
        ears): their words and intent names may leave from now on."""
        self.vocabulary.learn(sets)
        self.phone.add(sets)

    async def turn(self, event_type: str) -> None:
        """Return when an event of `event_type` may leave: at once within its rate, else
        once its turn comes (see the module's docstring)."""
        bucket = self._buckets[event_type]
        if bucket.take():
            self._limited.discard(event_type)
            return
        self.waited += 1
        if event_type not in self._limited:
            self._limited.add(event_type)
            log.warning("gate: %s events over their rate; they wait their turn", event_type)
        while not bucket.take():
            await asyncio.sleep(bucket.wait_s())

    def _check(self, payload: bytes, topic: str | None) -> Event | None:
        if len(payload) > MAX_EVENT_BYTES:
            self._drop("oversized")
            return None
        try:
            data = json.loads(payload)
        except (ValueError, UnicodeDecodeError, RecursionError):
            # RecursionError: a few KiB of '[' nest deeper than the parser's stack.
            self._drop("not_json")
            return None
        # isinstance first: {"type": []} is unhashable and would raise in the set lookup.
        if not isinstance(data, dict) or not isinstance(data.get("type"), str):
            self._drop("not_public_type")
            return None
        if data["type"] not in PUBLIC_NAMES:
            self._drop("not_public_type")
            return None
        try:
            blob = _text_is_blob(data, self.vocabulary.own)
            numbers = not blob and _numbers(data, text=data["type"] not in FROM_OUTSIDE)
        except RecursionError:
            # Lists a few hundred deep parse, but the checks' recursion runs out first; no
            # event nests so (it raised out of the gate, a traceback for each such message).
            self._drop("not_json", "nested too deep")
            return None
        if blob:
            self._drop("blob", data["type"])
            return None
        if numbers:
            self._drop("numbers", data["type"])
            return None
        errors = list(_validator(data["type"]).iter_errors(data))
        if errors:
            self._drop("schema", data["type"])
            return None
        try:
            event = parse_event(payload)
        except EventError:
            self._drop("schema", data["type"])
            return None
        why = _off_source(event, topic if topic is not None else bus.topic(event.type))
        if why is None and event.device_id != self.device_id:
            # Not this device's: and 32 characters of the sender's choosing would leave as sent.
            why = "another device's id"
        if why is None and topic is not None and event.type in LINK_OWN:
            why = "the link's own, never from the bus"
        if why is not None:
            self._drop("source", f"{event.type}: {why}")
            return None
        why = _off_clock(event, self.wall_ms())
        if why is not None:
            self._drop("clock", f"{event.type}: {why}")
            return None
        why = _off_vocabulary(event, self.vocabulary)
        if why is not None:
            self._drop("vocabulary", f"{event.type}: {why}")
            return None
        return event
