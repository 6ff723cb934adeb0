"""When a sentence is over: the closed set says whether anything the speaker might still add
would change what was understood.

With no wake word the ears wait `vad.hangover_ms` of silence before deciding that speech has
ended, because people pause inside sentences ("set a timer for five ... minutes"). A heard
sentence that the closed set lets go on only with words that change nothing ("please", "for
me", "right now") is over already; one that may go on "in the kitchen" or "and ten minutes" is
not.
"""

from __future__ import annotations

from pendant.ears.understand.grammar import Grammar

# Continuations looked at, at most (enumerating them is cheap; more says the sentence is open).
MOST = 256
# Words that only ever make a command politer or say "now": a continuation of these alone
# never changes the intent or its slots. "for" and "at" start "for five minutes" and "at
# seven" too, but those continuations hold other words.
FILLER = frozenset(
    {"please", "for", "me", "now", "right", "currently", "presently", "at", "the", "moment",
     "thanks", "thank", "you"}
)  # fmt: skip


def sentence_is_over(text: str, grammar: Grammar) -> bool:
    """True when every way of going on from `text` that the closed set knows is filler."""
    tails = grammar.continuations(text.split(), MOST)
    return tails is not None and all(FILLER.issuperset(tail) for tail in tails)
