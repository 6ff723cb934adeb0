"""Names as people write them and the words the recogniser says for them (pendant.core.names)."""

from __future__ import annotations

import json
import re

import jsonschema
import pytest

from pendant.core.events import SCHEMA_DIR
from pendant.core.names import NAME_PATTERN, fold, normalize, ordinal_words


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("Café", ["cafe"]),
        ("2nd floor", ["second", "floor"]),
        ("3rd Bedroom", ["third", "bedroom"]),
        ("21st Century Lamp", ["twenty", "first", "century", "lamp"]),
        ("the 40th", ["the", "fortieth"]),
        ("Hi-Fi", ["hi", "fi"]),
        ("Straße", ["strasse"]),
        ("Ærø Øresund", ["aero", "oresund"]),
        ("Mike’s Room", ["mike's", "room"]),
        ("Sensor 2", ["sensor", "two"]),
        ("turn on the hi fi in the café", ["turn", "on", "the", "hi", "fi", "in", "the", "cafe"]),
    ],
)
def test_normalize_says_names_in_english_words(text: str, words: list[str]) -> None:
    assert normalize(text) == words


def test_ordinals() -> None:
    said = [ordinal_words(n) for n in (1, 2, 3, 4, 5, 8, 9, 12, 20, 21, 100, 1000)]
    assert said == [
        "first", "second", "third", "fourth", "fifth", "eighth", "ninth", "twelfth",
        "twentieth", "twenty first", "one hundredth", "one thousandth",
    ]  # fmt: skip


def test_every_letter_a_name_may_hold_folds_to_ascii_letters() -> None:
    # The pattern's promise: any name the config takes is one the recogniser can say.
    name = re.compile(NAME_PATTERN)
    admitted = [chr(c) for c in range(0x20, 0x3000) if name.fullmatch(chr(c))]
    assert len(admitted) > 400
    for ch in admitted:
        said = fold(ch)
        assert said.isascii() and said.isalnum(), (ch, hex(ord(ch)), said)


@pytest.mark.parametrize("bad", ['a"b', "a\\b", "a{b}", "a[b]", "a<b>", "a|b", "a\nb", "a.b"])
def test_the_pattern_refuses_what_breaks_toml_json_or_templates(bad: str) -> None:
    assert re.fullmatch(NAME_PATTERN, bad) is None


def test_the_published_schema_reads_the_pattern_as_python_does() -> None:
    # The same class in the JSON Schema a consumer validates commands with (\u escapes).
    schema = json.loads((SCHEMA_DIR / "command.json").read_text())
    validator = jsonschema.Draft202012Validator(schema)
    base = {"type": "command", "version": 1, "id": "0" * 32, "device_id": "pendant"}
    base |= {"timestamp_ms": 1, "name": "area"}
    for area, ok in (("Café", True), ("2nd Floor", True), ("Hi-Fi", True), ("Кухня", False)):
        assert validator.is_valid({**base, "area": area}) is ok, area
