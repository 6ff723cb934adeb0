"""When a sentence is over: the closed set says whether anything the speaker might still add
would change what was understood.

With no wake word the ears wait `vad.hangover_ms` of silence before deciding that speech has
ended, because people pause inside sentences ("set a timer for five ... minutes"). A heard
sentence is over when every way the closed set lets it go on means the same intent with the
same slots: "please", "for me" and "right now" change nothing, nor does "brightness" after "set
the bed light to fifty percent" or "like" after "what's the weather in new york"; "in the
kitchen" after "turn off the tv" or "and ten seconds" after a timer do, so those wait.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pendant.ears.understand.grammar import Grammar
    from pendant.ears.understand.nlu import IntentMatch, IntentParser

# Continuations looked at, at most (enumerating them is cheap; more says the sentence is open).
MOST = 256
# Continuations parsed, at most, once those of filler alone are set aside: a parse costs
# 0.1-0.3 ms here on our templates, 2-4 ms on Home Assistant's, several times that on a Zero
# 2 W, and it is on the path to the intent.
MOST_PARSED = 8
# Words that only make a command politer or say "now": a continuation of these alone is taken
# to change nothing and is not parsed. Not quite so for hassil, which may read a slot the words
# imply ("is the front door locked currently" adds domain: lock): the same device, the same
# answer. "for" and "at" start "for five minutes" and "at seven" too, but those continuations
# hold other words.
FILLER = frozenset(
    {"please", "for", "me", "now", "right", "currently", "presently", "at", "the", "moment",
     "thanks", "thank", "you"}
)  # fmt: skip


def sentence_is_over(
    text: str, match: IntentMatch, grammar: Grammar, parser: IntentParser, here: str | None = None
) -> bool:
    """True when every way of going on from the closed set's sentence `text` is filler, or
    parses to `match`'s intent with its slots (`here`: the wearer's room, as `match` was
    parsed with)."""
    words = text.split()
    tails = grammar.continuations(words, MOST)
    if tails is None:
        return False
    # One parse per distinct non-filler content, the shortest tail that has it.
    telling: dict[tuple[str, ...], list[str]] = {}
    for tail in sorted(tails, key=len):
        content = tuple(w for w in tail if w not in FILLER)
        if content:
            telling.setdefault(content, tail)
    if len(telling) > MOST_PARSED:
        return False
    meant = (match.name, match.slot_values())
    for tail in telling.values():
        other = parser.parse(" ".join([*words, *tail]), here=here)
        if other is None or (other.name, other.slot_values()) != meant:
            return False
    return True
