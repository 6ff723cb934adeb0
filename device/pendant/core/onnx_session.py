"""onnxruntime sessions as the pendant runs them: small memory before speed.

onnxruntime's defaults suit a server: a CPU arena that keeps its high-water mark for good and
memory patterns planned per input shape. On a 512 MB Pi Zero 2 W the eyes' three models at
640x480 would hold about 370 MB that way; without the arena and the patterns they peak far
lower, for a few per cent of speed (`make bench` shows both figures).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pendant.core.errors import ModelError


def session(model: Path | bytes, name: str, threads: int = 1) -> Any:
    """An InferenceSession on the CPU; ModelError (one line) if onnxruntime refuses it.

    One thread by default (the eyes choose theirs: `pendant.eyes.model_threads`). A pool's
    threads sleep between pieces of work instead of spinning: on a battery, a spinning thread
    burns a core for nothing (x86, "read this" on two threads: 15 % more CPU spinning).
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.enable_cpu_mem_arena = False
    options.enable_mem_pattern = False
    options.intra_op_num_threads = threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        source = model if isinstance(model, bytes) else str(model)
        return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own untyped errors
        raise ModelError(f"{name}: onnxruntime cannot load it: {exc}") from None
