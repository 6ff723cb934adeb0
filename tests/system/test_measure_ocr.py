"""The OCR measurement (tools/measure_ocr.py, tools/ocr_sets.py): rendered sets, scoring, CLI."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from pendant.core.errors import ModelError
from pendant.core.model_cache import model_path
from pendant.eyes import OCR_MODEL
from tests.conftest import REPO, demo_config, tool

ocr_sets = tool("ocr_sets")  # measure_ocr imports it by this name
measure_ocr = tool("measure_ocr")

TOOL = REPO / "tools" / "measure_ocr.py"


def _digest(part: str) -> list[str]:
    return [hashlib.sha256(s.frame.tobytes()).hexdigest() for s in ocr_sets.rendered(part)]


def test_the_rendered_parts_are_the_same_pixels_every_run_and_apart() -> None:
    first = _digest("heldout")
    assert first == _digest("heldout") and len(first) == 40 and len(set(first)) == 40
    assert not set(first) & set(_digest("tune"))
    # Held out means other fonts and other text, not only other pixels.
    assert not set(ocr_sets.TUNE_FONTS) & set(ocr_sets.HELDOUT_FONTS)
    tune_lines = {line for _, lines in ocr_sets.TUNE_TEXTS for line in lines}
    assert not tune_lines & {line for _, lines in ocr_sets.HELDOUT_TEXTS for line in lines}
    conditions = {s.condition for s in ocr_sets.rendered("tune")}
    assert conditions == set(ocr_sets.CONDITIONS)


def test_a_letter_is_scored_against_the_lines_as_wrapped() -> None:
    kind, text = ocr_sets.HELDOUT_TEXTS[7]
    sample = ocr_sets._render(kind, text, ocr_sets.HELDOUT_FONTS[0], "clean", seed=1)
    assert len(sample.lines) > 1 and " ".join(sample.lines) == text[0]
    assert sample.frame.shape == (ocr_sets.HEIGHT, ocr_sets.WIDTH, 3)


def test_scores_count_characters_words_and_lines() -> None:
    reference = ["Platform 4", "Trains to Cambridge"]
    assert measure_ocr.score(reference, ["Platform 4", "Trains to Cambridqe"]) == {
        "errors": 1, "chars": 30, "words_found": 4, "words": 5,
        "lines_missed": 0, "lines": 2,
    }  # fmt: skip
    nothing = measure_ocr.score(reference, [])
    assert nothing["errors"] == 30 and nothing["lines_missed"] == 2
    assert measure_ocr.score([], ["X"])["errors"] == 1  # text where there is none


@pytest.fixture(scope="module")
def ocr_model() -> Path:
    try:
        return model_path(demo_config(), OCR_MODEL)
    except ModelError as exc:
        pytest.skip(f"the OCR model is not in the cache (make models): {exc}")


def test_the_tool_reads_the_photos_through_the_eyes_reader(ocr_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "ocr.json"
    done = subprocess.run(
        [sys.executable, str(TOOL), "--part", "photos", "--part", "notext", "--out", str(out)],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    (figures,) = json.loads(out.read_text()).values()
    assert set(figures["parts"]) == {"photos", "notext"}
    rows = {r["name"]: r for r in figures["rows"]}
    # The demo labels read exactly; the cat, the coffee and the astronaut read as no text.
    assert all(rows[name]["errors"] == 0 for name in ("oat-milk.png", "platform.png", "note.png"))
    assert all(not rows[f"skimage-{n}"]["read"] for n in ("chelsea", "coffee", "astronaut"))
    assert figures["peak_rss_mb"] > 0 and figures["pss_mb_models"] > 0
    assert "notext: images 9, false_text" in done.stdout


def test_a_folder_without_a_model_is_one_line_naming_it(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(TOOL), "--model", f"x={tmp_path}", "--part", "photos"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert (
        done.stderr.strip() == f"error: --model x={tmp_path}: {tmp_path} has no rec.onnx "
        "(det.onnx, rec.onnx, cls.onnx)"
    )
