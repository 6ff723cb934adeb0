"""How many threads the eyes' models take: every core but one, which stays the ears', at most
three; and a pool's threads sleep while they wait (a spinning thread burns the battery). What
the threads save is `make bench-arm`'s (read on four cores), not these tests'."""

from __future__ import annotations

import os
from typing import Any

import pytest

from pendant.eyes import model_threads
from pendant.eyes.detectors.cpu import CpuDetector
from pendant.eyes.pipeline import Eyes
from tests.support.eyes_support import eyes_config


def _cores(monkeypatch: pytest.MonkeyPatch, n: int) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(n)))


@pytest.mark.parametrize(("cores", "threads"), [(1, 1), (2, 1), (3, 2), (4, 3), (16, 3)])
def test_every_core_but_the_ears_one_and_at_most_three(
    monkeypatch: pytest.MonkeyPatch, cores: int, threads: int
) -> None:
    _cores(monkeypatch, cores)
    assert model_threads() == threads


def _threads_and_spinning(session: Any) -> tuple[int, str]:
    options = session.get_session_options()
    return (
        options.intra_op_num_threads,
        options.get_session_config_entry("session.intra_op.allow_spinning"),
    )


def test_every_model_of_the_eyes_runs_on_those_threads_and_never_spins(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _cores(monkeypatch, 4)  # a Pi's
    eyes = Eyes(eyes_config())  # every model loaded and held
    assert eyes.guard is not None and isinstance(eyes.detector, CpuDetector)
    sessions = {
        "face guard": eyes.guard.session,
        **{f"ocr {name}": s for name, s in eyes.reader._held.items()},
        "detector": eyes.detector.model.session,
    }
    assert len(sessions) == 5
    assert {name: _threads_and_spinning(s) for name, s in sessions.items()} == {
        name: (3, "0") for name in sessions
    }
