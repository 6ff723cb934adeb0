"""Is this text something a person wrote or read, or encoded bytes split to look like words?

For the text no closed set can hold (what the camera read, what press-to-talk heard and no
intent matched): base64 or hex cut into chunks by spaces passes a check for one long run, so
the text is judged token by token, without a dictionary (labels carry brand names, units and
lot numbers that no word list has):

- a token is *plain* if it is a word (lower, Capitalised, ALL CAPS or CamelCase letters, with
  apostrophes and hyphens; no letter three times running; four or more letters need a vowel,
  twelve or more at least a third as many different letters, none in two fifths of them;
  up to six letters, no four consonants running) or a number (digit groups with separators and
  a short unit: "12/05/2026", "3.99", "800ppm", "CO2"); a character five times running, or
  anything else, is odd;
- a run of short tokens (up to 3 characters, from the base64 alphabet) that together make 16
  or more characters is odd as a whole when the joined run would be (chunks of 1 to 3);
- letter/digit and lower/upper switches inside the tokens that are not numbers count too: a
  few in a label ("4B27X"), one in every few characters of base64 or hex;
- silence, encoded, is a few tokens over and over ("AAAA AAAA ...", "0 0 0 ...").

Text is a blob when one letter fills two fifths of 24 letters or more (as in a long word), or
a third of 48 or more ("set ecobee to thirteen degrees" is a third "e");
when 48 characters or more are odd, or 16 or more and at least a third; when there are 8 or
more switches and at least one per 12 characters; when 32 or more characters and half of them
are digits; when 32 or more characters, three in four, are in tokens of hex digits only, a
quarter of them digits (hex of bytes with many zeros: "0000 000A 0ADA DBEA"); or when 8 or more
tokens (of 2 characters or more) are at most a third distinct, or half of them one token.

Measured on random bytes, and on bytes with many zeros as sound is, in base64 and hex cut
every 1 to 64 characters (35,200 texts in tests/unit/link/test_gate_content.py): 7 pass, all
base64 in chunks of 4 or 5, one in 200 of those at most. Base32 in chunks of 4 passes 3 to 5
in a hundred (12 and 18 of 400: capital letters read as words), at other splits 5 in 400 at most.
Legible labels pass; a URL or a list of serial numbers may not, which is the side a privacy
gate errs on. A code made of real words cannot be told from text at all: the gate's rate limit
bounds it.
"""

from __future__ import annotations

import re
from collections import Counter

# A printable ASCII line or several: what OCR of a label and the recognisers put out. Other
# characters are where a dozen bits hide per character (CJK, private use, lone surrogates).
PLAIN = re.compile(r"[\x20-\x7e\n\t]*")
_EDGES = ".,;:!?()[]{}\"'"
_NUMBER = re.compile(
    r"[0-9]{1,6}(?:[.,:/-][0-9]{1,4})*(?:%|[A-Za-z]{1,3})?"  # 12/05/2026, 3.99, 1L, 800ppm
    r"|[A-Z]{1,3}[0-9]{1,2}"  # CO2, PM2, A4
)
_WORD = re.compile(r"(?:[a-z]*(?:[A-Z][a-z]+)+|[a-z]+|[A-Z]+)(?:['-][A-Za-z]+)*")
_CODE = re.compile(r"[A-Za-z0-9+/=_-]{1,3}")
_REPEAT = re.compile(r"(.)\1{4}")
_LETTER_REPEAT = re.compile(r"([A-Za-z])\1{2}")
LONG_WORD = 12
LETTERS_MIN = 24
LETTER_SHARE = 2 / 5
LONG_TEXT_LETTERS = 48
LONG_TEXT_LETTER_SHARE = 1 / 3
_CASE_SWITCH = re.compile(r"[a-z][A-Z]")
_SWITCH = re.compile(r"(?<=[A-Za-z])(?=[0-9])|(?<=[0-9])(?=[A-Za-z])|(?<=[a-z])(?=[A-Z])")
_VOWELS = frozenset("aeiouyAEIOUY")
_CONSONANTS = re.compile(r"[b-df-hj-np-tv-xzB-DF-HJ-NP-TV-XZ]{4}")
ODD_MAX = 48
ODD_MIN = 16
ODD_SHARE = 1 / 3
RUN_MIN = 16
SWITCH_MIN = 8
SWITCH_SHARE = 1 / 12
DIGITS_MIN = 32
DIGITS_SHARE = 1 / 2
HEX_MIN = 32
HEX_SHARE = 3 / 4
HEX_DIGITS = 1 / 4
_HEX = re.compile(r"[0-9A-Fa-f]+")
REPEATS_MIN = 8


