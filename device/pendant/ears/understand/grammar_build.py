"""Compile a home's grammar in a child process, for the ears.

A compile holds the CPU for seconds on a laptop, and with Home Assistant's sentences for a big
home for a minute or more on a Zero 2 W. In the ears' own loop that would stall the audio and
the watchdog (a config change or the phone's sentences rebuild it while the ears run). In a
child the ears keep listening with the grammar they have, and the compile's garbage goes back
to the system when the child exits instead of staying in the ears' heap.

The child reads the home (language and `home`, nothing else of the config) as JSON on stdin,
saves the grammar in the cache folder when it can, and writes it as JSON on stdout.
"""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
from pathlib import Path

from pendant.core.config import Config
from pendant.core.errors import PendantError
from pendant.ears.understand.closed_set import Grammar, grammar_json
from pendant.ears.understand.grammar import build_grammar, cached_grammar, grammar_from_json

log = logging.getLogger(__name__)


def _command(cache: Path | None) -> list[str]:
    return [sys.executable, "-m", __name__, *([str(cache)] if cache else [])]


def _request(config: Config) -> bytes:
    return json.dumps(
        {"language": config.language, "home": config.home.model_dump(mode="json")}
    ).encode()


def _answer(code: int, stdout: bytes, stderr: bytes, config: Config) -> Grammar:
    if code != 0:
        lines = stderr.decode(errors="replace").strip().splitlines()
        raise PendantError(f"grammar compile failed: {lines[-1] if lines else f'exit {code}'}")
    try:
        return grammar_from_json(stdout.decode(), config)
    except (ValueError, KeyError, TypeError) as exc:
        raise PendantError(f"grammar compile gave an unreadable answer: {exc}") from None


def compile_grammar(config: Config, cache: Path | None) -> Grammar:
    """The home's grammar from the cache, else compiled in a child process (blocking: for
    start-up, before the ears have a loop to keep)."""
    grammar = cached_grammar(config, cache)
    if grammar is not None:
        return grammar
    done = subprocess.run(_command(cache), input=_request(config), capture_output=True)
    return _answer(done.returncode, done.stdout, done.stderr, config)


async def compile_grammar_async(config: Config, cache: Path | None) -> Grammar:
    """As `compile_grammar`, with the loop free while the child compiles."""
    grammar = cached_grammar(config, cache)
    if grammar is not None:
        return grammar
    child = await asyncio.create_subprocess_exec(
        *_command(cache),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        stdout, stderr = await child.communicate(_request(config))
    except asyncio.CancelledError:
        child.kill()
        await child.wait()
        raise
    assert child.returncode is not None
    return _answer(child.returncode, stdout, stderr, config)


def main() -> int:
    """The child: reads the home as JSON on stdin and writes its grammar as JSON on stdout (saved
    in the cache folder argv[1] names, if any); 2, with the reason on stderr, when it cannot be
    built."""
    cache = Path(sys.argv[1]) if len(sys.argv) > 1 else None
    try:
        config = Config.model_validate_json(sys.stdin.buffer.read())
        grammar = build_grammar(config, cache)
    except PendantError as exc:
        print(exc, file=sys.stderr)
        return 2
    except ValueError as exc:  # pydantic's ValidationError: the parent sent a bad home
        print(f"bad home on stdin: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 2
    sys.stdout.write(grammar_json(grammar))
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    sys.exit(main())
