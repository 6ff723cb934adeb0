"""What the gate lets out of the ears' `sentences` answer (pendant.link.gate_sentences).

The ears hold the microphone; their answer to the phone's sentences is the one event of theirs
with text the closed set does not hold. So its sets must be ones the phone sent, its error and
warnings the forms the real ears produce, their variable parts the phone's own templates and
the closed set's words: the real refusals and warnings pass as they are, anything else is
replaced by a fixed line (or, for sets the phone never sent, the answer is dropped).
"""

from __future__ import annotations

import errno
import os
import time

import pytest

from pendant.core.errors import PendantError
from pendant.core.events import Sentences, SentenceSet, SentenceWarning
from pendant.core.vocabulary import Vocabulary
from pendant.ears.service import SentenceStore
from pendant.ears.understand.grammar import check_sentences
from pendant.link.gate import Gate
from pendant.link.gate_sentences import GENERIC_ERROR, GENERIC_REASON, STORE_ERROR, _reason_ok
from tests.conftest import demo_config
from tests.support import phone_sets

DEVICE = "pendant-demo"
PARTY = SentenceSet(**phone_sets.PARTY)
WARNED = SentenceSet(**phone_sets.WARNED)
# What the real ears say of WARNED (tests/unit/ears/test_sentence_check.py,
# tests/integration/test_sentences.py).
WARNINGS = [SentenceWarning(**w) for w in phone_sets.WARNINGS]
# Templates the real ears refuse, each with its own form of refusal.
BROKEN = [
    "party (time",
    "party [time",
    "party time)",
    "party time]",
    "party }",
    "party {",
    "party <",
    "()",
    "play {nothing}",
    "party <nothing>",
    "the {area}",
    "let's (party with the kitchen lights and the living room lights on now",
    "party 2 (time",
    'it\'s "party" [time',
]
FREE = "meet me by the old mill at nine"


def gate() -> Gate:
    """The demo's gate, its wall clock stopped: an answer's time is the link's (restamped), so
    the same answer admitted twice is the same event."""
    now = time.time_ns() // 1_000_000
    return Gate(Vocabulary.of(demo_config()), demo_config().device_id, wall_ms=lambda: now)


def answer(sets: list[SentenceSet], **kw: object) -> bytes:
    return Sentences(device_id=DEVICE, sets=sets, **kw).to_json()  # type: ignore[arg-type]


def refusal(sets: list[SentenceSet]) -> str:
    """What the real ears put in `error` when they refuse `sets` (service.apply_sentences)."""
    with pytest.raises(PendantError) as refused:
        check_sentences(demo_config(), sets, label="sentences")
    return str(refused.value)[:500]


def test_an_answer_with_sets_the_phone_did_not_send_is_dropped() -> None:
    g = gate()
    assert g.admit(answer([PARTY])) is None
    assert g.dropped == {"sentences": 1}
    # None at all: the ears run none of the phone's sentences (nothing sent yet).
    assert g.admit(answer([])) is not None
    g.phone_sent([PARTY])
    assert g.admit(answer([PARTY])) is not None
    # Another list, or the same sets in another order, is not what the phone sent.
    other = SentenceSet(intent="PartyMode", sentences=["let's party"])
    assert g.admit(answer([other])) is None
    g.phone_sent([PARTY, WARNED])
    assert g.admit(answer([WARNED, PARTY])) is None
    assert g.admit(answer([PARTY, WARNED])) is not None
    assert g.dropped == {"sentences": 3}


def test_the_ears_real_refusals_and_warnings_pass_as_they_are() -> None:
    g = gate()
    g.phone_sent([WARNED])
    accepted = g.admit(answer([WARNED], warnings=WARNINGS))
    assert accepted is not None and accepted.warnings == WARNINGS  # type: ignore[attr-defined]
    for template in BROKEN:
        bad = [PARTY, SentenceSet(intent="Broken", sentences=[template])]
        g.phone_sent(bad)
        error = refusal(bad)
        out = g.admit(answer([WARNED], accepted=False, error=error, warnings=WARNINGS))
        assert isinstance(out, Sentences), template
        assert out.error == error and out.warnings == WARNINGS, template
    # The milder warning, and a sentence the NLU takes for no intent.
    milder = "'zxqv' is in no dictionary: its sound is espeak-ng's guess"
    for reason in (milder, "'let's party' is understood as no intent"):
        warning = SentenceWarning(intent="PartyMode", sentence="zxqv now", reason=reason)
        out = g.admit(answer([WARNED], warnings=[warning]))
        assert isinstance(out, Sentences) and out.warnings == [warning]
    assert g.dropped == {}


