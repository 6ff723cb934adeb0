"""The body's pure parts: gestures, LED choice, battery policy and backends, pins, lgpio's
working directory. No bus, no event loop; times are made up, so nothing here waits."""

from __future__ import annotations

import errno
import logging
import os
import stat
from datetime import UTC, datetime
from pathlib import Path
from typing import get_args

import pytest

from pendant.body import gpio
from pendant.body.battery import GaugeUnavailable, Reading, Reporter, create_gauge
from pendant.body.battery.pisugar3 import PiSugar3
from pendant.body.battery.simulated import SimulatedGauge
from pendant.body.feedback import (
    BUZZES,
    FLASH_S,
    LED_ONCE,
    LED_ONCE_S,
    SENSING,
    feedback_for,
    inverted,
)
from pendant.body.gestures import Action, Gestures, Timings
from pendant.body.indicators import (
    ASKING_GRACE_S,
    ERROR_S,
    IDENTIFY_S,
    PRIORITY,
    READY_S,
    Indicators,
)
from pendant.body.led import PATTERNS
from pendant.body.pins import BODY_PINS, load_pins, parse_pins
from pendant.body.player import Step
from pendant.core.config import BodyConfig, parse_config
from pendant.core.errors import BackendUnavailable, ConfigError
from pendant.core.events import (
    Activity,
    Ask,
    Battery,
    BuzzPattern,
    Camera,
    Command,
    Error,
    Intent,
    LinkState,
    Mic,
    NotRecognized,
    OutsideState,
    PairingStatus,
)

T = Timings(double_press_s=0.4, long_hold_s=2.0, pairing_hold_s=8.0)
DEV = "pendant-test"


# --- gestures -------------------------------------------------------------------------------


def test_hold_to_talk_starts_at_once_and_ends_on_release() -> None:
    g = Gestures(T)
    assert g.press(10.0) == [Action.TALK_START]
    assert g.poll(11.5) == []
    assert g.deadline_s() == 12.0
    assert g.release(11.9) == [Action.TALK_END]
    assert g.deadline_s() is None


def test_double_press_is_capture_and_its_second_press_starts_no_talk() -> None:
    g = Gestures(T)
    assert g.press(0.0) == [Action.TALK_START]
    assert g.release(0.1) == [Action.TALK_CANCEL]  # no talk; a tap, unless a press follows
    assert g.poll(0.3) == []
    assert g.press(0.3) == [Action.CAPTURE]  # half a double press: never a "yes"
    assert g.poll(1.0) == []
    assert g.poll(5.0) == []  # a spent press: no long hold from it
    assert g.release(5.0) == []
    # A third press is talk again, not another capture.
    assert g.press(5.1) == [Action.TALK_START]


@pytest.mark.parametrize(
    ("first_up_s", "second_down_s"),
    [(0.5, 0.6), (0.1, 0.6)],  # the first press too long; the gap too long
)
def test_presses_too_long_or_too_far_apart_are_two_talks(
    first_up_s: float, second_down_s: float
) -> None:
    g = Gestures(T)
    g.press(0.0)
    g.release(first_up_s)
    # A short first press was a tap, said by the second press if no poll came between.
    tap = [Action.TAP] if first_up_s <= T.double_press_s else []
    assert g.press(second_down_s) == [*tap, Action.TALK_START]


def test_long_hold_ends_the_talk_at_the_buzz_and_toggles_on_release() -> None:
    g = Gestures(T)
    g.press(0.0)
    assert g.poll(2.0) == [Action.TALK_CANCEL, Action.MUTE_ARMED]
    assert g.deadline_s() == 8.0
    assert g.release(3.0) == [Action.MUTE_TOGGLE]
    # The mute gesture is not the first half of a double press.
    assert g.press(3.1) == [Action.TALK_START]


def test_very_long_hold_opens_pairing_and_never_toggles_the_mute() -> None:
    g = Gestures(T)
    g.press(0.0)
    assert g.poll(2.5) == [Action.TALK_CANCEL, Action.MUTE_ARMED]
    assert g.poll(8.0) == [Action.PAIRING]
    assert g.release(9.0) == []


def test_a_late_loop_still_sees_the_gesture_the_edges_made() -> None:
    # The loop never polled during the hold (busy): the release edge's own time decides.
    g = Gestures(T)
    g.press(0.0)
    assert g.release(3.0) == [Action.TALK_CANCEL, Action.MUTE_ARMED, Action.MUTE_TOGGLE]
    g.press(10.0)
    assert g.release(19.0) == [Action.TALK_CANCEL, Action.MUTE_ARMED, Action.PAIRING]


def test_repeated_edges_are_ignored() -> None:
    g = Gestures(T)
    assert g.press(0.0) == [Action.TALK_START]
    assert g.press(0.01) == []
    assert g.release(1.0) == [Action.TALK_END]
    assert g.release(1.01) == []


