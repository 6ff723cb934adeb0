"""The enrolled voices: one 0600 JSON file in the ears' state directory, never published.

A voiceprint is biometric data: it stays on the device. Only the ears' process (and
`pendant voice`, run as root or as the ears' user on the device) reads or writes this file;
no event, backup or export carries it; the phone only ever sees the names (`Voices`).

A voice is the mean of the L2-normalised embeddings of its enrolment utterances, normalised
again: the voice encoder's usual speaker embedding (GE2E's centroid).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pendant.core import state as durable
from pendant.core.errors import PendantError
from pendant.core.events import ENROL_MIN_UTTERANCES, MAX_VOICES, VOICE_NAME_PATTERN
from pendant.core.wire import now_ms

log = logging.getLogger(__name__)

FILE_NAME = "voices.json"
# What an unreadable file tells the wearer to do: the check refuses everyone until then.
_FIX = ": run 'pendant voice forget --all' and enrol again"
NAME = re.compile(VOICE_NAME_PATTERN)
EMBEDDING_SIZE = 256
FORMAT = 1
# The least an enrolment utterance's embedding may be like the mean of the others' (cosine),
# by the enrolment's number of utterances (5 for five or more): each where 1 % of honest
# enrolments of the calibration half in noisy rooms fall below (tools/measure_speaker.py).
# Fewer utterances make a noisier mean, so a lower floor.
ONE_VOICE_FLOORS = {3: 0.539, 4: 0.579, 5: 0.607}
# The ears' StateDirectory= on the device, for `pendant voice` run outside their unit.
DEVICE_STATE_DIR = Path("/var/lib/pendant-ears")


class VoiceStoreError(PendantError):
    """The voices file cannot be read or written; the message is one line naming the file."""


def voices_dir(directory: str | Path | None = None) -> Path:
    """Where the voices live: `directory`, else the unit's $STATE_DIRECTORY, else the device's
    (when it exists: `pendant voice` on the pendant), else ~/.local/state/pendant/ears."""
    if directory is not None:
        return Path(directory)
    if state := os.environ.get("STATE_DIRECTORY"):
        return Path(state.split(":")[0])
    if DEVICE_STATE_DIR.is_dir():
        return DEVICE_STATE_DIR
    base = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(base) / "pendant" / "ears"


@dataclass(frozen=True, slots=True)
class Voice:
    """One enrolled voice."""

    name: str
    embedding: np.ndarray
    """L2-normalised float32, EMBEDDING_SIZE long."""
    utterances: int
    enrolled_ms: int


def normalised(vector: np.ndarray) -> np.ndarray:
    """`vector` as float32 of length 1; ValueError for a zero or non-finite one."""
    v = np.asarray(vector, dtype=np.float32).reshape(-1)
    norm = float(np.linalg.norm(v))
    if not math.isfinite(norm) or norm == 0:
        raise ValueError("not a direction")
    return v / norm


def centroid(embeddings: list[np.ndarray]) -> np.ndarray:
    """The voice of several utterances' embeddings: their mean, normalised."""
    return normalised(np.mean([normalised(e) for e in embeddings], axis=0))


def odd_one_out(embeddings: list[np.ndarray]) -> tuple[int, float]:
    """The utterance least like the others of an enrolment, and how alike it is: its index
    and its embedding's cosine to the mean of the others' (leave one out)."""
    e = np.array([normalised(x) for x in embeddings])
    others = e.sum(axis=0) - e  # row i: the sum of every embedding but i's
    # The encoder's embeddings are never negative (a ReLU before the norm): no sum is zero.
    cosines = np.sum(e * others, axis=1) / np.linalg.norm(others, axis=1)
    i = int(np.argmin(cosines))
    return i, float(cosines[i])


def one_voice(embeddings: list[np.ndarray]) -> list[int] | None:
    """Which of an enrolment's utterances make the voice: all of them when every one is at
    least its floor (ONE_VOICE_FLOORS) like the mean of the others'; else all but the odd one
    out, once, if at least ENROL_MIN_UTTERANCES remain and they pass the floor of their
    number; else None: they do not sound like one voice (a bystander who spoke during the
    enrolment, another person's file), and a voiceprint of two people would let the other in.

    Leaving one out rather than refusing (tools/measure_speaker.py, noisy rooms, held-out
    half): honest enrolments of five refused 0.2 % instead of 3.3 % (the one real speaker's
    5 % instead of 64 %), and two in three enrolments with one other voice among five come out
    without it and without enrolling again; the price is two other voices among five, caught
    less often (26 % instead of 41 %). See speaker/README.md ("One voice an enrolment")."""
    kept = list(range(len(embeddings)))
    while True:
        odd, alike = odd_one_out([embeddings[k] for k in kept])
        if alike >= ONE_VOICE_FLOORS[min(max(len(kept), 3), 5)]:
            return kept
        if len(kept) < len(embeddings) or len(kept) <= ENROL_MIN_UTTERANCES:
            return None
        del kept[odd]


