"""Logs go to journald on the device and to stderr everywhere else."""

from __future__ import annotations

import logging
import os
import sys
from typing import TextIO


class _Stderr(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever sys.stderr is at the time, not the one it was made with."""

    @property  # type: ignore[override]
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, _value: object) -> None:
        pass


def setup_logging(verbose: bool = False) -> None:
    """Sends the root logger's records at INFO (DEBUG if `verbose`) to journald when run by systemd
    and its Python binding is installed, else to stderr; replaces the handlers set before."""
    level = logging.DEBUG if verbose else logging.INFO
    handler: logging.Handler | None = None
    if os.environ.get("JOURNAL_STREAM") or os.environ.get("INVOCATION_ID"):
        try:
            from systemd.journal import JournalHandler  # type: ignore[import-not-found]

            handler = JournalHandler(SYSLOG_IDENTIFIER="pendant")
        except ImportError:
            handler = None
    if handler is None:
        handler = _Stderr()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Library chatter (paho reconnects, onnxruntime) is not the wearer's business at INFO.
    for noisy in ("aiomqtt", "paho", "faster_whisper"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