def counted(g: Gestures, presses: list[tuple[float, float]]) -> list[Action]:
    """Press and release at the given times; every action the gestures said, in order."""
    actions: list[Action] = []
    for down_s, up_s in presses:
        actions += g.poll(down_s) + g.press(down_s) + g.poll(up_s) + g.release(up_s)
    return actions


def test_while_counting_a_burst_of_short_presses_is_counted_and_never_a_capture() -> None:
    """Issue 14 (the pairing code): while the pairing window is open, three quick presses are
    a count of 3, reported `count_gap_s` after the last one, not a capture and a tap."""
    g = Gestures(T)
    g.counting = True
    actions = counted(g, [(0.0, 0.1), (0.3, 0.4), (0.9, 1.0)])
    assert Action.CAPTURE not in actions and Action.TAP not in actions
    assert actions.count(Action.TALK_START) == 3 and actions.count(Action.TALK_CANCEL) == 3
    assert g.deadline_s() == 1.0 + T.count_gap_s
    assert g.poll(2.4) == []
    assert g.poll(2.5) == [Action.PRESSES] and g.presses == 3
    assert g.poll(10.0) == [] and g.deadline_s() is None
    # A pause of more than count_gap_s: two bursts.
    counted(g, [(20.0, 20.1)])
    assert g.poll(21.0) == [] and g.press(21.7) == [Action.TALK_START]
    g.release(21.8)
    assert g.poll(23.3) == [Action.PRESSES] and g.presses == 2


def test_while_counting_hold_is_still_talk_mute_and_pairing() -> None:
    g = Gestures(T)
    g.counting = True
    assert g.press(0.0) == [Action.TALK_START]
    assert g.release(1.0) == [Action.TALK_END]
    assert g.poll(5.0) == []  # talk alone is no burst
    g.press(6.0)
    assert g.poll(14.0) == [Action.TALK_CANCEL, Action.MUTE_ARMED, Action.PAIRING]
    assert g.release(14.5) == []
    assert g.poll(20.0) == []


def test_a_long_press_spoils_a_burst_which_then_counts_zero() -> None:
    """A count the wearer did not mean (2 of 3 presses, say) could be another phone's code:
    a press held too long in a burst makes it accept no one instead."""
    g = Gestures(T)
    g.counting = True
    counted(g, [(0.0, 0.1), (0.3, 0.4)])
    g.press(0.6)
    assert g.release(1.5) == [Action.TALK_END]
    assert g.poll(1.5 + T.count_gap_s) == [Action.PRESSES] and g.presses == 0


def test_counting_off_drops_a_burst_and_double_press_is_back() -> None:
    g = Gestures(T)
    g.counting = True
    counted(g, [(0.0, 0.1)])
    g.counting = False
    assert g.poll(5.0) == [] and g.deadline_s() is None
    assert g.press(10.0) == [Action.TALK_START]
    assert g.release(10.1) == [Action.TALK_CANCEL]
    assert g.poll(10.3) == [] and g.deadline_s() == pytest.approx(10.501)
    assert g.poll(10.6) == [Action.TAP]  # no second press came: a tap
    assert g.deadline_s() is None
    assert g.press(10.3) == [Action.CAPTURE]


def test_timings_must_be_in_order() -> None:
    with pytest.raises(ValueError):
        Timings(double_press_s=0.5, long_hold_s=0.4, pairing_hold_s=8)
    with pytest.raises(ValueError):
        Timings(double_press_s=0.5, long_hold_s=2, pairing_hold_s=8, count_gap_s=0.5)


# --- which LED pattern ------------------------------------------------------------------------


def test_led_priority_follows_the_events() -> None:
    ind = Indicators(link="connected")  # a pendant that is up: idle is dark
    assert ind.pattern(0) == "off"
    ind.apply(Activity(device_id=DEV, sensor="mic", state="capturing"), 0)
    assert ind.pattern(0) == "listening"
    ind.apply(Activity(device_id=DEV, sensor="camera", state="thinking"), 0)
    assert ind.pattern(0) == "thinking"
    ind.apply(Battery(device_id=DEV, pct=10, low=True), 0)
    assert ind.pattern(0) == "low_battery"
    ind.apply(Battery(device_id=DEV, pct=10, low=True, charging=True), 0)
    assert ind.pattern(0) == "thinking"  # charging: low, but being dealt with
    ind.apply(Camera(device_id=DEV, muted=True), 0)
    assert ind.pattern(0) == "muted"
    ind.apply(Error(device_id=DEV, reason="bad command"), 100)
    assert ind.pattern(100) == "error"
    assert ind.next_change_s(100) == 100 + ERROR_S
    ind.apply(Command(device_id=DEV, name="identify"), 100)
    assert ind.pattern(100) == "identify"
    assert ind.next_change_s(100) == 100 + ERROR_S  # the sooner of the two
    assert ind.pattern(100 + IDENTIFY_S) == "muted"
    assert ind.next_change_s(100 + IDENTIFY_S) is None


