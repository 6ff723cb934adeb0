"""What the schema gate lets out: words of the closed set, bounded text without blobs, a
rate per event type (issue 14, item 11)."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import logging
import os
import random
import stat
import time
import typing
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from pendant.core import bus
from pendant.core.config import Config
from pendant.core.events import (
    READ_TEXT,
    Intent,
    NotRecognized,
    Scene,
    Sentences,
    SentenceSet,
    Slot,
    Status,
    Transcript,
)
from pendant.core.vocabulary import PHONE_SENTENCES_KEPT, PhoneSentences, Vocabulary
from pendant.ears.understand.grammar import Grammar
from pendant.ears.understand.nlu import IntentParser
from pendant.link.blobs import looks_like_blob
from pendant.link.gate import Gate
from pendant.link.gate_sentences import GENERIC_ERROR
from tests.conftest import demo_config
from tests.support.fuzz import examples

DEVICE = "pendant-demo"
B64_47 = (
    "UklGRiQAAABXQVZFZm10IBAAAAABAAEAgD4AAAB9AAACABAAZGF0YQAAAAAxMjM0NTY3ODkwYWJjZGVmZ2hp"
    "amtsbW5vcHFyc3R1dnd4eXpBQkNERUZHSElKS0xNTk9QUVJTVFVWV1hZWg=="
)


def spaced(blob: str, every: int) -> str:
    return " ".join(blob[i : i + every] for i in range(0, len(blob), every))


def gate(config: Config | None = None, clock: list[float] | None = None) -> Gate:
    now = clock if clock is not None else [0.0]
    return Gate(
        Vocabulary.of(config or demo_config()),
        (config or demo_config()).device_id,
        clock=lambda: now[0],
    )


def intent(text: str = "turn on the kitchen lights", **kw: object) -> bytes:
    base: dict[str, object] = {
        "device_id": DEVICE,
        "name": "HassTurnOn",
        "text": text,
        "confidence": 0.9,
        "slots": [Slot(name="area", value="Kitchen", raw_value="kitchen", entity="area")],
    }
    return Intent(**(base | kw)).to_json()  # type: ignore[arg-type]


def raw_intent(**fields: object) -> bytes:
    """An intent as JSON, past what the event classes would build (as a rogue publisher)."""
    data = json.loads(intent())
    data.update(fields)
    return json.dumps(data).encode()


def scene(text: str) -> bytes:
    return Scene(device_id=DEVICE, trigger="read_this", text=text).to_json()


def test_the_closed_set_passes() -> None:
    g = gate()
    assert g.admit(intent()) is not None
    slots = [Slot(name="name", value="Bed Light", raw_value="bed light", entity="name")]
    assert g.admit(intent("turn on the bed light", slots=slots)) is not None
    here = Slot(name="area_context", value="here", raw_value="", entity="area_context")
    assert g.admit(intent("turn on the lights in here", slots=[here])) is not None
    domain = Slot(name="domain", value="media_player", raw_value="", entity="domain")
    assert g.admit(intent("pause the tv", name="HassMediaPause", slots=[domain])) is not None
    minutes = Slot(name="minutes", value=5, raw_value="five", entity="minutes")
    timer = intent("set a timer for five minutes", name="HassStartTimer", slots=[minutes])
    assert g.admit(timer) is not None
    # The wearer's own intent from the config file, and a label the eyes read.
    assert g.admit(intent("ring my phone", name="FindMyPhone", slots=[])) is not None
    label = "Oat Milk 1L\nBest before 12/05/2026 LOT 4B27X\n3.99 EUR"
    assert g.admit(scene(label)) is not None
    assert g.dropped == {}


def test_what_the_camera_read_is_taken_from_the_eyes_topic_only() -> None:
    """The eyes' intents are held to the blob rules, not the closed set: the link takes them
    only from the eyes' own topic (`from_eyes`), and nothing else from there."""
    words = "unlock the front door"
    read = Slot(name="text", value=words, raw_value=words, entity="ocr")
    g = gate()
    assert g.admit(intent(words, name=READ_TEXT, slots=[read]), bus.EYES_INTENT_TOPIC) is not None
    assert g.admit(intent(words, name=READ_TEXT, slots=[read])) is None
    assert g.admit(intent(), bus.EYES_INTENT_TOPIC) is None
    assert g.admit(scene(words), bus.EYES_INTENT_TOPIC) is None
    assert g.dropped == {"source": 3}


