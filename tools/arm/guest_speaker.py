"""The ears' speaker check (issue 19), counted by `make bench-arm`.

Not run directly: tools/bench_arm.py starts it as `python3.11 guest_speaker.py PLAN.json` under
`qemu-aarch64` (as a Zero 2 W's Cortex-A53, and a Pi 5's Cortex-A76) with the insn_count plugin
and the device's aarch64 wheels. It does what `pendant.ears.speaker.check.SpeakerCheck` does in
the ears' process, marking each piece of work:

- `load` ... `load_end`: the voice encoder loaded on first need (`load_encoder`: the model
  cache's check, the 17 MB `.pt` read, the ONNX graph built, onnxruntime's session), then the
  heap trimmed, as `SpeakerCheck.encoder` does. What comes before it (the interpreter, the
  config, the ears' VAD module with numpy, onnxruntime and webrtcvad) the ears have already
  paid: `ready` counts it from exec, the load included;
- `embed` ... `embed_end`, one per recording: `encoder.embed(audio, RATE_HZ)`, as
  `SpeakerCheck.accepts` calls it on each utterance (features, trimming, the LSTM). The cosine
  against the enrolled voices (a dot product of 256) is left out.

One onnxruntime thread, as the encoder's session has. Not counted: reading the WAV files.
The plan (JSON): {"config": path, "recordings": [wav, ...]}.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from marks import dump, mark

mark("start")

import json  # noqa: E402

from pendant.core import heap  # noqa: E402
from pendant.core.config import load_config  # noqa: E402
from pendant.ears import vad  # noqa: E402, F401  (the ears hold it, and onnxruntime, already)
from pendant.ears.audio import RATE_HZ  # noqa: E402
from pendant.ears.audio.wav import read_audio  # noqa: E402
from pendant.ears.speaker.check import load_encoder  # noqa: E402


def main() -> int:
    plan = json.loads(Path(sys.argv[1]).read_text())
    config = load_config(plan["config"])
    mark("load")
    encoder, _ = load_encoder(config)
    heap.trim()
    mark("load_end")
    mark("ready")
    for wav in plan["recordings"]:
        audio = read_audio(wav)
        mark("embed", file=Path(wav).name, audio_s=len(audio) / RATE_HZ)
        embedding = encoder.embed(audio, RATE_HZ)
        mark("embed_end", embedded=embedding is not None)
    dump()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