def test_an_action_waiting_for_a_tap_asks_with_a_lit_pattern() -> None:
    ind = Indicators()
    ind.apply(Activity(device_id=DEV, sensor="mic", state="confirm"), 0)
    assert ind.pattern(0) == "confirm"
    # The mic stays open while it asks: a lit pattern, never dark for longer than a wink.
    assert max(level for level, _ in PATTERNS["confirm"]) == 1.0
    assert all(seconds <= 0.1 for level, seconds in PATTERNS["confirm"] if level == 0)
    ind.apply(Mic(device_id=DEV, state="muted", muted=True), 0)
    assert ind.pattern(0) == "muted"
    ind.apply(Mic(device_id=DEV, state="ready"), 0)
    ind.apply(Activity(device_id=DEV, sensor="mic", state="capturing"), 0)
    assert ind.pattern(0) == "listening"


def test_nothing_waits_for_a_tap_while_the_pairing_window_is_open() -> None:
    """Presses are a phone's code then, never a yes (a paired phone can make the ears wait)."""
    ind = Indicators()
    ind.apply(Activity(device_id=DEV, sensor="mic", state="confirm"), 0)
    ind.apply(PairingStatus(device_id=DEV, open=True, user="phone-abc123", asked=True), 0)
    assert not ind.action_waiting
    assert ind.pattern(0) == "pairing_listening"  # the window, and the mic open
    ind.apply(PairingStatus(device_id=DEV, open=False), 0)
    assert ind.action_waiting and ind.pattern(0) == "confirm"


def test_mute_sources() -> None:
    ind = Indicators()
    ind.apply(Mic(device_id=DEV, state="muted", muted=True), 0)
    assert ind.software_muted and ind.pattern(0) == "muted"
    ind.apply(Mic(device_id=DEV, state="ready"), 0)
    assert not ind.muted
    ind.hardware_muted = True
    assert ind.muted and not ind.software_muted and ind.pattern(0) == "muted"


def test_pairing_window_shows_but_never_hides_a_sensor_at_work() -> None:
    ind = Indicators()
    ind.apply(PairingStatus(device_id=DEV, open=True, user="phone-abc123"), 0)
    assert ind.pattern(0) == "pairing"
    ind.apply(Activity(device_id=DEV, sensor="mic", state="capturing"), 0)
    assert ind.pattern(0) == "pairing_listening"  # lit: the mic is open
    ind.apply(Mic(device_id=DEV, state="muted", muted=True), 0)
    assert ind.pattern(0) == "pairing"  # muted beats listening, as without the window
    ind.apply(Error(device_id=DEV, reason="bad command"), 0)
    assert ind.pattern(0) == "error"
    ind.apply(PairingStatus(device_id=DEV, open=False), 0)
    assert ind.pattern(100) == "muted"


def link(state: OutsideState) -> LinkState:
    return LinkState(device_id=DEV, state=state)


def test_the_led_says_setting_up_then_why_the_link_is_away_then_ready() -> None:
    ind = Indicators()
    # Nothing from the link yet (first boot, pendant-setup still running): setting up.
    assert ind.pattern(0) == "setting_up"
    ind.apply(link("connecting"), 0)
    assert ind.pattern(0) == "setting_up"
    ind.apply(link("no_network"), 1)
    assert ind.pattern(1) == "no_network"
    ind.apply(link("no_broker"), 2)
    assert ind.pattern(2) == "no_broker"
    # Connected: a brief "ready", then the idle pattern (a working pendant is dark).
    ind.apply(link("connected"), 3)
    assert ind.pattern(3) == "ready"
    assert ind.next_change_s(3) == 3 + READY_S
    assert ind.pattern(3 + READY_S) == "off"
    assert ind.next_change_s(3 + READY_S) is None
    # Connected again (a retained state replayed): no second "ready".
    ind.apply(link("connected"), 10)
    assert ind.pattern(10) == "off"
    # Lost while "ready" shows: the failure, at once, and "ready" again on the way back.
    ind.apply(link("no_broker"), 20)
    ind.apply(link("connected"), 21)
    ind.apply(link("no_network"), 21.5)
    assert ind.pattern(21.5) == "no_network"
    ind.apply(link("connected"), 30)
    assert ind.pattern(30) == "ready"
    # The link restarted: setting up until it has said how its connection went.
    ind.apply(link("connecting"), 40)
    assert ind.pattern(40) == "setting_up"


