"""What the wearer means with the one button: pure logic, fed edge times, no I/O.

The gestures, as a wearer does them:

- **Press and hold = talk.** Talk starts the moment the button goes down (`TALK_START`) and
  ends when it comes up (`TALK_END`). Waiting to see whether a press becomes something else
  would cut off the first word, so talk never waits.
- **Double press = read this** (`CAPTURE`): two short presses (each up within
  `double_press_s`), the second starting within `double_press_s` of the first one's release.
  It fires as the second press goes down; that press then starts no talk. The first press
  was a very short talk: the ears hear a fraction of a second that matches nothing.
- **Long hold = privacy mute toggle.** At `long_hold_s` the hold stops being talk: the talk
  ends there (`TALK_END`, so the ears are never left with a press that does not end) and a
  buzz (`MUTE_ARMED`) says "let go now to toggle the mute". Letting go before
  `pairing_hold_s` toggles it (`MUTE_TOGGLE`). Acting on the release rather than at the buzz
  means a wearer who holds on to pair never flips the mute on the way, and so never opens
  the microphone by surprise. The price: in press-to-talk mode a command must be said
  within `long_hold_s` of pressing.
- **Very long hold = open the pairing window** (`PAIRING`), at `pairing_hold_s`, while still
  held; the release after it does nothing.
- **A tap** (a press up within `double_press_s`) says `TALK_CANCEL` when it ends and `TAP`
  `double_press_s` later, unless a second press made it half of a double press: the wearer's
  "yes" to what the LED asks (the body passes it on as a `tap` button event). Held back so
  that the first press of "read this" never says yes: a paired phone can make the LED ask at
  any moment (a voice to forget), and a capture must not answer it.
- **Counting, while the pairing window is open** (`counting`, set by the owner; then a press
  is never a tap, whatever waits for one): short presses (each up within
  `double_press_s`), each within `count_gap_s` of the one before, are a burst; `count_gap_s`
  after the last one's release, `PRESSES` reports how many (`presses`): the code of the phone
  to accept. Each press still starts talk at once and cancels it when it comes up, and there
  is no double press while counting. A press held longer (talk, the mute hold) in a burst
  spoils it: it reports 0, which accepts no phone, rather than a count the wearer did not
  mean. Turning `counting` off drops a burst in progress.

Times are `time.monotonic()` seconds of the edges themselves (taken on the GPIO thread), so a
busy event loop delays the actions but never changes which gesture was made. `poll(now)`
must be called by `deadline_s()` at the latest, for the hold thresholds.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

# How long past the double press's window a tap says TAP.
TAP_AFTER_S = 0.001


class Action(Enum):
    """What a gesture means, for the body to act on; the module's docstring says when each comes."""

    TALK_START = "talk_start"
    TALK_END = "talk_end"
    TALK_CANCEL = "talk_cancel"  # what was held was no talk (a tap, a hold for the mute)
    CAPTURE = "capture"
    MUTE_ARMED = "mute_armed"
    MUTE_TOGGLE = "mute_toggle"
    PAIRING = "pairing"
    TAP = "tap"  # a short press ended, and no second one came: "yes" to what the LED asks
    PRESSES = "presses"  # a burst of short presses ended, while counting: see `presses`


class _State(Enum):
    IDLE = "idle"
    TALKING = "talking"
    ARMED = "armed"  # past long_hold_s: releasing toggles the mute
    SPENT = "spent"  # the press did its job (capture, pairing); its release means nothing


@dataclass(frozen=True)
class Timings:
    """The gestures' thresholds, in seconds; ValueError unless 0 < double_press_s < long_hold_s <
    pairing_hold_s and double_press_s < count_gap_s."""

    double_press_s: float = 0.4
    long_hold_s: float = 2.0
    pairing_hold_s: float = 8.0
    # A burst of presses (while counting) ends after this long without one.
    count_gap_s: float = 1.5

    def __post_init__(self) -> None:
        if not 0 < self.double_press_s < self.long_hold_s < self.pairing_hold_s:
            raise ValueError("need 0 < double_press_s < long_hold_s < pairing_hold_s")
        if not self.double_press_s < self.count_gap_s:
            raise ValueError("need double_press_s < count_gap_s")


