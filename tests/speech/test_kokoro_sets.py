"""tools/kokoro_sets.py: the parts that need no rendering (voice split, plans, manifest format,
mixing at an SNR, cutting read speech at pauses). Rendering itself is `make sets`."""

from __future__ import annotations

import json
from collections import Counter
from types import ModuleType

import numpy as np
import pytest

from tests.conftest import tool

# Kokoro voices that others keep back for checks on voices nobody tuned for: never in our sets.
KEPT_BACK = {"af_heart", "am_onyx", "bf_emma", "bm_george", "ff_siwis", "hf_alpha", "hm_omega"}
KEPT_BACK |= {"zf_xiaoxiao"}

# The tune half as the hash rule gave it when the sets were first built: it must never move.
TUNE = [
    "af_bella", "af_jessica", "af_kore", "af_nova", "af_river", "af_sarah", "am_fenrir",
    "am_michael", "am_puck", "bf_lily", "bm_fable", "bm_lewis", "em_alex", "em_santa", "hf_beta",
    "hm_psi", "jf_nezumi", "jf_tebukuro", "jm_kumo", "zf_xiaobei", "zf_xiaoyi", "zm_yunjian",
    "zm_yunxia",
]  # fmt: skip


@pytest.fixture(scope="module")
def ks() -> ModuleType:
    return tool("kokoro_sets")


def test_voice_split_is_stable_balanced_and_leaves_the_kept_back_voices_out(ks: ModuleType):
    split = ks.voice_split()
    assert set(split) == set(ks.ALL_VOICES)
    assert len(ks.ALL_VOICES) == len(set(ks.ALL_VOICES)) == 46
    assert not KEPT_BACK & set(ks.ALL_VOICES)
    assert ks.voices_of("tune") == TUNE
    assert set(ks.voices_of("held-out")) == set(ks.ALL_VOICES) - set(TUNE)
    for voices in ks.VOICE_GROUPS.values():
        halves = Counter(split[v] for v in voices)
        assert abs(halves["tune"] - halves["held-out"]) <= 1
    assert split == ks.voice_split()


def test_plans_use_only_allowed_voices_and_speak_every_case_in_both_splits(ks: ModuleType):
    cases = ks.load_cases()
    commands = ks.plan_commands(cases.CASES)
    talk = ks.plan_talk()
    items = commands + talk
    assert len({i.file for i in items}) == len(items)
    assert {i.voice for i in items} <= set(ks.ALL_VOICES)
    split = ks.voice_split()
    assert all(i.split == split[i.voice] for i in items)
    assert len(commands) == len(ks.ALL_VOICES) * ks.COMMANDS_PER_VOICE
    for s in ks.SPLITS:
        spoken = Counter(i.text for i in commands if i.split == s)
        assert set(spoken) == {c.text for c in cases.CASES}
        assert min(spoken.values()) >= 3
    assert {i.text for i in talk} == set(ks.CHAT) and len(ks.CHAT) >= 40
    conditions = Counter(i.condition for i in items)
    assert set(conditions) == set(ks.CONDITIONS)
    assert max(conditions.values()) - min(conditions.values()) <= len(items) // 20
    for i in items:
        assert ks.SPEED_RANGE[0] <= i.speed <= ks.SPEED_RANGE[1]
        if i.noise == "none":
            assert i.snr_db is None
        else:
            assert ks.SNR_RANGE_DB[0] <= i.snr_db <= ks.SNR_RANGE_DB[1]
    assert commands == ks.plan_commands(cases.CASES)  # deterministic


def test_chatter_is_fortunes_prose_in_both_kinds_of_voice_and_both_splits(ks: ModuleType, tmp_path):
    fortunes = {
        "people": "A friend is a present you give yourself.\n\t\t-- Robert Louis Stevenson\n%\n"
        "Worry, doubt, self-distrust, fear and despair are the long, long years that bow\n"
        "-- the head and turn the growing spirit back to dust.\n"
        "\t\t-- Samuel Ullman, on being\n\t\tyoung, 1918\n%\n"
        "Short one.\n%\n"
        "if (x) { return; }\n%\n"
        + " ".join(f"Sentence {w} is long enough to keep." for w in "abcdef")
        + "\n",
        "food": "Never eat more than you can lift. Or at least more than you can carry home.\n",
    }
    for name in ks.FORTUNE_FILES:
        (tmp_path / name).write_text(fortunes.get(name, ""), encoding="latin-1")
    texts = ks.chatter_texts(tmp_path)
    assert "A friend is a present you give yourself." in texts  # the attribution is gone
    dash = [t for t in texts if t.startswith("Worry")]  # a dash at a line's start is prose
    assert dash == [
        "Worry, doubt, self-distrust, fear and despair are the long, long years that bow -- "
        "the head and turn the growing spirit back to dust."
    ]  # and a wrapped attribution goes whole
    assert not any("Short" in t or "{" in t for t in texts)  # too short; not prose
    assert all(ks.CHATTER_WORDS[0] <= len(t.split()) <= ks.CHATTER_WORDS[1] for t in texts)
    assert len([t for t in texts if t.startswith("Sentence")]) == 2  # 4 + 2 sentences of 7 words

    many = [f"this is ordinary sentence number {n} said by someone" for n in range(800)]
    items = ks.plan_chatter(many)
    assert items == ks.plan_chatter(list(reversed(many)))  # deterministic
    assert len(items) == ks.CHATTER_KOKORO + ks.CHATTER_ESPEAK
    assert len({i.file for i in items}) == len(items) and all(
        i.kind == "non_command" for i in items
    )
    split = {**ks.voice_split(), **ks.espeak_split()}
    assert all(i.split == split[i.voice] for i in items)
    espeak = [i for i in items if i.voice.startswith(ks.ESPEAK_PREFIX)]
    assert len(espeak) == ks.CHATTER_ESPEAK and {i.accent for i in espeak} == {"espeak-ng"}
    assert {i.voice for i in items} - set(espeak_voices := {i.voice for i in espeak}) <= set(
        ks.ALL_VOICES
    )
    assert not {v.removeprefix(ks.ESPEAK_PREFIX) for v in espeak_voices} & set(ks.BABBLE_VOICES)
    # A voice's variants share its rules: they are in one half, and which half is pinned.
    tune = ["en-gb-scotland+f2", "en-gb-x-gbclan", "en-gb-x-gbclan+m6", "en-us-nyc", "en-us-nyc+f4"]
    assert [v for v, s in sorted(ks.espeak_split().items()) if s == "tune"] == [
        ks.ESPEAK_PREFIX + v for v in tune
    ]
    assert Counter(i.split for i in espeak) == {"tune": 200, "held-out": 280}
    assert set(Counter(i.condition for i in items)) == set(ks.CONDITIONS)