@pytest.mark.parametrize("state", ["connecting", "no_network", "no_broker", "connected"])
def test_the_link_state_never_hides_the_mute_glow_an_error_a_question_or_a_sensor(
    state: OutsideState,
) -> None:
    ind = Indicators()
    ind.apply(link(state), 0)
    shown = ind.pattern(0)
    assert shown == {"connected": "ready", "connecting": "setting_up"}.get(state, state)
    ind.apply(Activity(device_id=DEV, sensor="mic", state="capturing"), 0)
    assert ind.pattern(0) == "listening"
    ind.apply(Activity(device_id=DEV, sensor="mic", state="confirm"), 0)
    assert ind.pattern(0) == "confirm"
    ind.apply(Activity(device_id=DEV, sensor="mic", state="idle"), 0)
    ind.apply(PairingStatus(device_id=DEV, open=True, user="phone-abc123"), 0)
    assert ind.pattern(0) == "pairing"
    ind.apply(PairingStatus(device_id=DEV, open=False), 0)
    ind.apply(Mic(device_id=DEV, state="muted", muted=True), 0)
    assert ind.pattern(0) == "muted"
    ind.apply(Error(device_id=DEV, reason="bad command"), 0)
    assert ind.pattern(0) == "error"
    ind.apply(Mic(device_id=DEV, state="ready"), 0)
    # Once nothing else applies, the state shows again ("ready" only for its while).
    later_s = max(ERROR_S, READY_S)
    assert ind.pattern(later_s) == ("off" if state == "connected" else shown)


def test_the_link_state_patterns_are_told_apart_and_never_steady_lit() -> None:
    states = ("setting_up", "no_network", "no_broker", "ready")
    # Listed together, under every other pattern but off.
    assert PRIORITY[-5:] == ("no_network", "no_broker", "setting_up", "ready", "off")
    shapes = {name: PATTERNS[name] for name in states}
    assert len(set(shapes.values())) == len(states)
    for name, steps in shapes.items():
        # Steady lit means a sensor is open: none of these may look like it.
        assert any(level == 0 for level, _ in steps), name
        assert steps not in (PATTERNS["listening"], PATTERNS["thinking"], PATTERNS["error"])
    # "ready" ends inside its last, dark step: shown once, never seen to start again.
    assert PATTERNS["ready"][-1][0] == 0.0
    lit = sum(seconds for _, seconds in PATTERNS["ready"][:-1])
    assert lit <= READY_S < lit + PATTERNS["ready"][-1][1]
    # No Wi-Fi: one long flash; no broker: two; each longer than the pairing window's.
    for name, flashes in (("no_network", 1), ("no_broker", 2)):
        on = [seconds for level, seconds in PATTERNS[name] if level > 0]
        assert len(on) == flashes and min(on) > 2 * PATTERNS["pairing"][0][1]


def ask() -> Ask:
    return Ask(device_id=DEV, text="what is a good substitute for eggs")


def test_asking_shows_from_the_ask_until_the_links_buzz() -> None:
    ind = Indicators(link="connected", asking_s=10.0)
    ind.apply(ask(), 5)
    assert ind.pattern(5) == "asking"
    assert ind.next_change_s(5) == 15
    assert ind.pattern(9) == "asking"
    # The link buzzes the outcome (as the body's loop takes it: the answer, then the event):
    # the wait is over, and the answer shows once.
    outcomes: tuple[BuzzPattern, ...] = ("understood", "not_understood")
    for at_s, pattern in zip((10, 20), outcomes, strict=True):
        ind.apply(ask(), at_s)
        ind.show_feedback(pattern, at_s + 1)
        ind.apply(Command(device_id=DEV, name="buzz", pattern=pattern), at_s + 1)
        assert ind.pattern(at_s + 1) == pattern
        assert ind.pattern(at_s + 1 + LED_ONCE_S) == "off"
        assert ind.next_change_s(at_s + 1 + LED_ONCE_S) is None
    # Any other command leaves it be.
    ind.apply(ask(), 30)
    ind.apply(Command(device_id=DEV, name="say", text="dinner is ready"), 31)
    ind.apply(Command(device_id=DEV, name="identify"), 31)
    assert ind.pattern(31 + IDENTIFY_S) == "asking"


def test_only_its_own_questions_outcome_ends_asking() -> None:
    """A late answer to an older question buzzes with that question's session id: the latest
    question is still out, and still shows."""
    ind = Indicators(link="connected", asking_s=10.0)
    older, latest = ask(), ask()
    ind.apply(older, 1)
    ind.apply(latest, 2)
    late = Command(device_id=DEV, name="buzz", pattern="understood", session_id=older.session_id)
    ind.apply(late, 3)
    assert ind.pattern(3) == "asking"
    own = Command(device_id=DEV, name="buzz", pattern="understood", session_id=latest.session_id)
    ind.apply(own, 4)
    assert ind.pattern(4) == "off"


def test_a_session_id_goes_only_with_a_buzz() -> None:
    with pytest.raises(ValueError, match="say takes no session_id"):
        Command(device_id=DEV, name="say", text="hello", session_id=ask().session_id)


def test_asking_ends_on_its_own_when_no_buzz_comes() -> None:
    ind = Indicators(link="connected", asking_s=8.0 + ASKING_GRACE_S)
    ind.apply(ask(), 100)
    assert ind.pattern(100 + 8.0) == "asking"  # the link may still be about to buzz
    assert ind.next_change_s(100 + 8.0) == 100 + 8.0 + ASKING_GRACE_S
    assert ind.pattern(100 + 8.0 + ASKING_GRACE_S) == "off"
    assert ind.next_change_s(100 + 8.0 + ASKING_GRACE_S) is None
    # A second question while one is out: the wait starts again from it.
    ind.apply(ask(), 200)
    ind.apply(ask(), 205)
    assert ind.pattern(212) == "asking"
    assert ind.pattern(215) == "off"