class VoiceStore:
    """The voices file (`FILE_NAME` in `voices_dir`), read again whenever it changed on disk
    (`pendant voice forget` while the ears run takes effect at the next utterance)."""

    def __init__(self, directory: str | Path | None = None) -> None:
        self.directory = voices_dir(directory)
        self.path = self.directory / FILE_NAME
        self._seen: tuple[int, int] | None = None
        self._voices: dict[str, Voice] = {}

    def load(self) -> dict[str, Voice]:
        """The voices by name; {} without a file. VoiceStoreError (one line) when the file is
        unreadable or not ours: it is never silently taken as "no voices"."""
        try:
            st = self.path.stat()
        except FileNotFoundError:
            self._seen, self._voices = None, {}
            return {}
        except OSError as exc:
            raise VoiceStoreError(f"cannot read {self.path}: {exc.strerror}{_FIX}") from None
        if self._seen == (st.st_mtime_ns, st.st_size):
            return dict(self._voices)
        try:
            voices = _parse(self.path.read_bytes())
        except OSError as exc:
            raise VoiceStoreError(f"cannot read {self.path}: {exc.strerror}{_FIX}") from None
        except ValueError as exc:
            raise VoiceStoreError(f"{self.path} is not a voices file ({exc}){_FIX}") from None
        self._seen, self._voices = (st.st_mtime_ns, st.st_size), voices
        return dict(voices)

    def names(self) -> list[str]:
        return sorted(self.load())

    def add(self, name: str, embedding: np.ndarray, utterances: int) -> None:
        """Enrol (or enrol again) `name`. VoiceStoreError when MAX_VOICES are there already."""
        voices = self.load()
        same = self._named(voices, name)
        if same is not None:
            del voices[same]
        if len(voices) >= MAX_VOICES:
            raise VoiceStoreError(
                f"{MAX_VOICES} voices are enrolled already: forget one first (pendant voice forget)"
            )
        voices[name] = Voice(name, normalised(embedding), utterances, now_ms())
        self._save(voices)

    def forget(self, name: str) -> str | None:
        """Forget `name` (any case); the name as it was enrolled, or None if there was none."""
        voices = self.load()
        same = self._named(voices, name)
        if same is None:
            return None
        del voices[same]
        self._save(voices)
        return same

    def forget_all(self) -> None:
        """Delete the file, readable or not: nothing of any voice is left."""
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
            durable.sync_directory(self.directory)
        self._seen, self._voices = None, {}

    @staticmethod
    def _named(voices: dict[str, Voice], name: str) -> str | None:
        return next((n for n in voices if n.lower() == name.lower()), None)

    def _save(self, voices: dict[str, Voice]) -> None:
        data = {
            "format": FORMAT,
            "voices": [
                {
                    "name": v.name,
                    "utterances": v.utterances,
                    "enrolled_ms": v.enrolled_ms,
                    "embedding": [round(float(x), 6) for x in v.embedding],
                }
                for v in sorted(voices.values(), key=lambda v: v.name.lower())
            ],
        }
        try:
            self._make_directory()
            durable.write_file(self.path, json.dumps(data), mode=0o600)
            self._same_owner_as_directory()
        except OSError as exc:
            raise VoiceStoreError(f"cannot write {self.path}: {exc.strerror}") from None
        self._seen = None  # read back as written, on the next load

    def _make_directory(self) -> None:
        if not self.directory.is_dir():
            durable.make_dirs(self.directory)
            os.chmod(self.directory, 0o700)

    def _same_owner_as_directory(self) -> None:
        """`pendant voice` as root writes for the ears' user, who owns their state directory."""
        if os.geteuid() != 0:
            return
        st = self.directory.stat()
        # Never through a link: that user owns the directory and could swap one in meanwhile.
        os.chown(self.path, st.st_uid, st.st_gid, follow_symlinks=False)


def _parse(raw: bytes) -> dict[str, Voice]:
    """ValueError with a short reason for anything that is not a voices file of ours."""
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        raise ValueError("not JSON") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ValueError(f"no 'format': {FORMAT}")
    items = data.get("voices")
    if not isinstance(items, list) or len(items) > MAX_VOICES:
        raise ValueError(f"'voices' must be a list of at most {MAX_VOICES}")
    voices: dict[str, Voice] = {}
    for i, item in enumerate(items):
        try:
            name = item["name"]
            embedding = np.asarray(item["embedding"], dtype=np.float32)
            utterances, enrolled_ms = int(item["utterances"]), int(item["enrolled_ms"])
        except (TypeError, KeyError, ValueError):
            raise ValueError(f"voices[{i}] is incomplete") from None
        if not isinstance(name, str) or not NAME.fullmatch(name) or name in voices:
            raise ValueError(f"voices[{i}] has a bad or repeated name")
        if embedding.shape != (EMBEDDING_SIZE,) or not np.isfinite(embedding).all():
            raise ValueError(f"voices[{i}] is not {EMBEDDING_SIZE} numbers")
        try:
            voices[name] = Voice(name, normalised(embedding), utterances, enrolled_ms)
        except ValueError:
            raise ValueError(f"voices[{i}] is all zeros") from None
    return voices
