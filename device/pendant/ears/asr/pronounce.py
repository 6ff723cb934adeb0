"""Pronunciations (CMU / ARPAbet phones) for the grammar's words.

The CMU dictionary shipped in the pocketsphinx wheel covers ordinary English; the names people
give their devices ("EcoBee") often are not in it. Those are spelled by espeak-ng in American
English IPA and mapped to the CMU phone set. A few words get an extra pronunciation the CMU
dictionary lacks but people use ("off" as AA F beside AO F): measured on the test recordings,
it fixes misrecognitions of "turn off ...".
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

# Common American variants missing from the CMU dictionary.
EXTRA: dict[str, list[str]] = {
    "off": ["AA F"],
    "unpause": ["AH N P AO Z"],
}

# IPA (espeak-ng -v en-us --ipa) to ARPAbet; longest match first.
_IPA: dict[str, str] = {
    "eɪ": "EY", "aɪ": "AY", "ɔɪ": "OY", "aʊ": "AW", "oʊ": "OW", "əʊ": "OW", "tʃ": "CH",
    "dʒ": "JH", "iː": "IY", "uː": "UW", "ɑː": "AA", "ɔː": "AO", "ɜː": "ER", "ɚ": "ER",
    "ɝ": "ER", "ɜ": "ER", "i": "IY", "ɪ": "IH", "ᵻ": "IH", "ɛ": "EH", "e": "EH", "æ": "AE",
    "a": "AE", "ɑ": "AA", "ɒ": "AA", "ɔ": "AO", "o": "OW", "u": "UW", "ʊ": "UH", "ʌ": "AH",
    "ə": "AH", "ɐ": "AH", "p": "P", "b": "B", "t": "T", "d": "D", "k": "K", "g": "G",
    "ɡ": "G", "f": "F", "v": "V", "θ": "TH", "ð": "DH", "s": "S", "z": "Z", "ʃ": "SH",
    "ʒ": "ZH", "h": "HH", "x": "HH", "m": "M", "n": "N", "ŋ": "NG", "l": "L", "ɫ": "L",
    "w": "W", "j": "Y", "ɹ": "R", "r": "R", "ɾ": "D", "ʔ": "T",
}  # fmt: skip
_IGNORED = set("ˈˌːˑ‍̩̃ -")

# Last resort when espeak-ng is missing: one phone per letter, crude but decodable.
_LETTERS: dict[str, str] = {
    "a": "AE", "b": "B", "c": "K", "d": "D", "e": "EH", "f": "F", "g": "G", "h": "HH",
    "i": "IH", "j": "JH", "k": "K", "l": "L", "m": "M", "n": "N", "o": "AA", "p": "P",
    "q": "K", "r": "R", "s": "S", "t": "T", "u": "AH", "v": "V", "w": "W", "x": "K S",
    "y": "Y", "z": "Z",
}  # fmt: skip


def cmu_dict_path() -> Path:
    """The CMU dictionary shipped in the pocketsphinx wheel (ImportError without pocketsphinx)."""
    import pocketsphinx

    return Path(pocketsphinx.get_model_path()) / "en-us" / "cmudict-en-us.dict"


def ipa_to_arpabet(ipa: str) -> str:
    """espeak-ng's IPA as ARPAbet phones, one space between them; stress marks, and symbols with no
    CMU counterpart, are left out."""
    phones: list[str] = []
    i = 0
    while i < len(ipa):
        if ipa[i] in _IGNORED:
            i += 1
            continue
        for size in (2, 1):
            chunk = ipa[i : i + size]
            if chunk in _IPA:
                phones.append(_IPA[chunk])
                i += size
                break
        else:
            i += 1  # a diacritic or symbol with no CMU counterpart
    return " ".join(phones)


def espeak_phones(word: str) -> str | None:
    """`word` in ARPAbet as espeak-ng says it in American English; None when espeak-ng (or espeak)
    is missing, fails, or gives no phone. Runs it as a child process (up to 10 s)."""
    exe = shutil.which("espeak-ng") or shutil.which("espeak")
    if exe is None:
        return None
    try:
        out = subprocess.run(
            [exe, "-v", "en-us", "-q", "--ipa", word],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return ipa_to_arpabet(out.strip()) or None


def letter_phones(word: str) -> str:
    """One phone per letter a-z of `word` (the LETTERS guess); "AH" when it has none."""
    return " ".join(_LETTERS[c] for c in word if c in _LETTERS) or "AH"


ESPEAK = "espeak-ng"
LETTERS = "letters"


@dataclass(frozen=True, slots=True)
class Pronunciations:
    """What `pronounce` found: every word's phones, and which of them were made up."""

    phones: dict[str, list[str]]
    """Every word to one or more phone strings."""
    guessed: dict[str, str]
    """The words no dictionary has, and what made their sound up: ESPEAK, or LETTERS (one
    phone a letter, when espeak-ng is missing or fails, as on the image: hardly ever heard)."""


def pronounce(words: Iterable[str], cmu: Path | None = None) -> Pronunciations:
    """Every word's phones: CMU first, then EXTRA, then espeak-ng, then letter by letter."""
    wanted = set(words)
    found: dict[str, list[str]] = {}
    guessed: dict[str, str] = {}
    with (cmu or cmu_dict_path()).open(encoding="utf-8") as f:
        for line in f:
            head, _, phones = line.partition(" ")
            base = head.split("(", 1)[0]
            if base in wanted:
                # Drop the trailing '#' comments some CMU entries carry.
                found.setdefault(base, []).append(phones.split("#", 1)[0].strip())
    for word in sorted(wanted):
        prons = found.setdefault(word, [])
        for extra in EXTRA.get(word, []):
            if extra not in prons:
                prons.append(extra)
        if not prons:
            spoken = espeak_phones(word)
            guessed[word] = ESPEAK if spoken else LETTERS
            prons.append(spoken or letter_phones(word.replace("'", "")))
    return Pronunciations(found, guessed)


def dictionary_text(prons: dict[str, list[str]]) -> str:
    """The pocketsphinx dictionary format: 'word phones', alternates as 'word(2) phones'."""
    lines = []
    for word in sorted(prons):
        for i, phones in enumerate(prons[word]):
            lines.append(f"{word if i == 0 else f'{word}({i + 1})'} {phones}")
    return "\n".join(lines) + "\n"