def test_asking_is_under_the_mute_glow_and_the_sensors_over_the_links_state() -> None:
    ind = Indicators(link="no_network", asking_s=10.0)
    assert ind.pattern(0) == "no_network"
    ind.apply(ask(), 0)
    assert ind.pattern(0) == "asking"  # what the wearer waits for, over where the link is
    # A new question while one is out: the mic at work shows, then the wait again.
    ind.apply(Activity(device_id=DEV, sensor="mic", state="capturing"), 1)
    assert ind.pattern(1) == "listening"
    ind.apply(Activity(device_id=DEV, sensor="mic", state="thinking"), 2)
    assert ind.pattern(2) == "thinking"
    ind.apply(Activity(device_id=DEV, sensor="mic", state="idle"), 3)
    assert ind.pattern(3) == "asking"
    # Muted while waiting: the glow hides it, and does not end it.
    ind.apply(Mic(device_id=DEV, state="muted", muted=True), 4)
    assert ind.pattern(4) == "muted"
    ind.hardware_muted = True
    ind.apply(Mic(device_id=DEV, state="ready"), 5)
    assert ind.pattern(5) == "muted"
    ind.hardware_muted = False
    assert ind.pattern(6) == "asking"
    assert ind.pattern(10) == "no_network"
    assert PRIORITY.index("listening") < PRIORITY.index("asking") < PRIORITY.index("no_network")


def test_asking_is_calm_and_told_apart_from_thinking_listening_and_confirm() -> None:
    steps = PATTERNS["asking"]
    others = {name: s for name, s in PATTERNS.items() if name != "asking"}
    assert steps not in others.values()
    # Never steady lit (a sensor open), never bright, and repeating slower than thinking.
    assert any(level == 0 for level, _ in steps)
    assert max(level for level, _ in steps) <= 0.5
    period_s = sum(s for _, s in steps)
    assert period_s > 1.5 * sum(s for _, s in PATTERNS["thinking"])
    # No breath (thinking, setting up): it rises, then goes dark at once, never fading.
    levels = [level for level, _ in steps]
    lit = levels[:-1]
    assert lit == sorted(lit) and len(set(lit)) == len(lit) and levels[-1] == 0


def test_every_pattern_is_defined_and_sane() -> None:
    assert set(PRIORITY) == set(PATTERNS)
    for steps in PATTERNS.values():
        assert steps and all(0 <= level <= 1 and seconds >= 0 for level, seconds in steps)


# --- answers to the wearer (feedback) ---------------------------------------------------------


def pulses(steps: tuple[Step, ...]) -> list[float]:
    """How long each pulse a wearer feels lasts: the motor's on-steps, run together."""
    out: list[float] = []
    on = False
    for level, seconds in steps:
        if level > 0 and on:
            out[-1] += seconds
        elif level > 0:
            out.append(seconds)
        on = level > 0
    return out


def felt_apart(a: tuple[Step, ...], b: tuple[Step, ...]) -> bool:
    """Two buzzes a wearer can tell apart: more or fewer pulses, or one at least twice as
    long as its counterpart (lengths closer than that are easily confused through cloth)."""
    pa, pb = pulses(a), pulses(b)
    if len(pa) != len(pb):
        return True
    return any(max(x, y) >= 2 * min(x, y) for x, y in zip(pa, pb, strict=True))


def test_every_buzz_can_be_told_from_every_other_by_feel() -> None:
    names = sorted(BUZZES)
    assert {"understood", "not_understood", "confirm", "attention"} <= set(names)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            assert felt_apart(BUZZES[a], BUZZES[b]), (a, pulses(BUZZES[a]), b, pulses(BUZZES[b]))
    # A buzz ends: the motor is never left running, and none is long enough to annoy.
    for name, steps in BUZZES.items():
        assert steps[-1][0] > 0 and sum(s for _, s in steps) <= 1.0, name


def test_the_checks_would_catch_buzzes_too_alike() -> None:
    """`felt_apart` itself: a 100 ms buzz is an 80 ms tick to the skin; long-short is not two
    even pulses."""
    assert not felt_apart(((1.0, 0.1),), BUZZES["short"])
    assert not felt_apart(((1.0, 0.12), (0.0, 0.2), (1.0, 0.1)), BUZZES["double"])
    assert felt_apart(BUZZES["not_understood"], BUZZES["double"])
    assert pulses(((1.0, 0.1), (0.6, 0.1), (0.0, 0.1), (1.0, 0.05))) == [0.2, 0.05]


