"""The ears' grammar compiled in a child process: the same graph, the loop free meanwhile."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from pendant.core.config import Config, CustomSentences
from pendant.core.errors import PendantError
from pendant.ears.understand.grammar import Grammar
from pendant.ears.understand.grammar_build import compile_grammar, compile_grammar_async
from tests.support.tasks import ticks_during


def test_the_child_compiles_the_same_grammar_and_caches_it(
    config: Config, grammar: Grammar, tmp_path: Path
) -> None:
    compiled = compile_grammar(config, tmp_path)
    assert compiled.graph == grammar.graph and compiled.core == grammar.core
    assert compiled.fingerprint == grammar.fingerprint and compiled.names == grammar.names
    (cached,) = tmp_path.glob("grammar-*.json")
    assert grammar.fingerprint in cached.name


def test_the_loop_runs_while_the_child_compiles(config: Config, grammar: Grammar) -> None:
    # Compiled in the loop's own thread, the ticker would not tick once before it ended.
    compiled, ticks = asyncio.run(ticks_during(compile_grammar_async(config, None)))
    assert compiled.graph == grammar.graph
    assert ticks > 0


def test_a_cache_that_cannot_be_written_still_gives_the_grammar(
    config: Config, grammar: Grammar, tmp_path: Path
) -> None:
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("")
    assert compile_grammar(config, not_a_folder).graph == grammar.graph


def test_a_failed_compile_is_one_line(config: Config) -> None:
    # Unchecked sentences (the ears check them first) make the child fail: its last line.
    broken = CustomSentences(intent="HassTurnOn", sentences=["turn on {no_such_list}"])
    home = config.home.model_copy(update={"sentences": [broken]})
    with pytest.raises(PendantError) as caught:
        compile_grammar(config.model_copy(update={"home": home}), None)
    message = str(caught.value)
    assert message.startswith("grammar compile failed: ") and "\n" not in message
    assert "no_such_list" in message