def test_a_cut_sentence_in_a_reason_is_held_to_the_words_too() -> None:
    # Checked here past the gate: its "…" is not ASCII, which the blob rule drops first.
    vocabulary = Vocabulary.of(demo_config())
    cut = "'turn on the kitchen lights in the li…' is heard as HassTurnOn"
    assert _reason_ok(cut, vocabulary)
    assert not _reason_ok("'turn on the kitchen zq…' is heard as HassTurnOn", vocabulary)
    assert not _reason_ok("'turn on the mill…' is heard as HassTurnOn", vocabulary)


def test_free_text_in_the_error_becomes_a_fixed_line() -> None:
    g = gate()
    bad = [SentenceSet(intent="Broken", sentences=["party (time"])]
    g.phone_sent([PARTY])
    g.phone_sent(bad)
    real = refusal(bad)
    where = "sentences[0] (Broken) 'party (time': "
    assert real.startswith(where)
    for error in (
        FREE,
        f"{where}{FREE}",  # the phone's template named, then free text
        f"{where}template refers to unknown list {{old mill}}",  # not in the template
        f"{where}Unable to find end of group ')' from index 0 in: (meet me by the mill)",
        f"{where}Error in chunk ParseChunk(text='(by the mill)', start_index=0, end_index=13,"
        " parse_type=<ParseType.GROUP: 2>) at None",
        f"{where}unexpected template expression MeetMeByTheMill",
        # A template the phone did not send, however well formed.
        "sentences[0] (Broken) 'the old mill': template refers to unknown list {mill}",
        real.replace("Broken", "Mill"),
        f"{real} {FREE}",
    ):
        out = g.admit(answer([PARTY], accepted=False, error=error))
        assert isinstance(out, Sentences), error
        assert out.error == GENERIC_ERROR and out.accepted is False, error
        assert out.sets == [PARTY]
        again = g.admit(out.to_json())
        assert again is not None  # the link's own time on each: the rest is the same
        assert again == out.model_copy(
            update={"id": g.outside_id(out.id), "timestamp_ms": again.timestamp_ms}
        )
    assert g.dropped == {}


def test_a_set_the_ears_cannot_keep_is_told_in_fixed_words() -> None:
    g = gate()
    g.phone_sent([PARTY])
    why = os.strerror(errno.ENOSPC)
    error = f"cannot keep the sentences in /var/lib/pendant-ears/sentences.json: {why}"
    out = g.admit(answer([], accepted=False, error=error))
    assert isinstance(out, Sentences) and out.error == STORE_ERROR.format(why)
    # What the link publishes passes again as it is (with the id it issues).
    assert g.admit(out.to_json()) == out.model_copy(update={"id": g.outside_id(out.id)})
    rogue = f"cannot keep the sentences in /var/lib/pendant-ears/sentences.json: {FREE}"
    out = g.admit(answer([], accepted=False, error=rogue))
    assert isinstance(out, Sentences) and out.error == GENERIC_ERROR
    # What SentenceStore.save really raises has that form.
    store = SentenceStore("/nonexistent/pendant-ears")
    with pytest.raises(PendantError) as failed:
        store.save([PARTY])
    out = g.admit(answer([], accepted=False, error=str(failed.value)[:500]))
    assert isinstance(out, Sentences)
    assert out.error == STORE_ERROR.format(os.strerror(errno.ENOENT))


def test_warnings_say_only_what_the_ears_say_of_the_sets_in_force() -> None:
    g = gate()
    g.phone_sent([WARNED])

    def warning(sentence: str, reason: str, intent: str = "PartyMode") -> SentenceWarning:
        return SentenceWarning(intent=intent, sentence=sentence, reason=reason)

    rogue = [
        warning("zxqv now", FREE),
        warning("zxqv now", f"'{FREE}' is heard as HassTurnOn"),
        warning("zxqv now", "'zxqv now' is heard as MeetMeAtNine"),
        warning("zxqv now", "'zxqv' has no pronunciation: meet me by the old mill"),
        warning("zxqv now", "'zxqv, now!' is understood as no intent"),
    ]
    out = g.admit(answer([WARNED], warnings=rogue))
    assert isinstance(out, Sentences)
    assert [w.reason for w in out.warnings] == [GENERIC_REASON] * len(rogue)
    assert [w.sentence for w in out.warnings] == ["zxqv now"] * len(rogue)
    # A warning about a sentence (or an intent) not in the sets in force is left out.
    elsewhere = [
        warning(FREE, "'zxqv' has no pronunciation: it will hardly ever be heard"),
        warning("zxqv now", "'zxqv' has no pronunciation: it will hardly ever be heard", "Mill"),
        *WARNINGS,
    ]
    out = g.admit(answer([WARNED], warnings=elsewhere))
    assert isinstance(out, Sentences) and out.warnings == WARNINGS
    assert g.dropped == {}