def test_the_leds_answers_play_once_and_never_darken_a_listening_pendant() -> None:
    assert set(LED_ONCE) == {"understood", "not_understood", "attention"}
    shapes = {steps for name, steps in PATTERNS.items() if not name.startswith(tuple(LED_ONCE))}
    for name, steps in LED_ONCE.items():
        assert PATTERNS[name] == steps and PATTERNS[name + SENSING] == inverted(steps)
        # Shown for less than one round, ending in its last (dark) step: it never starts over.
        total = sum(s for _, s in steps)
        assert steps[-1][0] == 0 and total - steps[-1][1] < LED_ONCE_S < total, name
        # Lit no longer than a flash, so the form shown over a sensor is dark no longer than a
        # wink; and not any other pattern, so it says something of its own.
        assert all(s <= FLASH_S for level, s in steps if level > 0), name
        assert all(s <= FLASH_S for level, s in PATTERNS[name + SENSING] if level == 0), name
        assert steps not in shapes and inverted(steps) not in shapes, name
    assert len(set(LED_ONCE.values())) == len(LED_ONCE)


def test_which_answer_each_event_calls_for() -> None:
    said = Intent(device_id=DEV, name="HassTurnOn", text="turn on the light", confidence=0.9)
    assert feedback_for(said) == "understood"
    assert feedback_for(NotRecognized(device_id=DEV)) == "not_understood"
    assert feedback_for(Activity(device_id=DEV, sensor="mic", state="confirm")) == "confirm"
    assert feedback_for(Activity(device_id=DEV, sensor="mic", state="capturing")) is None
    assert feedback_for(Command(device_id=DEV, name="buzz")) == "attention"
    for pattern in get_args(BuzzPattern):
        assert feedback_for(Command(device_id=DEV, name="buzz", pattern=pattern)) == pattern
        assert pattern in BUZZES and pattern in LED_ONCE
    assert "confirm" not in get_args(BuzzPattern)
    assert feedback_for(Command(device_id=DEV, name="say", text="dinner is ready")) == "attention"
    assert feedback_for(Command(device_id=DEV, name="identify")) is None
    assert feedback_for(Mic(device_id=DEV, state="ready")) is None


def test_an_answer_shows_once_under_muted_and_inverted_over_a_sensor() -> None:
    ind = Indicators(link="connected")
    ind.show_feedback("understood", 10)
    assert ind.pattern(10) == "understood"
    assert ind.next_change_s(10) == 10 + LED_ONCE_S
    assert ind.pattern(10 + LED_ONCE_S) == "off"
    # Over a sensor at work, the inverted form: the LED stays lit but for a wink.
    ind.apply(Activity(device_id=DEV, sensor="mic", state="capturing"), 20)
    ind.show_feedback("not_understood", 20)
    assert ind.pattern(20) == "not_understood" + SENSING
    assert ind.pattern(20 + LED_ONCE_S) == "listening"
    ind.apply(Activity(device_id=DEV, sensor="mic", state="thinking"), 30)
    ind.show_feedback("attention", 30)
    assert ind.pattern(30) == "attention" + SENSING
    # The muted glow is what is enforced: an answer never hides it (the motor still buzzes).
    ind.apply(Mic(device_id=DEV, state="muted", muted=True), 40)
    ind.show_feedback("understood", 40)
    assert ind.pattern(40) == "muted"
    ind.apply(Mic(device_id=DEV, state="ready"), 50)
    ind.apply(Battery(device_id=DEV, pct=5, low=True), 50)
    ind.show_feedback("understood", 50)
    assert ind.pattern(50) == "understood" + SENSING  # over low battery and thinking
    assert ind.pattern(50 + LED_ONCE_S) == "low_battery"
    # What asks for something, or says the window is open, comes first.
    ind.show_feedback("attention", 60)
    ind.apply(Error(device_id=DEV, reason="bad command"), 60)
    assert ind.pattern(60) == "error"
    ind.apply(Activity(device_id=DEV, sensor="mic", state="confirm"), 70)
    ind.show_feedback("understood", 70)
    assert ind.pattern(70) == "confirm"
    # The confirm buzz has no LED answer of its own: the confirm pattern is the ears' state.
    ind.apply(Activity(device_id=DEV, sensor="mic", state="idle"), 80)
    ind.apply(PairingStatus(device_id=DEV, open=True, user="phone-abc123"), 80)
    ind.show_feedback("confirm", 80)
    assert ind.answer == "understood" and ind.pattern(80) == "pairing"


# --- battery ----------------------------------------------------------------------------------


def test_reporter_sends_on_change_and_every_so_often() -> None:
    r = Reporter(low_pct=15, every_s=60)
    assert r.due(Reading(50, False), 0)
    assert not r.due(Reading(50, False), 30)
    assert r.due(Reading(49, False), 31)
    assert r.due(Reading(49, True), 32)
    assert not r.due(Reading(49, True), 91)
    assert r.due(Reading(49, True), 92)
    assert r.is_low(Reading(14, False)) and not r.is_low(Reading(15, False))


