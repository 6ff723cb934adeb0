"""What the ears may say in their `sentences` answer: only the forms they produce.

The answer is the one event of the ears that carries text the closed set does not hold (why a
set was refused, what will not work as meant), so a rogue ears, which holds the microphone,
could fill it with text of its choosing. The gate (`Gate.admit`) holds it to what the real
ears put there, with the variable parts taken from what the phone itself sent:

- `sets` must be a list of sets the phone sent (`PhoneSentences`; or none at all), else the
  answer is dropped (`sentences`): the ears answer with the sets in force, which the phone
  sent, and only those keep the retained answer true;
- each warning is about a template of those sets, under its intent (the ears warn only about
  the sets in force), else it is left out; its reason is one of `sentence_check`'s five forms
  (`template_warning`), the quoted sentence or word made of words of the closed set (the
  phone's words included), the intent of "is heard as" one the closed set has;
- `error` is one of the forms `grammar.check_sentences` refuses a template with, naming one of
  the phone's own templates exactly as the ears do, hassil's message quoting a piece of that
  template; or the ears could not keep the set on disk, which is told as a fixed line with
  the system's own words for why (the path is left out).

What fits none of these is replaced, not dropped: the companion app shows the answer's
`error` as "Refused: ..." and each warning under its sentence, and an answer dropped would
leave the phone waiting for one that never comes, its set neither refused nor accepted. So an
error becomes `GENERIC_ERROR` (the set is still shown refused) and a reason
`GENERIC_REASON` (the sentence is still marked); the pendant's log has the real text. The
config's own sentences, the recogniser and the grammar compile can refuse a set in other
words: those reach the phone as `GENERIC_ERROR` too.
"""

from __future__ import annotations

import ast
import errno
import os
import re
import string

from pendant.core.events import Sentences, SentenceSet, SentenceWarning
from pendant.core.vocabulary import PhoneSentences, Vocabulary

GENERIC_ERROR = "refused: see the pendant's log"
GENERIC_REASON = "may not work as meant: see the pendant's log"
STORE_ERROR = "cannot keep the sentences on the pendant: {}"
"""What the phone is told when the ears could not write the set (SentenceStore.save)."""

# sentence_check.template_warning: `'{what}'{rest}`, a long sentence cut with "…" (and its
# apostrophes as they are: "'it's party time' is heard as HassTurnOn").
_REASONS = frozenset(
    {
        " is not in the closed set: it can never be heard",
        " has no pronunciation: it will hardly ever be heard",
        " is understood as no intent",
        " is in no dictionary: its sound is espeak-ng's guess",
    }
)
# The grammar's words (`pendant.core.names.normalize`), one space apart.
_SAID = re.compile(r"[a-z0-9']+(?: [a-z0-9']+)*")
_HEARD_AS = re.compile(r"'(?P<what>.*)' is heard as (?P<intent>[A-Za-z0-9]{1,60})", re.DOTALL)

# grammar.check_sentences: "{label}[{i}] ({intent}) {sentence[:60]!r}: {why}".
_FIXED_WHY = frozenset(
    {
        "can be said with nothing but names and articles; add a word that says what to do",
        "template has too many glued alternatives to expand",
        "Text is too short",  # hassil
    }
)
_UNKNOWN_REF = re.compile(
    r"template refers to unknown (?:list \{(?P<l>[^{}]*)\}|rule <(?P<r>[^<>]*)>)"
)
_EXPRESSIONS = frozenset(
    {"Expression", "TextChunk", "Group", "Sequence", "Alternative", "Permutation"}
    | {"RuleReference", "ListReference", "Sentence"}
)
_UNEXPECTED = re.compile(r"unexpected template expression (?P<name>[A-Za-z]{1,30})")
# hassil's parse errors quote a piece of the template, wrapped in a group: "(…)".
_NUMBER = r"\d{1,4}"
_HASSIL = [
    re.compile(
        r"Unable to find end of (?:group '\)'|optional '\]'|list '\}'|rule '>'|word) "
        rf"from index {_NUMBER} in: (?P<piece>.*)",
        re.DOTALL,
    ),
    re.compile(rf"Expected chunk to end at index {_NUMBER} in: (?P<piece>.*)", re.DOTALL),
    re.compile(r"Unexpected empty chunk in: (?P<piece>.*)", re.DOTALL),
    re.compile(r"Expected \(group\)(?: to start at index 0)? in: (?P<piece>.*)", re.DOTALL),
]
_CHUNK = re.compile(
    r"Error in chunk ParseChunk\(text=(?P<quoted>'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"), "
    rf"start_index={_NUMBER}, end_index={_NUMBER}, "
    r"parse_type=<ParseType\.(?:WORD|GROUP|OPT|LIST|RULE|ALT|PERM|END): \d\>\) at None"
)
# SentenceStore.save: "cannot keep the sentences in {path}: {strerror}".
# (And the line the gate makes of it, which passes again as it is.)
_STORE = re.compile(r"cannot keep the sentences (?:in \S.*|on the pendant): (?P<why>[^:]+)")
_STRERRORS = frozenset(os.strerror(n) for n in errno.errorcode)