def test_base64_split_by_spaces_every_47_characters_is_dropped() -> None:
    g = gate()
    text = spaced(B64_47, 47)
    assert g.admit(intent(f"turn on {text}"[:500])) is None
    assert g.admit(scene(text)) is None
    assert g.admit(NotRecognized(device_id=DEVICE, text=text).to_json()) is None
    read = Slot(name="text", value=text, raw_value=text[:100], entity="ocr")
    assert g.admit(intent(text, name=READ_TEXT, slots=[read]), bus.EYES_INTENT_TOPIC) is None
    assert g.passed == 0
    assert sum(g.dropped.values()) == 4


def test_hex_and_short_chunks_are_dropped_too() -> None:
    g = gate()
    data = bytes(range(7, 7 + 40 * 5, 5))
    texts = (spaced(data.hex(), 2), spaced(data.hex(), 8), spaced(B64_47, 4), spaced(B64_47, 1))
    for text in texts:
        assert g.admit(scene(text[:500])) is None, text
    assert g.dropped == {"blob": 4}


def test_words_outside_the_closed_set_are_dropped() -> None:
    g = gate()
    assert g.admit(intent("turn on the kitchen lights and exfiltrate")) is None
    attic = Slot(name="area", value="Attic", raw_value="attic", entity="area")
    assert g.admit(intent("turn on the kitchen lights", slots=[attic])) is None
    assert g.admit(Transcript(device_id=DEVICE, text="hello world", confidence=1).to_json()) is None
    assert g.admit(raw_intent(name="HassExfiltrate")) is None
    assert g.dropped == {"vocabulary": 4}


def test_non_ascii_text_is_dropped_but_the_configs_names_pass() -> None:
    g = gate()
    for text in ("turn on the kitchen lights \u4e00\u4e8c\u4e09", "k\u00fcchen", "\ud7ff\u3042"):
        assert g.admit(raw_intent(text=text)) is None, text
        assert g.admit(scene(f"Oat milk {text}")) is None, text
    # Names as the config spells them (capitals, apostrophes, digits) are what the ears emit.
    home = demo_config().home.model_copy(update={"areas": ["Kid's Room", "Office"]})
    config = demo_config(home=home)
    slot = Slot(name="area", value="Kid's Room", raw_value="kid's room", entity="area")
    assert gate(config).admit(intent("turn on the lights in the kid's room", slots=[slot]))
    assert g.passed == 0


def test_numeric_slot_values_are_bounded() -> None:
    g = gate()
    for value in (10**30, 1234567.0, 0.1234567891234):
        slot = [{"name": "minutes", "value": value, "raw_value": "five", "entity": "minutes"}]
        assert g.admit(raw_intent(text="set a timer for five minutes", slots=slot)) is None
    assert g.dropped == {"vocabulary": 3}


def test_the_phones_words_come_from_what_the_phone_sent_not_from_the_ears_answer() -> None:
    """A rogue ears answering with sentences the phone never sent widens nothing: the gate
    learns the phone's words from its `sentences` command (`Gate.phone_sent`, as the link
    forwards it)."""
    g = gate()
    party = intent("disco time now", name="PartyMode", slots=[])
    assert g.admit(party) is None
    sets = [SentenceSet(intent="PartyMode", sentences=["(disco | party) time [now]"])]
    # The answer teaches no word, and does not go out: the phone never sent these sets.
    answer = Sentences(device_id=DEVICE, sets=sets).to_json()
    assert g.admit(answer) is None
    assert g.admit(party) is None
    said = NotRecognized(device_id=DEVICE, text="disco time").to_json()
    assert g.admit(said) is None
    assert g.dropped == {"vocabulary": 3, "sentences": 1}
    g.phone_sent(sets)
    assert g.admit(party) is not None
    assert g.admit(said) is not None
    assert g.admit(answer) is not None