def test_simulated_gauge_drains_and_charges_on_its_clock() -> None:
    now = [0.0]
    g = SimulatedGauge(start_pct=20, drain_pct_per_min=6, clock=lambda: now[0])
    assert g.read() == Reading(20, False)
    now[0] = 60.0
    assert g.read() == Reading(14, False)
    g.set_charging(True)
    now[0] = 120.0
    assert g.read() == Reading(20, True)
    g.set_level(3)
    assert g.read() == Reading(3, True)
    now[0] = 10_000.0
    assert g.read().pct == 100


class FakeSMBus:
    """The PiSugar 3's registers as smbus2 would read them."""

    def __init__(self, registers: dict[int, int] | None, address: int = 0x57) -> None:
        self.registers = registers
        self.address = address
        self.closed = False

    def read_byte_data(self, address: int, register: int) -> int:
        if self.registers is None or address != self.address:
            raise OSError(errno.EREMOTEIO, os.strerror(errno.EREMOTEIO))
        return self.registers[register]

    def close(self) -> None:
        self.closed = True


@pytest.mark.parametrize(
    ("ctrl1", "charging"),
    [(0b1100_0000, True), (0b1000_0000, False), (0b0100_0000, False), (0, False)],
)
def test_pisugar3_reads_percent_and_charging(ctrl1: int, charging: bool) -> None:
    gauge = PiSugar3(smbus=FakeSMBus({0x2A: 87, 0x02: ctrl1}))
    assert gauge.read() == Reading(87, charging)


def test_pisugar3_that_does_not_answer_is_unavailable() -> None:
    bus = FakeSMBus(None)
    gauge = PiSugar3(smbus=bus)
    with pytest.raises(GaugeUnavailable, match="does not answer"):
        gauge.read()
    gauge.close()
    gauge.close()
    assert bus.closed


def test_pisugar3_reads_its_rtc_in_bcd_as_utc() -> None:
    # 2026-03-07 (a Saturday, weekday 6) 23:59:58, as PiSugar's driver writes it.
    rtc = {0x31: 0x26, 0x32: 0x03, 0x33: 0x07, 0x34: 0x06, 0x35: 0x23, 0x36: 0x59, 0x37: 0x58}
    gauge = PiSugar3(smbus=FakeSMBus(rtc))
    assert gauge.rtc_time() == datetime(2026, 3, 7, 23, 59, 58, tzinfo=UTC)


def test_pisugar3_rtc_read_across_a_tick_is_read_again() -> None:
    before = {0x31: 0x26, 0x32: 0x03, 0x33: 0x07, 0x34: 0x06, 0x35: 0x23, 0x36: 0x59, 0x37: 0x59}
    after = {0x31: 0x26, 0x32: 0x03, 0x33: 0x08, 0x34: 0x00, 0x35: 0x00, 0x36: 0x00, 0x37: 0x00}

    class Ticking(FakeSMBus):
        """Midnight comes between the hour and the minute of the first reading, which then
        says 23:00:00 of the day before."""

        def read_byte_data(self, address: int, register: int) -> int:
            if register == 0x36 and self.registers is before:
                self.registers = after
            return super().read_byte_data(address, register)

    gauge = PiSugar3(smbus=Ticking(before))
    assert gauge.rtc_time() == datetime(2026, 3, 8, 0, 0, 0, tzinfo=UTC)


def test_pisugar3_rtc_without_a_valid_time_is_unavailable() -> None:
    rtc = {0x31: 0x00, 0x32: 0x00, 0x33: 0x00, 0x34: 0x00, 0x35: 0x00, 0x36: 0x00, 0x37: 0x00}
    with pytest.raises(GaugeUnavailable, match="no valid time"):
        PiSugar3(smbus=FakeSMBus(rtc)).rtc_time()
    with pytest.raises(GaugeUnavailable, match="does not answer"):
        PiSugar3(smbus=FakeSMBus(None)).rtc_time()


def test_simulated_rtc_follows_the_wall_clock_by_its_offset() -> None:
    g = SimulatedGauge(wall_clock=lambda: 1_800_000_000.7)
    assert g.rtc_time() == datetime.fromtimestamp(1_800_000_000, UTC)
    g.set_rtc_offset(-60)
    assert g.rtc_time() == datetime.fromtimestamp(1_799_999_940, UTC)
    g.set_rtc_offset(None)
    assert g.rtc_time() is None


def test_missing_i2c_bus_is_one_warning_and_no_gauge(caplog: pytest.LogCaptureFixture) -> None:
    config = BodyConfig(battery="pisugar3", i2c_bus=31)  # no /dev/i2c-31 here
    with caplog.at_level(logging.WARNING, logger="pendant.body.battery"):
        assert create_gauge(config) is None
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "no battery reports" in warnings[0], warnings


def test_simulated_gauge_is_created_from_config() -> None:
    gauge = create_gauge(BodyConfig(battery="simulated", simulated_start_pct=42))
    assert gauge is not None and gauge.read().pct == 42


# --- pins -------------------------------------------------------------------------------------


