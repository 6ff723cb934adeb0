"""tools/measure_speaker.py's arithmetic: the rates at a threshold, and the false actions an
hour they stand for at the stated rate of other people's commands."""

from __future__ import annotations

import numpy as np

from tests.conftest import tool

measure_speaker = tool("measure_speaker")


def test_rates_count_each_side_of_the_threshold_and_scale_the_far_to_an_hour() -> None:
    trials = measure_speaker.Trials(
        genuine=np.array([0.9, 0.8, 0.6, 0.5]),
        impostor=np.array([0.75, 0.2, 0.1, 0.3, 0.4]),
        genuine_source=["kokoro"] * 4,
        impostor_source=["kokoro", "kokoro", "espeak", "espeak", "espeak"],
        enrol_s=10.0,
    )
    out = measure_speaker.rates(trials, 0.7)
    per_hour = measure_speaker.BYSTANDER_COMMANDS_PER_HOUR
    assert out["far"] == 0.2 and out["frr"] == 0.5
    assert out["far_kokoro"] == 0.5 and out["far_espeak"] == 0.0
    assert out[f"false_actions_per_hour_at_{per_hour}"] == 0.2 * per_hour