def test_what_press_to_talk_heard_is_held_to_the_closed_set() -> None:
    """`not_recognized` carries what the recogniser heard, always a sentence of the closed set;
    plain words outside it (no blob) are the ears saying what they like, and are dropped."""
    g = gate()
    for text in ("meet me by the old mill at nine", "turn on the kitchen lights tonight"):
        assert g.admit(NotRecognized(device_id=DEVICE, text=text).to_json()) is None, text
    assert g.dropped == {"vocabulary": 2}
    for text in ("turn on the kitchen lights", "ring my phone", None):
        assert g.admit(NotRecognized(device_id=DEVICE, text=text).to_json()) is not None, text


def test_the_phones_sentences_are_kept_for_a_restarted_link(tmp_path: Path) -> None:
    """The ears run the phone's set across a restart of the link, so the link keeps what the
    phone sent; the set the ears say is in force stays kept however many refused ones follow."""
    path = tmp_path / "phone_sentences.json"
    party = [SentenceSet(intent="PartyMode", sentences=["party time"])]
    first = Gate(Vocabulary.of(demo_config()), demo_config().device_id, phone=PhoneSentences(path))
    first.phone_sent(party)
    refused = [
        [SentenceSet(intent=f"Refused{n}", sentences=[f"refused {n} ("])]
        for n in range(PHONE_SENTENCES_KEPT)
    ]
    for sets in refused:
        first.phone_sent(sets)
        # The ears' answer to each: refused, the party set still in force.
        assert first.admit(Sentences(device_id=DEVICE, sets=party, accepted=False).to_json())
        assert first.phone.sent[0] == tuple(party)
    again = Gate(Vocabulary.of(demo_config()), demo_config().device_id, phone=PhoneSentences(path))
    assert again.admit(intent("party time", name="PartyMode", slots=[])) is not None
    # The phone's last ones, and apart from them the one the ears run.
    assert len(again.phone.sent) == PHONE_SENTENCES_KEPT + 1
    # A file that cannot be read loses the phone's words, nothing else.
    path.write_text("{not json")
    broken = Gate(Vocabulary.of(demo_config()), demo_config().device_id, phone=PhoneSentences(path))
    assert broken.phone.sent == []
    assert broken.admit(intent()) is not None


def test_sets_sent_quickly_do_not_push_out_the_one_the_ears_run(tmp_path: Path) -> None:
    """Review L5: the link kept the phone's last 8 sets only, so nine sent before the ears
    answered the first pushed out the set the ears still run: their answer naming it was
    dropped, and a restarted link no longer knew its words."""
    path = tmp_path / "phone_sentences.json"
    party = [SentenceSet(intent="PartyMode", sentences=["party time"])]
    g = Gate(Vocabulary.of(demo_config()), demo_config().device_id, phone=PhoneSentences(path))
    g.phone_sent(party)
    assert g.admit(Sentences(device_id=DEVICE, sets=party).to_json())  # the ears run it
    for n in range(PHONE_SENTENCES_KEPT + 1):  # faster than the ears answer
        g.phone_sent([SentenceSet(intent=f"Quick{n}", sentences=[f"quick {n}"])])
    # The ears refused the last one (say), the party set still in force.
    answer = Sentences(device_id=DEVICE, sets=party, accepted=False, error=GENERIC_ERROR)
    assert g.admit(answer.to_json()) is not None
    assert g.dropped == {}
    again = Gate(Vocabulary.of(demo_config()), demo_config().device_id, phone=PhoneSentences(path))
    assert again.phone.running == tuple(party)
    assert again.admit(intent("party time", name="PartyMode", slots=[])) is not None
    assert again.admit(answer.to_json()) is not None
    # The phone's recent ones are kept as before.
    assert len(again.phone.recent) == PHONE_SENTENCES_KEPT


def test_a_phone_sentences_file_of_the_old_form_still_reads(tmp_path: Path) -> None:
    path = tmp_path / "phone_sentences.json"
    party = [SentenceSet(intent="PartyMode", sentences=["party time"])]
    path.write_text(json.dumps([[s.model_dump() for s in party]]))
    assert PhoneSentences(path).sent == [tuple(party)]


def test_a_4kb_slot_value_is_dropped() -> None:
    g = gate()
    huge = [{"name": "area", "value": "kitchen " * 512, "raw_value": "kitchen", "entity": "area"}]
    assert len(json.dumps(huge)) > 4096
    assert g.admit(raw_intent(slots=huge)) is None
    assert g.passed == 0


