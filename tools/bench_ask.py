"""Asking Home Assistant (issue 18), end to end, as `make bench` measures it: from the end of
the wearer's speech to the `answer` event at a subscriber of the home broker.

The ears and the link run as `pendant run` runs them (one process, the recogniser's child
beside it), in real time, on private brokers; the question is espeak-ng's British voice saying
"Ask Home Assistant, what time is it?" (the phrase, in conversation mode: no button), five
times, each followed by silence. The ears write it down with Whisper base, the link sends
"what time is it?" to the real Home Assistant the tests run (its built-in agent), and its
answer comes back on `pendant/<id>/answer`. The time is the answer's arrival less the end of
that question's speech in the stream (the stream's start, from the source, plus where the
speech ends in it).

- escalate_answer_ms_ha_p50 / _p95: that time, p50 and p95 over the answers that came
  (the issue's goal: at most 1.5 s here);
- escalate_answers_ha: how many of the questions were answered.

Home Assistant runs from the root `make test-ha` builds (`tools/ha_root.py`), as root: without
it the figures are None and the reason is printed (`escalate_answer_ha_skipped`).

    sudo python tools/bench_ask.py
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiomqtt
import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # tests.support: the Home Assistant the tests run

from pendant.app.local_broker import LocalBroker  # noqa: E402
from pendant.app.one_process import Pendant  # noqa: E402
from pendant.app.replay import simulated  # noqa: E402
from pendant.core.config import Config, EscalateConfig, load_config  # noqa: E402
from pendant.core.errors import ModelError  # noqa: E402
from pendant.core.model_cache import model_path  # noqa: E402
from pendant.ears.audio.wav import WavSource  # noqa: E402

QUESTION = "Ask Home Assistant, what time is it?"
TIMES = 5
LEAD_S = 0.5
TAIL_S = 9.0
"""Silence after each question: the answer, and the link's rate (one question each 10 s after
three) before the next."""


def _stream(folder: Path) -> tuple[list[Path], list[float]]:
    """The question's WAV files, and where each one's speech ends in the whole stream (s)."""
    sys.path.insert(0, str(REPO / "tools"))
    import speech_sets

    speech = speech_sets.speak(QUESTION, speech_sets.Voice("gb140", "en-gb", 140))
    rate = speech_sets.RATE_HZ
    lead, tail = np.zeros(int(LEAD_S * rate), np.float32), np.zeros(int(TAIL_S * rate), np.float32)
    audio = np.concatenate([lead, 0.5 * speech / float(np.max(np.abs(speech))), tail])
    files, ends = [], []
    for i in range(TIMES):
        path = folder / f"question-{i}.wav"
        speech_sets.write_wav(path, audio)
        files.append(path)
        ends.append(i * len(audio) / rate + LEAD_S + len(speech) / rate)
    return files, ends


async def _run(config: Config, ha_url: str, token_file: Path, folder: Path) -> list[float]:
    files, ends = _stream(folder)
    escalate = EscalateConfig(
        enabled=True, target="home_assistant", url=ha_url, token_file=str(token_file), timeout_s=30
    )
    with (
        LocalBroker(users=("pendant",)) as bus,
        LocalBroker(users=("link", "viewer"), tcp=True) as home,
    ):
        cfg = simulated(config.model_copy(update={"escalate": escalate}), bus, home, gap_ms=0)
        source = WavSource(cfg.audio, files)
        pendant = Pendant(cfg, source=source, parts=("ears", "link"))
        answers: list[tuple[float, dict[str, Any]]] = []
        async with aiomqtt.Client(
            "127.0.0.1", home.port or 0, username="viewer", password=home.password("viewer")
        ) as viewer:
            await viewer.subscribe(f"{pendant.link.base_topic}/answer", qos=1)

            async def collect() -> None:
                async for message in viewer.messages:
                    body = json.loads(bytes(message.payload))  # type: ignore[arg-type]
                    answers.append((time.time() * 1000, body))

            task = asyncio.create_task(collect())
            await pendant.run()
            await asyncio.sleep(2.0)
            task.cancel()
    assert source.started_ms is not None
    stream_ends = [source.started_ms + end * 1000 for end in ends]
    heard = [any(e <= t < e + TAIL_S * 1000 for t, _ in answers) for e in stream_ends]
    print(f"    ask: answered after question {[i for i, h in enumerate(heard) if h]} of {TIMES}")
    waits = []
    for arrived_ms, body in answers:
        before = [e for e in stream_ends if e <= arrived_ms]
        print(f"    ask: {body['outcome']}: {body['question']!r} -> {body['text'][:60]!r}")
        # Home Assistant's "sorry, I couldn't understand" is an answer too; silence is not.
        if before and body["outcome"] in ("answered", "acted", "refused"):
            waits.append(arrived_ms - max(before))
    return waits


async def ask_figures(config: Config) -> dict[str, Any]:
    """End of speech -> Home Assistant's answer at a subscriber (see the module's docstring)."""
    from tests.support.ha_support import HomeAssistant, reason_unavailable

    empty: dict[str, Any] = {
        "escalate_answer_ms_ha_p50": None,
        "escalate_answer_ms_ha_p95": None,
        "escalate_answers_ha": None,
    }
    why = reason_unavailable()
    if why is None:
        try:
            model_path(config, "whisper-base")
        except ModelError as exc:
            why = str(exc)
    if why is not None:
        print(f"    ask: not measured: {why}", file=sys.stderr)
        return {**empty, "escalate_answer_ha_skipped": why}
    with tempfile.TemporaryDirectory(prefix="bench-ask-") as tmp:
        folder = Path(tmp)
        with HomeAssistant(folder / "ha") as ha:
            token_file = folder / "token"
            token_file.write_text(ha.token)
            token_file.chmod(0o600)
            waits = await _run(config, ha.url, token_file, folder)
    figures = {
        "escalate_answer_ms_ha_p50": round(float(np.percentile(waits, 50)), 1) if waits else None,
        "escalate_answer_ms_ha_p95": round(float(np.percentile(waits, 95)), 1) if waits else None,
        "escalate_answers_ha": f"{len(waits)}/{TIMES}",
    }
    print(
        f"    ask: end of speech -> Home Assistant's answer p50 "
        f"{figures['escalate_answer_ms_ha_p50']} ms, {figures['escalate_answers_ha']} answered"
    )
    return figures


def main() -> int:
    config = load_config(REPO / "examples" / "pendant.toml")
    print(json.dumps(asyncio.run(ask_figures(config)), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
