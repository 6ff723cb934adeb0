"""The ears' open-vocabulary transcription (an `Ask`), counted by `make bench-arm`.

Not run directly: tools/bench_arm.py starts it as `python3.11 guest_ask.py PLAN.json` under
`qemu-aarch64` (as a Cortex-A76, the Pi 5's core) with the insn_count plugin and the `whisper`
extra's aarch64 wheels. Whisper base int8 (faster-whisper on CTranslate2) writes down each
recording as `pendant.ears.asr.open_vocab.OpenTranscriber` does for a question:

- `ready`: from the interpreter's start to a loaded, warmed-up model (what the recogniser's
  child pays once, at the ears' start, when `escalate.enabled`);
- `ask` ... `ask_end`, one per recording: `OpenTranscriber.transcribe`.

One CTranslate2 thread (the plugin's counter is not atomic; the device gives it up to four:
whisper_backend.MAX_THREADS). The plan (JSON): {"config": path, "recordings": [wav, ...]}.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from marks import dump, mark

mark("start")

import json  # noqa: E402

from pendant.core.config import load_config  # noqa: E402
from pendant.ears.asr.open_vocab import OpenTranscriber  # noqa: E402
from pendant.ears.asr.whisper_backend import Whisper  # noqa: E402
from pendant.ears.audio import RATE_HZ  # noqa: E402
from pendant.ears.audio.wav import read_audio  # noqa: E402


def main() -> int:
    plan = json.loads(Path(sys.argv[1]).read_text())
    config = load_config(plan["config"])
    words = OpenTranscriber(config, Whisper(config, cpu_threads=1))
    mark("ready")
    for wav in plan["recordings"]:
        audio = read_audio(wav)
        mark("ask", file=Path(wav).name, audio_s=len(audio) / RATE_HZ)
        text = words.transcribe(audio)
        mark("ask_end", text=text)
    words.close()
    dump()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