class Gestures:
    """The button's gestures, from the times of its edges: `press`, `release` and `poll` each return
    the actions that became due, in order."""

    def __init__(self, timings: Timings | None = None) -> None:
        self.timings = timings or Timings()
        self._state = _State.IDLE
        self._pressed_at_s = 0.0
        self._tap_released_at_s: float | None = None
        # When the last tap says TAP, unless a second press comes first (None: no tap pending).
        self._tap_due_s: float | None = None
        self._counting = False
        # The burst being counted: presses so far (None: no burst), whether a long press
        # spoiled it, and when it ends unless another press comes.
        self._burst: int | None = None
        self._spoiled = False
        self._burst_end_s = 0.0
        # What the last PRESSES reported.
        self.presses = 0

    @property
    def held(self) -> bool:
        """The button is down: a press has come and its release has not."""
        return self._state is not _State.IDLE

    @property
    def counting(self) -> bool:
        """Short presses are counted (the pairing window is open), not taps or double presses."""
        return self._counting

    @counting.setter
    def counting(self, on: bool) -> None:
        if not on:
            self._burst, self._spoiled = None, False
        self._counting = on

    def press(self, at_s: float) -> list[Action]:
        """The button went down at `at_s` (monotonic seconds): TALK_START, or CAPTURE when it is the
        second press of a double press; nothing for a repeated edge."""
        if self._state is not _State.IDLE:
            return []  # a repeated edge (contact bounce the debounce let through)
        self._pressed_at_s = at_s
        tap_end, self._tap_released_at_s = self._tap_released_at_s, None
        if self._counting:
            tap_end = None  # every short press counts: none is half of a double press
        if tap_end is not None and at_s - tap_end <= self.timings.double_press_s:
            self._state, self._tap_due_s = _State.SPENT, None  # half a double press: no tap
            return [Action.CAPTURE]
        tap = self._due_tap(at_s)
        self._state = _State.TALKING
        return [*tap, Action.TALK_START]

    def _due_tap(self, now_s: float) -> list[Action]:
        """TAP if the last tap's wait for a second press is over by `now_s` (or a press came
        after it without the poll that was due)."""
        if self._tap_due_s is None or now_s < self._tap_due_s:
            return []
        self._tap_due_s = None
        return [Action.TAP]

    def release(self, at_s: float) -> list[Action]:
        """The button came up at `at_s`: the hold thresholds it crossed first (as `poll`), then how
        the press ends: TALK_END; TALK_CANCEL and TAP for a short one (TALK_CANCEL alone while
        counting); MUTE_TOGGLE after MUTE_ARMED."""
        actions = self.poll(at_s)  # thresholds the hold crossed before it ended
        state, self._state = self._state, _State.IDLE
        if state is _State.TALKING:
            short = at_s - self._pressed_at_s <= self.timings.double_press_s
            self._tap_released_at_s = at_s if short else None
            if self._counting and short:
                self._tap_released_at_s = None
                self._burst = (self._burst or 0) + 1
                self._burst_end_s = at_s + self.timings.count_gap_s
                # Too short for a command: the ears drop it.
                return [*actions, Action.TALK_CANCEL]
            # A tap is too short for a command, and may be half a double press: the ears drop
            # it instead of answering it with "not recognized"; its TAP waits for `poll`.
            actions.append(Action.TALK_CANCEL if short else Action.TALK_END)
            if short:
                # Just past the double press's window, so a second press at its very end is
                # still a capture.
                self._tap_due_s = at_s + self.timings.double_press_s + TAP_AFTER_S
        elif state is _State.ARMED:
            actions.append(Action.MUTE_TOGGLE)
        if self._burst is not None:
            # A long press in a burst: the count is not what the wearer meant.
            self._spoiled, self._burst_end_s = True, at_s + self.timings.count_gap_s
        return actions

    def poll(self, now_s: float) -> list[Action]:
        """What has become due by `now_s` without an edge: a hold crossing `long_hold_s`
        (TALK_CANCEL, MUTE_ARMED) or `pairing_hold_s` (PAIRING), a counted burst ending (PRESSES).
        Call it by `deadline_s()` at the latest."""
        actions: list[Action] = self._due_tap(now_s)
        held_s = now_s - self._pressed_at_s
        if self._state is _State.TALKING and held_s >= self.timings.long_hold_s:
            self._state = _State.ARMED
            actions += [Action.TALK_CANCEL, Action.MUTE_ARMED]
        if self._state is _State.ARMED and held_s >= self.timings.pairing_hold_s:
            self._state = _State.SPENT
            actions.append(Action.PAIRING)
        if self._burst is not None and not self.held and now_s >= self._burst_end_s:
            self.presses = 0 if self._spoiled else self._burst
            self._burst, self._spoiled = None, False
            actions.append(Action.PRESSES)
        return actions

    def deadline_s(self) -> float | None:
        """When `poll` next has something to say, if the button stays as it is."""
        due: list[float] = [] if self._tap_due_s is None else [self._tap_due_s]
        if self._state is _State.TALKING:
            due.append(self._pressed_at_s + self.timings.long_hold_s)
        elif self._state is _State.ARMED:
            due.append(self._pressed_at_s + self.timings.pairing_hold_s)
        elif self._burst is not None and self._state is _State.IDLE:
            due.append(self._burst_end_s)
        return min(due, default=None)
