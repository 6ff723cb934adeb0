"""`pendant voice` run as root never chowns what a symlink points at.

The ears' user owns the state directory; between the voices file's rename and the chown (the
directory's fsync is in between) it can put a symlink in its place, and root's os.chown follows
it."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from pendant.core import state as durable
from pendant.ears.speaker import store as store_module
from pendant.ears.speaker.store import VoiceStore


def test_root_chown_does_not_follow_a_symlink_swapped_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    victim = tmp_path / "shadow"
    victim.write_text("root's")
    directory = tmp_path / "ears"
    directory.mkdir(mode=0o700)
    store = VoiceStore(directory)
    real_sync = durable.sync_directory

    def swap_then_sync(path: Path) -> None:  # the ears' user, racing root
        real_sync(path)
        voices = directory / "voices.json"
        if voices.exists() and not voices.is_symlink():
            voices.unlink()
            voices.symlink_to(victim)

    followed: list[Path] = []

    def chown(
        path: object, uid: int, gid: int, *, follow_symlinks: bool = True, **_: object
    ) -> None:
        p = Path(path) if isinstance(path, str | os.PathLike) else None
        if p is not None and follow_symlinks and p.is_symlink():
            followed.append(p.resolve())

    monkeypatch.setattr(durable, "sync_directory", swap_then_sync)
    monkeypatch.setattr(store_module.os, "geteuid", lambda: 0)
    monkeypatch.setattr(store_module.os, "chown", chown)
    store.add("Sam", np.ones(256, dtype=np.float32), 5)
    assert followed == [], f"root would chown {followed} to the ears' user"