def _known(text: str, vocabulary: Vocabulary) -> bool:
    return not vocabulary.unknown(text)


def held(event: Sentences, phone: PhoneSentences, vocabulary: Vocabulary) -> Sentences | None:
    """The answer as it may leave, or None when its sets are not ones the phone sent."""
    if event.sets and tuple(event.sets) not in phone.sent:
        return None
    warnings = [_warning(w, vocabulary) for w in event.warnings if _about_sets(w, event.sets)]
    error = event.error
    if error is not None:
        error = _error(error, phone.sent, vocabulary)
    if warnings == event.warnings and error == event.error:
        return event
    return event.model_copy(update={"warnings": warnings, "error": error})


def _about_sets(warning: SentenceWarning, sets: list[SentenceSet]) -> bool:
    return any(s.intent == warning.intent and warning.sentence in s.sentences for s in sets)


def _warning(warning: SentenceWarning, vocabulary: Vocabulary) -> SentenceWarning:
    if _reason_ok(warning.reason, vocabulary):
        return warning
    return warning.model_copy(update={"reason": GENERIC_REASON})


def _reason_ok(reason: str, vocabulary: Vocabulary) -> bool:
    what: str | None = None
    for rest in _REASONS:
        if len(reason) > len(rest) + 1 and reason[0] == "'" and reason.endswith(f"'{rest}"):
            what = reason[1 : -len(rest) - 1]
            break
    heard = _HEARD_AS.fullmatch(reason)
    if heard is not None and heard["intent"] in vocabulary.intents:
        what = heard["what"]
    if what is None:
        return False
    if _SAID.fullmatch(what.removesuffix("…")) is None:
        return False
    if what.endswith("…"):
        # A long sentence, cut to fit (sentence_check._quoted): its last word may be cut too.
        what, _, cut = what[:-1].rpartition(" ")
        if not any(word.startswith(cut) for word in vocabulary.words):
            return False
    return _known(what, vocabulary)


def _error(error: str, sent: list[tuple[SentenceSet, ...]], vocabulary: Vocabulary) -> str:
    store = _STORE.fullmatch(error)
    if store is not None and store["why"] in _STRERRORS:
        return STORE_ERROR.format(store["why"])
    for sets in sent:
        for i, s in enumerate(sets):
            for sentence in s.sentences:
                where = f"sentences[{i}] ({s.intent}) {sentence[:60]!r}: "
                if error.startswith(where) and _why_ok(error[len(where) :], sentence, vocabulary):
                    return error
    return GENERIC_ERROR


def _why_ok(why: str, sentence: str, vocabulary: Vocabulary) -> bool:
    """`why` is what check_sentences says of the phone's `sentence` (see the module)."""
    if why in _FIXED_WHY:
        return True
    ref = _UNKNOWN_REF.fullmatch(why)
    if ref is not None:
        return (ref["l"] if ref["l"] is not None else ref["r"]) in sentence
    unexpected = _UNEXPECTED.fullmatch(why)
    if unexpected is not None:
        return unexpected["name"] in _EXPRESSIONS
    piece: str | None = None
    for form in _HASSIL:
        match = form.fullmatch(why)
        if match is not None:
            piece = match["piece"]
            break
    chunk = _CHUNK.fullmatch(why)
    if chunk is not None:
        try:
            piece = ast.literal_eval(chunk["quoted"])
        except (ValueError, SyntaxError):
            return False
    if not isinstance(piece, str):
        return False
    if piece in f"({sentence})":
        return True
    # Digits are spelled out before hassil reads the template ("2" -> "two"), so its piece is
    # then no longer the phone's text: its words must be known, its other characters the
    # template's own.
    if not any(c.isdigit() for c in sentence) or len(piece) > 400:
        return False
    allowed = set(f"({sentence}) -") | set(string.ascii_lowercase)
    return set(piece) <= allowed and _known(piece, vocabulary)