def test_manifest_entries_keep_speech_sets_format_and_add_the_conditions(ks: ModuleType):
    item = ks.plan_commands(ks.load_cases().CASES)[1]
    audio = np.zeros(ks.RATE_HZ * 2, dtype=np.float32)
    mixed = {"audio": audio, "speech_start_s": 0.5, "speech_end_s": 1.0, "reverb_params": None}
    e = ks.entry(item, mixed)
    for key in ("file", "kind", "intent", "slots", "text", "voice", "snr_db"):  # speech_sets.py
        assert key in e
    for key in ("split", "accent", "noise", "reverb", "condition", "speed", "duration_s"):
        assert key in e
    assert e["kind"] == "command" and e["duration_s"] == 2.0
    assert e["split"] in ks.SPLITS and e["noise"] in ks.NOISES
    header = ks.manifest_header("commands", "x", [e])
    assert header["split"] == {item.voice: e["split"]}
    assert json.loads(json.dumps({**header, "files": [e]}))["files"][0] == e


@pytest.mark.parametrize("snr_db", [0.0, 7.5, 20.0])
@pytest.mark.parametrize("noise", ["pink", "music"])
def test_mixing_at_an_snr_gives_that_snr(ks: ModuleType, snr_db: float, noise: str):
    rng = np.random.default_rng(1)
    n = ks.RATE_HZ * 3
    speech = np.zeros(n, dtype=np.float32)
    region = slice(ks.RATE_HZ // 2, 2 * ks.RATE_HZ)
    speech[region] = 0.05 * rng.standard_normal(region.stop - region.start)
    bed = ks.pink_noise(n, rng) if noise == "pink" else ks.music(n, rng)
    assert ks.rms(bed) == pytest.approx(1.0, rel=1e-3)
    mixed, scaled = ks.mix_at_snr(speech, region, bed, snr_db)
    assert ks.snr_of(speech[region], scaled) == pytest.approx(snr_db, abs=1e-3)
    assert np.allclose(mixed - scaled, speech, atol=1e-6)


def test_read_speech_is_cut_at_pauses(ks: ModuleType):
    rate = ks.RATE_HZ
    rng = np.random.default_rng(2)
    parts = []
    for seconds in (1.5, 2.0, 1.0):
        t = np.arange(int(seconds * rate)) / rate
        parts += [0.2 * np.sin(2 * np.pi * 220 * t), 1e-4 * rng.standard_normal(int(0.6 * rate))]
    audio = np.concatenate(parts).astype(np.float32)
    spans = ks.utterances(audio)
    assert len(spans) == 3
    assert [round((b - a) / rate, 1) for a, b in spans] == [1.5, 2.0, 1.0]


def test_the_harness_counts_wrong_actions_apart_from_rejections_and_false_intents_per_hour():
    measure_asr = tool("measure_asr")
    o = measure_asr.Outcome
    outcomes = [
        o("tune", "clean", False, "american", None, "command", "right", 2.0),
        o("tune", "pink", True, "accent", 5.0, "command", "wrong", 2.0),
        o("tune", "pink", False, "accent", 15.0, "command", "rejected", 2.0),
        o("tune", "clean", False, "american", None, "other", "false", 1800.0),
        o("tune", "music", False, "british", 3.0, "other", "quiet", 1800.0),
        o("held-out", "clean", False, "british", None, "command", "right", 2.0),
    ]
    lines = measure_asr.breakdown(outcomes)
    tune_all = lines[lines.index("tune:") + 1]
    assert "commands    3: right    1" in tune_all
    assert "WRONG ACTIONS   1" in tune_all and "rejected    1" in tune_all
    assert "false intents   1 =    1.0/h" in tune_all
    assert "held-out:" in lines and "all:" in lines
    assert any(
        line.strip().startswith("SNR 0-10 dB") and "WRONG ACTIONS   1" in line for line in lines
    )
