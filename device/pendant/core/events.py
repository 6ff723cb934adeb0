"""The event vocabulary: small, typed, versioned JSON messages.

The same classes travel on the device-local bus and, after the link's schema gate, on the
outside broker. Each has a JSON Schema in `pendant/schemas/` (written by
`python -m pendant.core.events`, checked by a test) so a consumer can validate without our code.

Wire format: one JSON object with `type`, `version`, `id` (unique per event, so a consumer
can drop QoS 1 duplicates), `device_id`, `timestamp_ms` (Unix epoch, wall clock, for hubs
that pick one pendant among several) and the type's own fields. Never binary data.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from pendant.core import wire
from pendant.core.backends import RECOGNIZERS
from pendant.core.names import (
    ENTITY_ID_MAX_CHARS,
    ENTITY_ID_PATTERN,
    NAME_MAX_CHARS,
    NAME_PATTERN,
)

MAX_EVENT_BYTES = wire.MAX_EVENT_BYTES
SCHEMA_DIR = Path(__file__).parents[1] / "schemas"

Text = Annotated[str, Field(max_length=500, pattern=r"^[^\x00-\x08\x0b-\x1f\x7f]*$")]
ShortText = Annotated[str, Field(max_length=100, pattern=r"^[^\x00-\x1f\x7f]*$")]
IntentName = Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z0-9_]{0,63}$")]
DeviceId = Annotated[str, Field(pattern=wire.DEVICE_ID_PATTERN)]
# An event's id, a session's, a pairing request's: random, so a consumer can drop duplicates.
HexId = Annotated[str, Field(pattern=wire.HEX_ID_PATTERN)]
SayText = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]*$")]
# What `cmd/buzz` may ask the body to play (its patterns: pendant.body.feedback). Not "confirm":
# that one means "an action heard waits for your tap", and a tap after a buzz sent from outside
# would answer nothing, which would teach the wearer that the confirm buzz can lie.
BuzzPattern = Literal["understood", "not_understood", "attention"]
CommandName = Annotated[str, Field(pattern=r"^[a-z][a-z_]{0,31}$")]
# As config.Name: an area command carries one of home.areas, as the config spells it.
AreaName = Annotated[str, Field(min_length=1, max_length=NAME_MAX_CHARS, pattern=NAME_PATTERN)]
EntityId = Annotated[str, Field(max_length=ENTITY_ID_MAX_CHARS, pattern=ENTITY_ID_PATTERN)]
# Unix epoch ms, bounded (wire.EPOCH_MS_MAX): unbounded, 10**30 from a rogue service would
# crash the link's outbox, and a 4000-digit number is 1.6 KB of anything.
EpochMs = Annotated[int, Field(ge=0, le=wire.EPOCH_MS_MAX)]
# The ears' recognisers, from their table in core (as config.AsrConfig.backend), so the link
# need not import the ears.
AsrBackend = Literal[RECOGNIZERS.names]
MAX_SENTENCE_SETS = 20
MAX_SENTENCES = 20
# The intent names the eyes answer with: what the camera read or saw, words no closed set
# holds (the gate judges them as text, pendant.link.gate). They travel on a topic only the eyes may
# write (bus.topic_of), and the link takes these names from there alone. Not "WhatIsThis": that
# is the ears' question, which the eyes listen for.
READ_TEXT = "ReadText"
SEEN_OBJECTS = "SeenObjects"
EYES_INTENTS = frozenset({READ_TEXT, SEEN_OBJECTS})


class Event(BaseModel):
    """The envelope every event shares (`pendant.core.wire.ENVELOPE`, which the web server
    builds by hand with `wire.envelope`); each type adds its own fields."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: str
    version: Literal[1] = wire.VERSION
    id: HexId = Field(default_factory=wire.new_id)
    device_id: DeviceId
    timestamp_ms: EpochMs = Field(default_factory=wire.now_ms)

    registry: ClassVar[dict[str, type[Event]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        type_field = cls.model_fields.get("type")
        if type_field is not None and isinstance(type_field.default, str):
            Event.registry[type_field.default] = cls

    def to_json(self) -> bytes:
        """The event as it goes on the wire: compact JSON in UTF-8, its None fields left out."""
        return self.model_dump_json(exclude_none=True).encode()


class Slot(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: ShortText = Field(
        description="Slot name, e.g. 'area', 'name', 'minutes'; 'area_context' (value 'here') "
        "when the wearer meant the room they are in ('lights on in here'): 'area' is then the "
        "room last set on the command topic cmd/area (Home Assistant's room presence), else "
        "home.default_area, else absent."
    )
    # Text-long: the eyes' ReadText carries what the camera read; the gate holds the ears'
    # values to the config's names.
    value: Text | int | float = Field(description="Normalised value, e.g. 'Kitchen' or 5.")
    raw_value: ShortText = Field(
        description="The words that were said for it; empty for 'area_context' and for an "
        "'area' that came from the context, not from the words."
    )
    entity: ShortText = Field(
        description="Slot list it came from, e.g. 'area', 'number'; 'area_context' for "
        "area_context, whose 'here' is no area's name."
    )
    entity_id: EntityId | None = Field(
        None,
        description="The Home Assistant entity of the device the value names, when the "
        "config knows it (home.devices[].entity_id) and the name is that one device's.",
    )


class Intent(Event):
    """Something the wearer asked for, recognised on the device."""

    type: Literal["intent"] = "intent"
    name: IntentName = Field(description="hassil / Home Assistant intent name, e.g. HassTurnOn.")
    text: Text = Field(description="The sentence recognised, lowercase words.")
    confidence: Annotated[float, Field(ge=0, le=1)]
    slots: Annotated[list[Slot], Field(max_length=16)] = Field(default_factory=list)
    session_id: HexId = Field(default_factory=wire.new_id)
    loudness_dbfs: Annotated[float, Field(ge=-120, le=0)] | None = Field(
        None, description="Speech level, for a hub choosing between pendants."
    )
    speech_end_ms: EpochMs | None = Field(
        None, description="Wall-clock time the speech ended, Unix epoch ms."
    )


class NotRecognized(Event):
    """Speech came in but matched nothing well enough. Carries no text in conversation mode."""

    type: Literal["not_recognized"] = "not_recognized"
    text: Text | None = Field(None, description="Only in press-to-talk mode, where it was meant.")
    confidence: Annotated[float, Field(ge=0, le=1)] = 0.0
    session_id: HexId = Field(default_factory=wire.new_id)
    reason: Literal["not_your_voice"] | None = Field(
        None,
        description="Held talk refused before it was heard: 'not_your_voice' when speaker.check "
        "is 'always' and the voice is none of the enrolled ones (no text, no score then).",
    )


class Transcript(Event):
    """The words recognised for an utterance that became an intent."""

    type: Literal["transcript"] = "transcript"
    text: Text
    confidence: Annotated[float, Field(ge=0, le=1)]
    session_id: HexId = Field(default_factory=wire.new_id)


# What the ears are doing, as `Mic` says on the bus and `Status` outside.
EarsState = Literal["starting", "ready", "listening", "muted", "stopping"]


class Mic(Event):
    """Internal, retained on the bus: the ears' part of the device's status, the mic's mute
    state as they enforce it and what they are doing. The body's LED follows it; the link
    folds it with the eyes' `Camera` and the body's `Battery` into the one `Status` it
    publishes outside (`pendant.link.status`)."""

    type: Literal["mic"] = "mic"
    state: EarsState
    muted: bool = False
    asr_backend: AsrBackend | None = None


class Status(Event):
    """What the whole pendant is doing; retained on the outside broker. Made by the link alone
    from what the ears (`Mic`), the eyes (`Camera`) and the body (`Battery`) report: never on
    the bus."""

    type: Literal["status"] = "status"
    state: EarsState
    mic_muted: bool = False
    camera_muted: bool = False
    asr_backend: AsrBackend | None = None
    battery_pct: Annotated[int, Field(ge=0, le=100)] | None = None


class Button(Event):
    """The pendant's button; press-to-talk opens an utterance on press, closes it on release."""

    type: Literal["button"] = "button"
    action: Literal["press", "release", "cancel", "tap"] = Field(
        description="cancel: released, but what was held is no talk (a tap, the mute gesture); "
        "tap: after a short press's cancel, the wearer's 'yes' to an action that waits."
    )


class Battery(Event):
    """The battery gauge (body), on change and every few minutes; `low` once under the limit."""

    type: Literal["battery"] = "battery"
    pct: Annotated[int, Field(ge=0, le=100)]
    charging: bool = False
    low: bool = Field(False, description="Under the configured low-battery level.")


class Label(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: ShortText = Field(description="What the detector saw, e.g. 'cup'.")
    score: Annotated[float, Field(ge=0, le=1)]


class Scene(Event):
    """What the eyes made of one frame. Never pixels, never a face region: only a face count."""

    type: Literal["scene"] = "scene"
    trigger: Literal["capture", "read_this", "what_is_this", "button"] = Field(
        description="What asked for the frame: a phone's capture command, a spoken request, "
        "a double press."
    )
    face_count: Annotated[int, Field(ge=0, le=100)] = 0
    text: Text | None = Field(None, description="Text read by OCR, lines joined by newlines.")
    labels: Annotated[list[Label], Field(max_length=20)] = Field(default_factory=list)
    session_id: HexId = Field(
        default_factory=wire.new_id, description="The spoken intent's session, when one asked."
    )


class Camera(Event):
    """The camera's mute state as the eyes enforce it (a hardware switch wins)."""

    type: Literal["camera"] = "camera"
    muted: bool
    hardware_muted: bool = False


class Activity(Event):
    """Internal: a sensor is capturing, or its capture is being processed. Drives the LED.

    Published by the capture code itself (the audio source, the camera grab), so the LED
    cannot say idle while a sensor is open.
    """

    type: Literal["activity"] = "activity"
    sensor: Literal["mic", "camera"]
    state: Literal["idle", "capturing", "thinking", "confirm"] = Field(
        description="confirm: the mic is open and an action heard waits for the wearer's tap."
    )


class HardwareMute(Event):
    """Internal, retained on the bus: the physical privacy switch. It wins over software."""

    type: Literal["hardware_mute"] = "hardware_mute"
    mic: bool
    camera: bool


# Where the link stands with the home broker (`LinkState`), as the body's LED says it.
OutsideState = Literal["connecting", "connected", "no_network", "no_broker"]


class LinkState(Event):
    """Internal, retained on the bus: whether the link reaches the home broker, and if not,
    whether the network or the broker is at fault. Drives the LED ("no Wi-Fi", "no broker",
    "ready"); the link publishes it (only the link may write it), the body reads it. The
    gate never lets it out: the outside learns the same from the link's availability.
    """

    type: Literal["link_state"] = "link_state"
    state: OutsideState = Field(
        description="connecting: the link started and has no answer yet; no_network: no "
        "route to the broker or its name did not resolve; no_broker: the network is there "
        "but the broker refused, did not answer, or its TLS or the login failed."
    )


PhoneUser = Annotated[str, Field(pattern=wire.PHONE_USER_PATTERN)]
# The pairing link's fragment (wire.FRAGMENT_PATTERN).
LinkFragment = Annotated[
    str, Field(min_length=1, max_length=wire.FRAGMENT_MAX_CHARS, pattern=wire.FRAGMENT_PATTERN)
]


class PairingWindow(Event):
    """Internal: the wearer asks to open (or, holding again, close) the pairing window.

    Published by the body on the very long hold; acted on by the pairing service alone.
    """

    type: Literal["pairing_window"] = "pairing_window"
    open: bool


# Names one phone's request at /pair (random, made by the web server), never its address.
RequestId = HexId


class PairingStatus(Event):
    """Internal, retained: whether the pairing window is open, as the pairing service says.

    Drives the LED (and the buzz that says a phone asks). Carries the one-time account's name
    (no secret) while it is open.
    """

    type: Literal["pairing_status"] = "pairing_status"
    open: bool
    user: PhoneUser | None = None
    until_ms: EpochMs | None = Field(
        None, description="When an offer nobody takes expires, Unix epoch ms."
    )
    asked: bool = Field(
        False,
        description="A phone asks to pair: pressing the button as many times as that phone's "
        "screen says accepts it. The codes are never here: the LED must not tell them.",
    )
    accepted: bool = Field(False, description="The wearer accepted a phone that asked.")


# Codes a phone may be given at /pair: as many requests as codes may be open at once.
PAIRING_CODES = 4
# A burst longer than this is reported as this many (it matches no code all the same).
MAX_PAIRING_PRESSES = 20


class PairingRequest(Event):
    """Internal: a phone opened /pair while the window is open (the web server, once a phone).

    The web server gives each request a code (distinct among the window's requests), which
    only that phone's page shows: the wearer accepts a phone by pressing the button that many
    times (`PairingConfirm`). A press count that matches no request refuses them all.
    """

    type: Literal["pairing_request"] = "pairing_request"
    user: PhoneUser = Field(description="The offer's account the phone asks for.")
    requester: RequestId
    code: Annotated[int, Field(ge=1, le=PAIRING_CODES)] = Field(
        description="How many presses accept this phone (its page shows it; nothing else does)."
    )


class PairingConfirm(Event):
    """Internal: the wearer pressed the button `presses` times in a row (a burst of short
    presses, ended by a pause) while the pairing window is open: the code of the phone to
    accept. 0: a burst that went wrong (a press held too long), which accepts no one."""

    type: Literal["pairing_confirm"] = "pairing_confirm"
    presses: Annotated[int, Field(ge=0, le=MAX_PAIRING_PRESSES)]


class PairingOffer(Event):
    """Internal, retained, secret: the pairing link's login, while the window is open.

    Only the pairing service may write it and only the web server may read it (the broker's
    ACL); it is cleared (an empty retained message) when taken or expired. Never public.
    Published again with `requester` once the wearer accepted a phone.
    """

    type: Literal["pairing_offer"] = "pairing_offer"
    user: PhoneUser
    fragment: LinkFragment = Field(description="The pairing link after '#': the phone's login.")
    expires_ms: EpochMs = Field(description="Unix epoch ms.")
    requester: RequestId | None = Field(
        None,
        description="The one phone the wearer accepted: the web server hands the login to it "
        "alone, and to no one while this is absent.",
    )


class PairingTaken(Event):
    """Internal: the web server handed the offer to a phone; it must not be handed out again."""

    type: Literal["pairing_taken"] = "pairing_taken"
    user: PhoneUser


Sentence = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]*$")]
WearerIntent = Annotated[str, Field(pattern=r"^[A-Z][A-Za-z0-9]{0,47}$")]
MAX_SENTENCE_WARNINGS = 10


class SentenceSet(BaseModel):
    """One of the wearer's own intents and the hassil templates that say it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    intent: WearerIntent = Field(
        description="Intent name published for these sentences, e.g. 'PartyMode'."
    )
    sentences: Annotated[list[Sentence], Field(min_length=1, max_length=MAX_SENTENCES)] = Field(
        description='hassil templates, e.g. "[it\'s] party time".'
    )


class SentenceWarning(BaseModel):
    """A template the ears took that cannot be heard, or not as the wearer's intent."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    intent: WearerIntent = Field(description="The wearer's intent the template is for.")
    sentence: Sentence = Field(description="The template, as the phone sent it.")
    reason: ShortText = Field(
        description="One line, e.g. \"'turn on the kitchen lights' is heard as HassTurnOn\"."
    )


class Sentences(Event):
    """The custom sentences the phone set, as the ears run them; retained outside.

    Sent at start and after every `sentences` command: `accepted` false and `error` say why a
    set was refused, and `sets` are then the ones still in force. `warnings` name templates
    of `sets` that will not work as meant (pendant.ears.sentence_check); they never
    refuse a set.
    """

    type: Literal["sentences"] = "sentences"
    sets: Annotated[list[SentenceSet], Field(max_length=MAX_SENTENCE_SETS)] = Field(
        default_factory=list
    )
    accepted: bool = True
    error: Text | None = None
    warnings: Annotated[list[SentenceWarning], Field(max_length=MAX_SENTENCE_WARNINGS)] = Field(
        default_factory=list,
        description="At most one a template, at most 10: the templates of `sets` that cannot "
        "be heard or are heard as another intent.",
    )


VOICE_NAME_PATTERN = r"^[A-Za-z][A-Za-z0-9 _'-]{0,31}$"
VoiceName = Annotated[str, Field(min_length=1, max_length=32, pattern=VOICE_NAME_PATTERN)]
# enrol NAME: the next ENROL_UTTERANCES utterances are NAME's; done: keep what was heard so far
# (at least ENROL_MIN_UTTERANCES); cancel: keep nothing; forget NAME; forget_all.
VoiceAction = Literal["enrol", "done", "cancel", "forget", "forget_all"]
SpeakerCheck = Literal["off", "conversation", "always"]
MAX_VOICES = 8
ENROL_UTTERANCES = 5
ENROL_MIN_UTTERANCES = 3
# Why an enrolment or a forget did not happen (or not yet: `tap_to_confirm` while it waits for
# the wearer's tap on the pendant): codes, never free text (the ears could say anything in free
# text), which the phone words itself.
VoiceProblem = Literal[
    "too_little_speech",
    "not_one_voice",
    "too_many_voices",
    "unknown_voice",
    "not_saved",
    "unreadable",
    "timeout",
    "no_encoder",
    "tap_to_confirm",
    "not_confirmed",
]


class Voices(Event):
    """The voices enrolled on the device for `speaker.check`, by name only; retained outside.

    Sent by the ears at start, after every `voice` command and during an enrolment (one per
    utterance taken). Never a voiceprint, a score or a count of anything but utterances: the
    voiceprints stay in the ears' state directory (pendant.ears.speaker.store).
    """

    type: Literal["voices"] = "voices"
    names: Annotated[list[VoiceName], Field(max_length=MAX_VOICES)] = Field(
        default_factory=list, description="The enrolled voices' names, sorted."
    )
    check: SpeakerCheck = Field(description="speaker.check, as configured.")
    in_force: bool = Field(
        description="Whether utterances are checked now: speaker.check is not 'off' and at "
        "least one voice is enrolled (until then everyone's commands are heard)."
    )
    enrolling: VoiceName | None = Field(
        None, description="The voice being enrolled: its next utterances are not acted on."
    )
    heard: Annotated[int, Field(ge=0, le=ENROL_UTTERANCES)] = Field(
        0, description="Utterances taken so far for `enrolling`."
    )
    needed: Literal[5] = ENROL_UTTERANCES
    problem: VoiceProblem | None = Field(
        None, description="Why the last enrolment or forget did not happen."
    )
    left_out: Annotated[int, Field(ge=0, le=ENROL_UTTERANCES)] = Field(
        0,
        description="Utterances of the enrolment just kept that were left out, as unlike the "
        "others (another voice, or too noisy): the voice was kept from the rest. Said once, "
        "in the event that ends the enrolment.",
    )


class Command(Event):
    """A command from the phone, checked by the link (`pendant.link.commands`), for the bus only.

    Travels on `pendant-bus/cmd/<name>`; components that act on it subscribe there.
    """

    type: Literal["command"] = "command"
    name: Literal["mute", "capture", "identify", "say", "buzz", "sentences", "area", "voice"]
    mic: bool | None = Field(None, description="mute: mute (true) or unmute (false) the mic.")
    camera: bool | None = Field(None, description="mute: mute or unmute the camera.")
    text: SayText | None = Field(None, description="say: what to say, at most 200 characters.")
    pattern: BuzzPattern | None = Field(
        None, description="buzz: which feedback the body plays; absent: attention."
    )
    sentences: Annotated[list[SentenceSet], Field(max_length=MAX_SENTENCE_SETS)] | None = Field(
        None, description="sentences: the wearer's own intents, replacing the phone's last set."
    )
    area: AreaName | None = Field(
        None,
        description="area: the room the wearer is in, one of home.areas as the config spells "
        "it, for sentences about 'here'; absent (null) clears it.",
    )
    session_id: HexId | None = Field(
        None,
        description="buzz: the question (`ask`) whose outcome it is, on the link's own buzz "
        "after an answer; the body's 'asking' light ends only for that question. Never "
        "from a phone.",
    )
    action: VoiceAction | None = Field(
        None,
        description="voice: 'enrol' (with voice: its next five utterances are that voice's), "
        "'done' (keep what was heard), 'cancel', 'forget' (with voice), 'forget_all'.",
    )
    voice: VoiceName | None = Field(None, description="voice: the voice's name.")

    ARGUMENTS: ClassVar[dict[str, tuple[frozenset[str], frozenset[str]]]] = {
        # name: (allowed, required)
        "mute": (frozenset({"mic", "camera"}), frozenset()),
        "capture": (frozenset(), frozenset()),
        "identify": (frozenset(), frozenset()),
        "say": (frozenset({"text"}), frozenset({"text"})),
        "buzz": (frozenset({"pattern"}), frozenset()),
        "sentences": (frozenset({"sentences"}), frozenset({"sentences"})),
        # Its one key may be null (clear), so "given" cannot be told from "absent" here.
        "area": (frozenset({"area"}), frozenset()),
        "voice": (frozenset({"action", "voice"}), frozenset({"action"})),
    }

    @model_validator(mode="after")
    def _arguments_fit_the_command(self) -> Command:
        allowed, required = self.ARGUMENTS[self.name]
        keys = ("mic", "camera", "text", "pattern", "sentences", "area", "action", "voice")
        given = {k for k in keys if getattr(self, k) is not None}
        if given - allowed or required - given:
            raise ValueError(f"{self.name} takes {sorted(allowed) or 'no arguments'}")
        if self.name == "mute" and not given:
            raise ValueError("mute needs mic and/or camera")
        if self.session_id is not None and self.name != "buzz":
            raise ValueError(f"{self.name} takes no session_id")
        if self.name == "voice" and (self.action in ("enrol", "forget")) != (
            self.voice is not None
        ):
            raise ValueError("voice: enrol and forget take a voice, the other actions none")
        return self


class Say(Event):
    """Words for the wearer's phone to speak: an accepted `say` command, passed on by the link.

    The link makes it from the command it checked (`pendant.link.commands`) and publishes it only
    where phones read (`pendant/<device_id>/say`); no component publishes one, and the gate
    takes none off the bus (`pendant.link.gate`). The body buzzes for the same command on the bus.
    """

    type: Literal["say"] = "say"
    text: SayText = Field(description="What to say, as the command carried it.")


AskText = Annotated[str, Field(min_length=1, max_length=300, pattern=r"^[^\x00-\x1f\x7f]*$")]
AnswerText = Annotated[str, Field(max_length=500, pattern=r"^[^\x00-\x08\x0b-\x1f\x7f]*$")]
AskTarget = Literal["home_assistant", "openai"]
AnswerOutcome = Literal["answered", "acted", "no_answer", "refused", "failed"]


class Ask(Event):
    """Internal: words the closed set has no sentence for, transcribed on the device, for the
    link to ask a bigger model (`escalate.enabled`). Text only, never audio.

    The ears publish it on `pendant-bus/ask`, which only they may write; the link alone sends
    it on, to the one target the wearer configured, and publishes the reply as an `Answer`.
    """

    type: Literal["ask"] = "ask"
    text: AskText = Field(description="What the wearer asked, as the recogniser wrote it.")
    session_id: HexId = Field(default_factory=wire.new_id)


class Answer(Event):
    """What a bigger model answered a request the closed set could not hear: the link's own.

    Published on `pendant/<device_id>/answer` for the phones to speak (and mirrored on Hermes'
    `hermes/tts/say`); it carries the question as it was sent, so the app shows exactly what
    left the device. An answer that acted (a tool call the link published as an intent, or
    Home Assistant's own action) says `acted`.
    """

    type: Literal["answer"] = "answer"
    question: AskText = Field(description="The question as it was sent.")
    context: AnswerText | None = Field(
        None,
        description="What the camera had just read and seen, sent with the question (a scene "
        "of the last minute); with `question` and `area`, all that was sent.",
    )
    area: AreaName | None = Field(
        None,
        description="The room the question was asked in: to a chat server, the room sent "
        "with it (the link's cmd/area, else home.default_area); to Home Assistant, the "
        "pendant's area there, which it resolves 'here' and 'the lights' with.",
    )
    text: AnswerText = Field(description="The reply to speak; empty when there is none.")
    outcome: AnswerOutcome = Field(
        description="answered; acted (something was done); no_answer (timeout or nothing "
        "said); refused (the target said no); failed (unreachable or a reply not understood)."
    )
    target: AskTarget = Field(description="Who was asked: the one the wearer configured.")
    session_id: HexId = Field(default_factory=wire.new_id)


class Error(Event):
    """Something the pendant could not do, e.g. a malformed command from the phone."""

    type: Literal["error"] = "error"
    command: CommandName | None = Field(
        None, description="The command it is about, when its name is a plausible one."
    )
    reason: ShortText = Field(description="Short and human; quotes at most 40 input chars.")


PUBLIC_TYPES: tuple[type[Event], ...] = (
    Intent,
    NotRecognized,
    Transcript,
    Status,
    Mic,
    Error,
    Battery,
    Scene,
    Camera,
    Sentences,
    Say,
    Answer,
    Voices,
)
PUBLIC_NAMES = frozenset(cls.model_fields["type"].default for cls in PUBLIC_TYPES)
"""The type names of the events the link's gate admits: those that leave the device, and the
parts (`Mic`, `Camera`, `Battery`) it folds into the `Status` it publishes."""


class EventError(ValueError):
    """An event `parse_event` refuses: too long, not JSON, of no known type, or with a field that
    does not validate. The message is one line."""

    pass


def parse_event(payload: bytes | str) -> Event:
    """Bytes off the bus to a typed event; EventError with one line on anything else."""
    if len(payload) > MAX_EVENT_BYTES:
        raise EventError(f"event of {len(payload)} bytes is over {MAX_EVENT_BYTES}")
    try:
        data = json.loads(payload)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        # RecursionError: a few KiB of '[' nest deeper than the parser's stack.
        raise EventError(f"event is not JSON: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("type"), str):
        raise EventError("event is not an object with a string 'type'")
    cls = Event.registry.get(data["type"])
    if cls is None:
        raise EventError(f"unknown event type {data['type'][:40]!r}")
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        raise EventError(f"{data['type']} event: {loc}: {err['msg']}") from None


def json_schema(cls: type[Event]) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of the event type `cls`, its `$id` included: what
    `write_schemas` writes for it."""
    schema = cls.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = f"https://pendant.invalid/schemas/{cls.model_fields['type'].default}.json"
    return schema


def write_schemas(directory: Path = SCHEMA_DIR) -> list[Path]:
    """Writes `<type>.json`, the schema of every event type (public, internal, pairing), into
    `directory` (made if missing), replacing what is there; returns the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    internal = (Button, Command, Activity, HardwareMute, LinkState, Ask)
    pairing = (
        PairingWindow,
        PairingStatus,
        PairingOffer,
        PairingTaken,
        PairingRequest,
        PairingConfirm,
    )
    for cls in (*PUBLIC_TYPES, *internal, *pairing):
        path = directory / f"{cls.model_fields['type'].default}.json"
        path.write_text(json.dumps(json_schema(cls), indent=2, sort_keys=True) + "\n")
        written.append(path)
    return written


if __name__ == "__main__":
    for p in write_schemas():
        print(p)