def test_events_over_their_rate_wait_their_turn_and_none_is_lost() -> None:
    """Intents spoken while the link was away arrive together once it is back; each was
    acknowledged to the ears, so the rate paces them and drops none (a drop lost them)."""
    now = [0.0]
    g = Gate(
        Vocabulary.of(demo_config()),
        demo_config().device_id,
        burst=3,
        every_s=0.05,
        clock=lambda: now[0],
    )

    async def run() -> None:
        for _ in range(3):  # the burst goes at once
            await asyncio.wait_for(g.turn("intent"), 1)
        # Another type has its own rate.
        await asyncio.wait_for(g.turn("status"), 1)
        waiting = asyncio.create_task(g.turn("intent"))
        await asyncio.sleep(0.12)
        assert not waiting.done()  # its turn has not come: the clock has not moved
        now[0] += 0.05
        await asyncio.wait_for(waiting, 1)

    asyncio.run(run())
    assert g.waited == 1
    assert "rate" not in g.dropped


def test_the_content_check_drops_nothing_for_its_rate() -> None:
    g = gate()
    status = Status(device_id=DEVICE, state="listening").to_json()
    admitted = [g.admit(status) for _ in range(100)]
    assert all(e is not None for e in admitted)  # the content check alone: nothing dropped
    assert "rate" not in g.dropped


# -- fuzz: a blob split any way is dropped, by the blob check itself --------------------

# Not base32: in chunks of four, a few in a hundred read as capital words (pendant.link.blobs;
# its own bound in the rate test); the rate limit bounds what gets through that way.
ENCODINGS = {
    "base64": lambda b: base64.b64encode(b).decode(),
    "base64url": lambda b: base64.urlsafe_b64encode(b).decode().rstrip("="),
    "hex": lambda b: b.hex(),
    "HEX": lambda b: b.hex().upper(),
}