def test_the_shipped_pin_map_has_every_body_pin() -> None:
    pins = load_pins()
    for name, kind in BODY_PINS.items():
        assert pins[name].kind == kind
    assert pins["button"].pull == "up" and pins["mute_switch"].pull == "up"
    # Clear of I2S (GPIO 18-21) and I2C (GPIO 2-3), which the mic and the gauge use.
    body_gpios = {pins[n].gpio for n in BODY_PINS}
    assert not body_gpios & {2, 3, 18, 19, 20, 21}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[button]\ngpio = 17\nheader = 11\nkind = 'input'\n", "no \\[mute_switch\\]"),
        ("[a]\ngpio = 5\nheader = 29\nkind = 'input'\n[b]\ngpio = 5\nheader = 31\nkind = 'pwm'\n",
         "share gpio 5"),
        ("[a]\ngpio = 99\nheader = 1\nkind = 'input'\n", "BCM GPIO"),
        ("[a\n", "not valid TOML"),
    ],
)  # fmt: skip
def test_a_broken_pin_map_is_a_one_line_error(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_pins(text)


# --- lgpio's working directory ---------------------------------------------------------------


def test_a_writable_lg_wd_is_kept(tmp_path: Path) -> None:
    env = {"LG_WD": str(tmp_path)}
    assert gpio.prepare_lgpio_workdir(env, candidates=[]) == tmp_path
    assert env["LG_WD"] == str(tmp_path)


def test_unset_or_unusable_lg_wd_moves_to_the_first_writable_candidate(tmp_path: Path) -> None:
    a_file = tmp_path / "file"
    a_file.write_text("")
    runtime = tmp_path / "run"
    runtime.mkdir()
    for env in ({}, {"LG_WD": str(tmp_path / "missing")}, {"LG_WD": str(a_file)}):
        got = gpio.prepare_lgpio_workdir(
            env, candidates=[None, str(tmp_path / "missing"), a_file, runtime]
        )
        assert got == runtime and env["LG_WD"] == str(runtime)


def test_the_units_runtime_directory_comes_first(tmp_path: Path) -> None:
    env = {"RUNTIME_DIRECTORY": f"{tmp_path}:/elsewhere", "XDG_RUNTIME_DIR": "/nope"}
    assert gpio.prepare_lgpio_workdir(env) == tmp_path


def test_last_resort_is_a_private_directory_under_the_temp_root(tmp_path: Path) -> None:
    env: dict[str, str] = {}
    got = gpio.prepare_lgpio_workdir(env, candidates=[None], temp_root=tmp_path)
    assert got.parent == tmp_path and env["LG_WD"] == str(got)
    assert stat.S_IMODE(got.stat().st_mode) == 0o700


def test_nowhere_writable_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(BackendUnavailable, match="LG_WD"):
        gpio.prepare_lgpio_workdir({}, candidates=[None], temp_root=tmp_path / "missing")


def test_lgpio_factory_sets_lg_wd_before_importing_lgpio(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("gpiozero")
    # Set, then removed: monkeypatch then also removes the LG_WD the factory sets.
    monkeypatch.setenv("LG_WD", "")
    monkeypatch.delenv("LG_WD")
    monkeypatch.setenv("RUNTIME_DIRECTORY", str(tmp_path))
    try:
        import lgpio  # type: ignore[import-not-found]  # noqa: F401
    except ImportError:
        # This machine: no lgpio, so the factory fails with advice, after LG_WD was set.
        with pytest.raises(BackendUnavailable, match="lgpio"):
            gpio.create_pin_factory("lgpio")
    else:
        pytest.skip("lgpio is importable here: its missing-library path cannot be shown")
    assert os.environ["LG_WD"] == str(tmp_path)


# --- config -----------------------------------------------------------------------------------


def test_body_config_defaults_and_checks() -> None:
    body = parse_config({}).body
    assert (body.pin_factory, body.battery, body.low_battery_pct) == ("lgpio", "pisugar3", 15)
    with pytest.raises(ConfigError, match="body: double_press_s < long_hold_s"):
        parse_config({"body": {"long_hold_s": 9, "pairing_hold_s": 8}})
    with pytest.raises(ConfigError, match=r"body\.pin_factory"):
        parse_config({"body": {"pin_factory": "gpio"}})


def test_the_haptic_history_keeps_only_the_latest_buzzes() -> None:
    """Worn for weeks, the pendant must not keep every buzz it gave."""
    import asyncio
    from types import SimpleNamespace

    from pendant.body.haptic import HISTORY_MAX, Haptic

    async def buzzes() -> list[str]:
        haptic = Haptic(SimpleNamespace(value=0.0))  # type: ignore[arg-type]
        try:
            for i in range(HISTORY_MAX + 5):
                haptic.buzz("short" if i < HISTORY_MAX + 4 else "double")
            return list(haptic.history)
        finally:
            haptic.close()

    history = asyncio.run(buzzes())
    assert len(history) == HISTORY_MAX
    assert history[-1] == "double"