def is_plain(text: str) -> bool:
    """Printable ASCII, newlines and tabs only."""
    return PLAIN.fullmatch(text) is not None


def _odd(token: str) -> bool:
    if _REPEAT.search(token):
        return True
    if _NUMBER.fullmatch(token):
        return False
    if _WORD.fullmatch(token):
        # Hardly a word has a letter three times running ("AAA" batteries, "Zzz" are a few
        # odd characters, not a blob); base64 of bytes with zeros in them does, over and over
        # ("AAABA-AAABAAABAAA").
        if _LETTER_REPEAT.search(token):
            return True
        letters = [c for c in token if c.isalpha()]
        if len(letters) >= 4 and not _VOWELS.intersection(letters):
            return True
        # A long word uses many letters ("Mississippi" is short of this); base64 of bytes
        # with zeros in them is a few letters over and over ("AABAABABAAMEAABAA").
        if len(letters) >= LONG_WORD and (
            len({c.lower() for c in letters}) * 3 < len(letters)
            or _one_letter_fills(letters, LETTER_SHARE)
        ):
            return True
        # Short words with four consonants running are rare ("angst"); random letters in
        # chunks of four to six often have them. Longer words do ("instruct", "strength").
        return len(letters) <= 6 and _CONSONANTS.search(token) is not None
    return True


def _one_letter_fills(letters: list[str], share: float) -> bool:
    """One letter in more than `share` of the places: English's commonest, "e", fills an eighth
    on average ("set ecobee to thirteen degrees", a demo home's sentence, 0.35; at most 0.26 in
    the lines of 48 letters or more of Home Assistant's sentences and licence texts); base64 and
    base32 of bytes with zeros in them are "A" over and over ("AABAADABAAEAACIAA")."""
    return max(Counter(c.lower() for c in letters).values()) > share * len(letters)


def _mark_short_runs(tokens: list[str], odd: list[bool]) -> None:
    i = 0
    while i < len(tokens):
        j = i
        while j < len(tokens) and _CODE.fullmatch(tokens[j]):
            j += 1
        joined = "".join(tokens[i:j])
        cased = any(_CASE_SWITCH.search(t) for t in tokens[i:j])
        if len(joined) >= RUN_MIN and (cased or _odd(joined)):
            odd[i:j] = [True] * (j - i)
        i = max(j, i + 1)


def looks_like_blob(text: str) -> bool:
    """True when `text` reads as encoded bytes rather than words (see the module's docstring)."""
    tokens = [t.strip(_EDGES) or t for t in text.split()]
    chars = sum(len(t) for t in tokens)
    if not chars:
        return False
    # Judged over the whole text as over a long word: split small, base64 of bytes with zeros
    # in them is words of four that each pass ("AABA AAAA ABEA AQID").
    letters = [c for t in tokens for c in t if c.isalpha()]
    if (len(letters) >= LETTERS_MIN and _one_letter_fills(letters, LETTER_SHARE)) or (
        len(letters) >= LONG_TEXT_LETTERS and _one_letter_fills(letters, LONG_TEXT_LETTER_SHARE)
    ):
        return True
    odd = [_odd(t) for t in tokens]
    _mark_short_runs(tokens, odd)
    odd_chars = sum(len(t) for t, o in zip(tokens, odd, strict=True) if o)
    if odd_chars >= ODD_MAX or (odd_chars >= ODD_MIN and odd_chars >= ODD_SHARE * chars):
        return True
    switches = sum(len(_SWITCH.findall(t)) for t in tokens if not _NUMBER.fullmatch(t))
    if switches >= SWITCH_MIN and switches >= SWITCH_SHARE * chars:
        return True
    digits = sum(c.isdigit() for t in tokens for c in t)
    if digits >= DIGITS_MIN and digits >= DIGITS_SHARE * chars:
        return True
    # Hex with many zero bytes reads as numbers ("0000 000A 0ADA") and words ("DBEA").
    hexed = [t for t in tokens if _HEX.fullmatch(t)]
    hex_chars = sum(len(t) for t in hexed)
    hex_digits = sum(c.isdigit() for t in hexed for c in t)
    if (
        hex_chars >= HEX_MIN
        and hex_chars >= HEX_SHARE * chars
        and hex_digits >= HEX_DIGITS * hex_chars
    ):
        return True
    # Silence is zeros: "AAAA AAAA AAAA ..." in base64, "0000 0000 ..." in hex.
    longer = [t for t in tokens if len(t) >= 2]
    if len(longer) < REPEATS_MIN:
        return False
    most = max(Counter(longer).values())
    return len(set(longer)) <= len(longer) / 3 or most >= len(longer) / 2
