"""Generated blocks inside hand-written Markdown: the helpers the hw_* tools share.

A block sits between ``<!-- NAME:start -->`` and ``<!-- NAME:end -->``; a tool rewrites what is
between the two markers and leaves the rest of the page alone.
"""

from __future__ import annotations

import re


def _pattern(name: str) -> re.Pattern[str]:
    return re.compile(
        rf"(<!-- {re.escape(name)}:start -->\n)(.*?)(<!-- {re.escape(name)}:end -->)", re.DOTALL
    )


def block(text: str, name: str) -> str:
    """The current body of block ``name`` in ``text``."""
    match = _pattern(name).search(text)
    if match is None:
        raise KeyError(f"no <!-- {name}:start --> ... <!-- {name}:end --> block")
    return match.group(2)


def replace_block(text: str, name: str, body: str) -> str:
    """``text`` with block ``name`` holding ``body`` (which ends with a newline)."""
    block(text, name)  # raises if absent
    return _pattern(name).sub(lambda m: m.group(1) + body + m.group(3), text, count=1)


def md_table(header: list[str], rows: list[list[str]]) -> str:
    """A Markdown table, pipes in cells escaped."""

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    out = [line(header), "|" + "|".join("---" for _ in header) + "|"]
    out += [line(row) for row in rows]
    return "\n".join(out) + "\n"
