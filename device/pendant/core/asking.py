"""What the ears and the link agree on about asking a bigger model (`[escalate]`), which neither
may import from the other: the follow-up window and the "ask" phrases.

    >>> after_ask_phrase("Ask Home Assistant, what is a good substitute for eggs?",
    ...                  ["ask home assistant"])
    'what is a good substitute for eggs?'
    >>> after_ask_phrase("Ask HomeAssistant what time it is", ["ask home assistant"])
    'what time it is'
    >>> after_ask_phrase("Ask Thomas Instant, what time is it?", ["ask home assistant"])
    'what time is it?'
    >>> after_ask_phrase("I'll ask Home Assistant later", ["ask home assistant"]) is None
    True
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

from pendant.core.names import fold

FOLLOW_UP_S = 10.0
"""After a question, another may come without the button or a phrase (conversation mode): the
ears take an utterance this soon after their last `Ask` as one, and the link this soon after
its last answer."""

DEFAULT_ASK_PHRASES = ("ask home assistant",)
"""`escalate.ask_phrases` unless the config says otherwise."""

_SEPARATORS = " \t,.:;!?-\u2013\u2014"
LETTERS_PER_SLIP = 3
"""After the first word, which must be exact, the rest of a phrase may be misheard by one
letter in this many ("ask Thomas Instant", "ask oh my assistant" for "ask Home Assistant"):
the name is what a recogniser hears worst, and the first word ("ask") keeps other talk out."""


def after_ask_phrase(text: str, phrases: Sequence[str]) -> str | None:
    """What follows the first of `phrases` that `text` starts with, as `text` spells it (the
    punctuation after the phrase dropped); None when it starts with none of them.

    Compared letter by letter, case, accents, spaces and punctuation aside (a recogniser
    writes "Home Assistant" as "HomeAssistant" or "home-assistant" too): the first word
    exactly, the rest with a slip in `LETTERS_PER_SLIP` letters allowed. The phrase ends
    where a word of `text` ends.
    """
    words = _words(text)
    if not words:
        return None
    for phrase in phrases:
        wanted = _words(phrase)
        if not wanted or words[0][0] != wanted[0][0]:
            continue
        if len(wanted) == 1:
            return _rest(text, words[0][1])
        rest_wanted = "".join(w for w, _ in wanted[1:])
        budget = len(rest_wanted) // LETTERS_PER_SLIP
        best: tuple[int, int] | None = None  # (slips, end in text)
        said = ""
        for word, end in words[1:]:
            said += word
            if len(said) > len(rest_wanted) + budget:
                break
            slips = edit_distance(said, rest_wanted)
            if slips <= budget and (best is None or slips < best[0]):
                best = (slips, end)
        if best is not None:
            return _rest(text, best[1])
    return None


def _words(text: str) -> list[tuple[str, int]]:
    """Each word of `text` as lowercase ASCII letters and digits, with where it ends in `text`."""
    words: list[tuple[str, int]] = []
    word = ""
    for i, char in enumerate(text):
        folded = "".join(c for c in fold(char).lower() if c.isascii() and c.isalnum())
        if folded:
            word += folded
            if i + 1 == len(text) or not text[i + 1].isalnum():
                words.append((word, i + 1))
                word = ""
        elif char.isalnum():  # a letter of another script: part of a word we cannot match
            word += "\x00"
    return words


def _rest(text: str, end: int) -> str:
    return text[end:].lstrip(_SEPARATORS).strip()


def edit_distance(a: Sequence[Hashable], b: Sequence[Hashable]) -> int:
    """Levenshtein distance between `a` and `b`: letters of two strings, or words of two
    lists (a word error rate's edits)."""
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        diagonal, row[0] = row[0], i
        for j, y in enumerate(b, 1):
            diagonal, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, diagonal + (x != y))
    return row[len(b)]