# A rule of thumb without a dictionary lets a few encodings through (about two in ten thousand,
# see the rate test below): a search that keeps looking finds one, run after run. So the search
# is the same every run, and what is bounded is the rate; the gate's rate limit bounds the rest.
@settings(
    max_examples=examples(600),
    suppress_health_check=list(HealthCheck),
    deadline=None,
    derandomize=True,
)
@given(
    st.binary(min_size=24, max_size=200),
    st.sampled_from(sorted(ENCODINGS)),
    st.integers(min_value=1, max_value=64),
    st.sampled_from([" ", "\n", "  "]),
    st.sampled_from(["", "Oat milk ", "read this label: "]),
    st.sampled_from(["scene", "read_text", "not_recognized"]),
)
# Found by this test under `make test`: long ALL-CAPS "words" of base64 read as plain.
@example(
    bytes([0, 0, 64, 0, 48, 1, 0, 1, 0, 0, 34, 0, 0, 0, 0, 0, 0, 2, *range(3, 9)]),
    "base64",
    17,
    " ",
    "",
    "scene",
)
@example(
    bytes([0, 0, 64, 0, 16, 1, 0, 3, 4, 0, 0, 64, 0, 0, 0, 0, 0, 0, 2, *range(5, 10)]),
    "base64",
    17,
    " ",
    "",
    "scene",
)
@example(
    bytes([0, 0, 1, 3, 224, 0, 0, 16, 0, 0, 16, 0, 0, 0, 0, 0, 0, 2, *range(4, 10)]),
    "base64url",
    17,
    " ",
    "",
    "scene",
)
@example(
    bytes([0, 0, 0, 35, 224, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0, *range(2, 10)]),
    "base64url",
    17,
    " ",
    "",
    "scene",
)
# ... and words of four that each pass ("AABA AAAA ABEA AQID BAUG CBAH"): "A" fills most of it.
@example(
    bytes([0, 0, 64, *bytes(10), 17, 0, *range(1, 7), 8, 16, 7]),
    "base64",
    4,
    " ",
    "",
    "scene",
)
def test_fuzz_split_blobs_are_dropped_as_blobs(
    data: bytes, encoding: str, every: int, sep: str, before: str, kind: str
) -> None:
    # Bytes with variety, as sound is: mostly one byte (silence) is for the repeat rule,
    # tested on its own below.
    assume(len(set(data)) >= len(data) // 2)
    encoded = ENCODINGS[encoding](data)
    text = before + sep.join(encoded[i : i + every] for i in range(0, len(encoded), every))
    text = text[:500]
    assume(len(text) - len(before) >= 32)  # enough of the blob left to carry something
    if kind == "scene":
        payload = scene(text)
    elif kind == "not_recognized":
        payload = NotRecognized(device_id=DEVICE, text=text).to_json()
    else:
        flat = " ".join(text.split())
        read = Slot(name="text", value=flat, raw_value=flat[:100], entity="ocr")
        payload = intent(flat, name=READ_TEXT, slots=[read])
    g = gate()
    assert g.admit(payload, bus.EYES_INTENT_TOPIC if kind == "read_text" else None) is None
    assert g.dropped == {"blob": 1}


def _blob_bytes(rng: random.Random, sparse: bool) -> bytes:
    """Random bytes, or bytes as sound and pixels often are: many zeros and small values."""
    out = bytearray()
    for _ in range(rng.randint(24, 120)):
        r = rng.random()
        if sparse and r < 0.4:
            out.append(0)
        elif sparse and r < 0.7:
            out.append(rng.randint(1, 20))
        else:
            out.append(rng.randrange(256))
    return bytes(out)


def _passing(
    rng: random.Random, encode: typing.Callable[[bytes], str], every: int, sparse: bool
) -> int:
    """How many of 400 blobs (`encode`d, cut every `every` characters) pass as text."""
    n = passed = 0
    while n < 400:
        data = _blob_bytes(rng, sparse)
        encoded = encode(data)
        text = " ".join(encoded[i : i + every] for i in range(0, len(encoded), every))[:500]
        if len(set(data)) < len(data) // 2 or len(text) < 32:
            continue
        n += 1
        passed += not looks_like_blob(text)
    return passed


def test_few_blobs_pass_at_any_split() -> None:
    """The rate the module's docstring states, on a fixed sample: every encoding, chunks of 1 to
    64, random and zero-heavy bytes."""
    rng = random.Random(7)
    passed = {
        (encoding, every, sparse): _passing(rng, ENCODINGS[encoding], every, sparse)
        for sparse, encoding, every in itertools.product(
            (False, True), sorted(ENCODINGS), (1, 2, 3, 4, 5, 6, 8, 12, 16, 32, 64)
        )
    }
    assert max(passed.values()) <= 4, passed  # 1 % of any one split at most
    assert sum(passed.values()) <= len(passed) * 400 // 1000, passed  # 1 in 1000 in all
    # Base32's capitals read as words far more often: the rate the docstring states for it.
    base32 = {
        (every, sparse): _passing(rng, lambda b: base64.b32encode(b).decode(), every, sparse)
        for sparse, every in itertools.product((False, True), (2, 3, 4, 5, 8, 16))
    }
    assert max(base32.values()) <= 24, base32  # 6 % of any one split at most


@pytest.mark.parametrize("kind", ["scene", "not_recognized"])
def test_hex_of_bytes_with_many_zeros_is_a_blob(kind: str) -> None:
    # Found by the fuzz test above in CI: nine zero bytes, then fifteen of some variety, in
    # HEX by fours. It reads as numbers ("0000", "000A", "0ADA") and words ("DBEA").
    data = b"\x00" * 9 + b"\n\n\xda\x00\x01\x02\n\x0b\x0c\r\x8a\xdb\xea\xea\xeb"
    encoded = data.hex().upper()
    text = " ".join(encoded[i : i + 4] for i in range(0, len(encoded), 4))
    g = gate()
    if kind == "scene":
        payload = scene(text)
    else:
        payload = NotRecognized(device_id=DEVICE, text=text).to_json()
    assert g.admit(payload) is None
    assert g.dropped == {"blob": 1}


def test_silence_encoded_is_dropped() -> None:
    g = gate()
    quiet = bytes(40) + bytes(range(1, 8))
    for text in (spaced(base64.b64encode(quiet).decode(), 4), spaced(quiet.hex(), 4)):
        assert g.admit(scene(text)) is None, text
    assert g.dropped == {"blob": 2}


# -- the vocabulary is the closed set's, no less ------------------------------------------


def test_what_the_homes_nlu_makes_of_its_sentences_passes(config: Config, grammar: Grammar) -> None:
    parser = IntentParser(config)
    sentences = grammar.sample(np.random.default_rng(11), 300)
    g = Gate(Vocabulary.of(config), config.device_id, burst=len(sentences))
    matched = 0
    for sentence in sentences:
        match = parser.parse(sentence)
        if match is None:
            continue
        matched += 1
        event = Intent(
            device_id=DEVICE, name=match.name, text=sentence, confidence=0.9, slots=match.slots
        )
        assert g.admit(event.to_json()) is not None, (sentence, match.slots, g.dropped)
    assert matched > 200


def test_times_are_bounded_and_of_now() -> None:
    """Review H2: `timestamp_ms` and `speech_end_ms` had no upper bound: 10**30 crashed the
    link's outbox, a 4000-digit number carried 1.6 KB out, a far-future intent never expired.
    Now past 2**53 is a schema error, and a time more than a day from the link's wall clock
    is refused (`clock`), but for a retained state's timestamp in the past (a status replayed
    to a restarted link is as old as the last change); the end of speech lies just before its
    intent."""
    now = time.time_ns() // 1_000_000
    day = 24 * 3600 * 1000
    g = gate()
    big = int.from_bytes(os.urandom(1700), "big")
    status = {"type": "mic", "device_id": DEVICE, "state": "ready"}
    battery = {"type": "battery", "device_id": DEVICE, "pct": 50}
    for payload in (
        raw_intent(speech_end_ms=big),
        raw_intent(timestamp_ms=10**30),
        json.dumps(status | {"timestamp_ms": 2**63 - 1}).encode(),
        json.dumps(battery | {"timestamp_ms": 10**30}).encode(),
        raw_intent(timestamp_ms=2**53 + 1),
    ):
        assert g.admit(payload) is None
    assert g.dropped == {"schema": 5}
    g = gate()
    for payload in (
        raw_intent(timestamp_ms=now + day + 60_000),
        raw_intent(timestamp_ms=now - day - 60_000),
        raw_intent(speech_end_ms=now + 2 * day),
        raw_intent(speech_end_ms=1),
        # The speech ends before its intent is made, by two minutes at most (a confirming
        # wait is one at most): ~14 bits of the sender's choosing, not a day's 24.
        raw_intent(timestamp_ms=now, speech_end_ms=now + 1_000),
        raw_intent(timestamp_ms=now, speech_end_ms=now - 121_000),
        json.dumps(battery | {"timestamp_ms": now + 120_000}).encode(),  # a minute ahead at most
        json.dumps(battery | {"timestamp_ms": 0}).encode(),
    ):
        assert g.admit(payload) is None
    assert g.dropped == {"clock": 8}
    for payload in (
        raw_intent(timestamp_ms=now - 3600_000, speech_end_ms=now - 3601_000),
        raw_intent(timestamp_ms=now, speech_end_ms=now - 100_000),  # a confirming tap waited for
        raw_intent(timestamp_ms=now + 30_000),
        json.dumps(status | {"timestamp_ms": now - 30 * day}).encode(),
        # The mic's time never leaves (the link's status has its own): not held to the clock.
        json.dumps(status | {"timestamp_ms": 2**53}).encode(),
    ):
        assert g.admit(payload) is not None


def test_times_leave_no_finer_than_their_use() -> None:
    """Review: the milliseconds of a time are bits of the sender's choosing (the ears hold the
    microphone). An event's time leaves in whole seconds, the end of speech in 10 ms, and a
    superseded state's (battery, sentences) as the link's own time."""
    now = time.time_ns() // 1_000_000
    g = gate()
    intent = g.admit(raw_intent(timestamp_ms=now - 1234, speech_end_ms=now - 1777))
    assert isinstance(intent, Intent) and intent.speech_end_ms is not None
    assert intent.timestamp_ms % 1000 == 0 and now - 2234 < intent.timestamp_ms <= now - 1234
    assert intent.speech_end_ms % 10 == 0 and now - 1787 < intent.speech_end_ms <= now - 1777
    old = {"type": "battery", "device_id": DEVICE, "pct": 50, "timestamp_ms": now - 5_678}
    battery = g.admit(json.dumps(old).encode())
    assert battery is not None and battery.timestamp_ms >= now


@pytest.mark.parametrize(
    "content",
    [b"[" * 100_000 + b"]" * 100_000, b"5", b"null", b'{"a": 1}', b'["abc"]', b"\xff\xfe"],
    ids=["deep", "int", "null", "dict", "list of str", "bad utf8"],
)
def test_a_phone_sentences_file_that_cannot_be_read_is_an_empty_one(
    tmp_path: Path, content: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    """Review L6: a deeply nested phone_sentences.json raised RecursionError when the link
    started. Whatever is in it, a file that cannot be read is taken for an empty one, logged;
    and the file the link writes is the wearer's alone whatever the umask."""
    path = tmp_path / "phone_sentences.json"
    path.write_bytes(content)
    with caplog.at_level(logging.ERROR, logger="pendant.core.vocabulary"):
        phone = PhoneSentences(path)
    assert phone.sent == []
    assert any("cannot read" in r.getMessage() for r in caplog.records)
    phone.add([SentenceSet(intent="PartyMode", sentences=["party time"])])
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert PhoneSentences(path).sent == phone.sent


def test_text_in_the_recognisers_form_and_numbers_as_they_round_them() -> None:
    """Review M3: the status's `asr_backend` took any 100 characters; an intent's text passed
    in any case and spacing ("TURN, on; The... LIGHTS?!"), as long as its words were of the
    closed set; a confidence carried 15 decimals. Now the backend is one of the ears' names,
    the texts the ears' say are lowercase words one space apart (what the recognisers emit),
    and confidences, loudness and label scores leave rounded as the ears round them."""
    from pendant.core.config import AsrConfig
    from pendant.core.events import AsrBackend, Label
    from pendant.ears.asr import BACKENDS

    assert set(typing.get_args(AsrBackend)) == set(BACKENDS)
    assert typing.get_args(AsrConfig.model_fields["backend"].annotation) == typing.get_args(
        AsrBackend
    )
    g = gate()
    free = "meet me by the old mill at nine bring the money"
    status = {"type": "status", "device_id": DEVICE, "state": "ready", "asr_backend": free}
    assert g.admit(json.dumps(status).encode()) is None
    assert g.dropped == {"schema": 1}
    for name in BACKENDS:
        ok = Status(device_id=DEVICE, state="ready", asr_backend=name).to_json()  # type: ignore[arg-type]
        assert g.admit(ok) is not None
    g = gate()
    for text in (
        "Turn ON the lights!!",
        "TURN, on; The... LIGHTS?!  turn:on",
        "turn on the  lights",
        " turn on the lights",
        "turn on the lights ",
        "turn\ton the lights",
    ):
        assert g.admit(intent(text, slots=[])) is None, text
        assert g.admit(Transcript(device_id=DEVICE, text=text, confidence=1).to_json()) is None
        assert g.admit(NotRecognized(device_id=DEVICE, text=text).to_json()) is None
    assert g.dropped == {"vocabulary": 18}
    # What the ears say passes; what the camera read is its own (the blob rules only).
    assert g.admit(intent("what's the temperature in the kitchen", slots=[])) is not None
    read = Slot(name="text", value="KEEP REFRIGERATED", raw_value="KEEP", entity="ocr")
    words = "KEEP REFRIGERATED, after opening."
    ocr = intent(words, name=READ_TEXT, slots=[read])
    assert g.admit(ocr, bus.EYES_INTENT_TOPIC) is not None
    # Rounded.
    precise = g.admit(intent(confidence=0.123456789012345, loudness_dbfs=-23.456789))
    assert isinstance(precise, Intent)
    assert (precise.confidence, precise.loudness_dbfs) == (0.123, -23.5)
    heard = Transcript(device_id=DEVICE, text="turn on the lights", confidence=0.98765432)
    assert g.admit(heard.to_json()).confidence == 0.988  # type: ignore[union-attr]
    unsure = NotRecognized(device_id=DEVICE, confidence=0.33333333)
    assert g.admit(unsure.to_json()).confidence == 0.333  # type: ignore[union-attr]
    labels = [Label(name="cup", score=0.876543219)]
    seen = g.admit(Scene(device_id=DEVICE, trigger="capture", labels=labels).to_json())
    assert isinstance(seen, Scene) and seen.labels[0].score == 0.877
    assert b"0.123456789" not in precise.to_json()
