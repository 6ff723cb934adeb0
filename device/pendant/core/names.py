"""Names: what people call things in the home, the words the recogniser says for them, and
Home Assistant's ids for them.

A name in the config ("Café", "2nd floor", "Hi-Fi") is written as its owner spells it, and
that spelling is what an intent's slot carries; the recogniser hears English words only
("cafe", "second floor", "hi fi"). `normalize` turns any text into those words, the same way
for the grammar (the ears) and for the gate's vocabulary (the link), which may not import the
ears: so it lives here, with no dependency but the standard library.
"""

from __future__ import annotations

import re
import unicodedata

# The letters a name may hold: ASCII and the Latin letters with accents, strokes and ligatures
# of the languages people name rooms in, each of which `fold` turns into ASCII letters (a test
# walks the whole class). Not other scripts: the recogniser speaks English, and a name it
# cannot say is a name nobody can use. Written as \u escapes, so the same class reads the same
# in Python's re, pydantic's Rust regex and a JSON Schema consumer's ECMAScript one.
NAME_LETTERS = (
    r"A-Za-z\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u017f\u01cd-\u01dc\u0218-\u021b"
    r"\u1e00-\u1e99\u1ea0-\u1ef9"
)
# A letter or digit first; then also spaces, hyphens and apostrophes (typed or typographic).
# Nothing that means something in TOML, JSON, hassil templates or Home Assistant's Jinja.
NAME_PATTERN = rf"^[{NAME_LETTERS}0-9][{NAME_LETTERS}0-9'\u2019 -]*$"
NAME_MAX_CHARS = 60
# Home Assistant's entity ids, as its registry makes them: "light.bed_light".
ENTITY_ID_PATTERN = r"^[a-z_]+\.[a-z0-9_]+$"
ENTITY_ID_MAX_CHARS = 255

# Latin letters Unicode does not decompose into a base letter and marks, as English speakers
# say them (the usual transliterations).
_LETTERS = str.maketrans({
    "æ": "ae", "Æ": "AE", "œ": "oe", "Œ": "OE", "ß": "ss", "ø": "o", "Ø": "O", "ð": "d",
    "Ð": "D", "þ": "th", "Þ": "TH", "đ": "d", "Đ": "D", "ħ": "h", "Ħ": "H", "ı": "i",
    "ĸ": "k", "ŀ": "l", "Ŀ": "L", "ł": "l", "Ł": "L", "ŉ": "n", "ŋ": "ng", "Ŋ": "NG",
    "ŧ": "t", "Ŧ": "T",
})  # fmt: skip

_ONES = [
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen",
    "nineteen",
]  # fmt: skip
_TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
_ORDINALS = {
    "one": "first", "two": "second", "three": "third", "five": "fifth", "eight": "eighth",
    "nine": "ninth", "twelve": "twelfth",
}  # fmt: skip
# One spelling per spoken word: the recogniser cannot tell them apart, and two spellings
# would be two paths for one sound.
_SPELLING = {"whats": "what's", "thats": "that's", "hows": "how's"}
_ORDINAL = re.compile(r"(?<![a-z\d.])(\d+)(?:st|nd|rd|th)\b")


def fold(text: str) -> str:
    """`text` with its Latin letters as ASCII ("Café" -> "Cafe", "Straße" -> "Strasse");
    characters of other scripts are left as they are."""
    decomposed = unicodedata.normalize("NFKD", text.translate(_LETTERS))
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def number_words(n: int) -> str:
    """Spoken English for 0 <= n < 1,000,000 ('twenty five', 'one hundred and five' is not
    used: people and the templates say 'one hundred five' rarely, so one canonical form)."""
    if n < 0:
        return "minus " + number_words(-n)
    if n < 20:
        return _ONES[n]
    if n < 100:
        tens, ones = divmod(n, 10)
        return _TENS[tens] + ("" if ones == 0 else " " + _ONES[ones])
    if n < 1000:
        hundreds, rest = divmod(n, 100)
        return _ONES[hundreds] + " hundred" + ("" if rest == 0 else " " + number_words(rest))
    thousands, rest = divmod(n, 1000)
    return number_words(thousands) + " thousand" + ("" if rest == 0 else " " + number_words(rest))


def ordinal_words(n: int) -> str:
    """Spoken English for the n-th: 2 -> 'second', 21 -> 'twenty first', 40 -> 'fortieth'."""
    *head, last = number_words(n).split()
    if last in _ORDINALS:
        last = _ORDINALS[last]
    elif last.endswith("y"):
        last = last[:-1] + "ieth"
    else:
        last += "th"
    return " ".join([*head, last])


def normalize(text: str) -> list[str]:
    """Text (a name, a file name, a whisper transcript, a template) to the recogniser's words.

    Lowercase ASCII: accents go ("Café" is "cafe"); '%' is 'percent'; ordinals and digits
    become words ("2nd" is "second"); hyphens split words; other punctuation goes, except an
    apostrophe inside a word: "what's" stays one word, as in the templates and in the CMU
    dictionary.
    """
    text = fold(text).lower().replace("\u2019", "'")
    text = text.replace("%", " percent ").replace("1/2", " half ")
    text = _ORDINAL.sub(lambda m: f" {ordinal_words(int(m.group(1)))} ", text)
    # "20.5 degrees" is said "twenty point five"; not in a name like "PM2.5", which the
    # home's names (no dots allowed) spell "PM2 5".
    text = re.sub(r"(?<![a-z\d.])(\d+)\.(\d+)\b", _decimal_words, text)
    text = re.sub(r"\d+", lambda m: f" {number_words(int(m.group()))} ", text)
    text = re.sub(r"[^a-z0-9' ]+", " ", text)
    words = (w.strip("'") for w in text.split())
    return [_SPELLING.get(w, w) for w in words if w]


def _decimal_words(m: re.Match[str]) -> str:
    return f" {number_words(int(m.group(1)))} point {' '.join(_ONES[int(d)] for d in m.group(2))} "
